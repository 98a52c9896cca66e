"""The `wrenn capsule|snapshot` commands for people against the same server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO, Collector, unique, wait_until


def wrenn_cli(server, *args: str, stdin: bytes | None = None, base_suffix: str = "") -> subprocess.CompletedProcess:
    binary = os.environ.get("WRENN_BIN") or str(REPO / "target" / "debug" / "wrenn")
    env = dict(os.environ, WRENN_API_KEY=server.key, WRENN_BASE_URL=server.url + base_suffix)
    return subprocess.run(
        [binary, *args], input=stdin if stdin is not None else b"", capture_output=True, env=env, timeout=600
    )


@pytest.fixture
def cli_capsule(server):
    r = wrenn_cli(server, "capsule", "create")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    yield cid
    wrenn_cli(server, "capsule", "rm", cid)


def test_create_list_get_rm(server):
    r = wrenn_cli(server, "capsule", "create", base_suffix="/api")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    assert cid.startswith("cl-")
    table = wrenn_cli(server, "capsule", "list").stdout.decode()
    assert table.splitlines()[0].split() == ["ID", "STATUS", "TEMPLATE", "VCPUS", "MEMORY", "CREATED"]
    assert any(line.startswith(cid) and " running " in line for line in table.splitlines())
    listed = json.loads(wrenn_cli(server, "capsule", "--json", "list").stdout)
    assert cid in [c["id"] for c in listed]
    got = json.loads(wrenn_cli(server, "capsule", "--json", "get", cid).stdout)
    assert got["id"] == cid and got["status"] == "running"
    r = wrenn_cli(server, "capsule", "rm", cid)
    assert r.returncode == 0 and f"{cid} destroyed" in r.stdout.decode()
    # Gone: not found, or kept with a terminal status.
    r = wrenn_cli(server, "capsule", "--json", "get", cid)
    if r.returncode == 0:
        assert json.loads(r.stdout)["status"] in ("stopped", "missing")
    else:
        assert r.returncode == 1 and r.stderr.decode().startswith("error: not_found: ")
    assert cid not in [c["id"] for c in json.loads(wrenn_cli(server, "capsule", "--json", "list").stdout)]


def test_errors_are_code_and_message(server):
    r = wrenn_cli(server, "capsule", "get", "bad-id")
    assert r.returncode == 1 and r.stderr.decode().startswith("error: invalid_request: ")
    env_key = dict(os.environ, WRENN_API_KEY="wrn_" + "0" * 32, WRENN_BASE_URL=server.url)
    binary = os.environ.get("WRENN_BIN") or str(REPO / "target" / "debug" / "wrenn")
    r = subprocess.run([binary, "capsule", "list"], capture_output=True, env=env_key, timeout=600)
    assert r.returncode == 1 and r.stderr.decode().startswith("error: unauthorized: ")


def test_exec_output_and_exit_code(server, cli_capsule):
    r = wrenn_cli(server, "capsule", "exec", cli_capsule, "--", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (r.returncode, r.stdout, r.stderr) == (4, b"out\n", b"err\n")
    r = wrenn_cli(server, "capsule", "exec", cli_capsule, r"printf 'a\377b'")
    assert r.returncode == 0 and r.stdout == b"a\xffb"
    r = wrenn_cli(server, "capsule", "exec", "--cwd", "/tmp", "-e", "X=y z", cli_capsule, "--", "sh", "-c", 'echo "$X"; pwd')
    assert r.stdout == b"y z\n/tmp\n", r.stderr


def test_pause_resume_and_paused_exec(server, cli_capsule):
    r = wrenn_cli(server, "capsule", "pause", cli_capsule)
    assert r.returncode == 0 and r.stdout.decode().split() == [cli_capsule, "paused"], r.stderr
    r = wrenn_cli(server, "capsule", "exec", cli_capsule, "--", "true")
    assert r.returncode == 1 and r.stderr.decode().startswith("error: invalid_state: ")
    r = wrenn_cli(server, "capsule", "resume", cli_capsule)
    assert r.returncode == 0 and r.stdout.decode().split() == [cli_capsule, "running"], r.stderr
    assert wrenn_cli(server, "capsule", "exec", cli_capsule, "--", "true").returncode == 0


def test_shell_with_piped_input(server, cli_capsule):
    r = wrenn_cli(server, "capsule", "shell", cli_capsule, stdin=b"echo piped-$((1+1))\nexit 6\n")
    assert r.returncode == 6, r.stderr
    assert b"piped-2" in r.stdout


def test_snapshot_commands(server, cli_capsule):
    name = f"cli-{Path(cli_capsule).name[-8:]}"
    r = wrenn_cli(server, "snapshot", "create", cli_capsule, "--name", name)
    assert r.returncode == 0 and r.stdout.decode().strip() == name, r.stderr
    r = wrenn_cli(server, "snapshot", "create", cli_capsule, "--name", name)
    assert r.returncode == 1 and r.stderr.decode().startswith("error: conflict: ")
    table = wrenn_cli(server, "snapshot", "list").stdout.decode()
    assert any(line.split()[:2] == [name, "snapshot"] for line in table.splitlines()[1:])
    assert any(line.split()[:2] == ["minimal", "base"] for line in table.splitlines()[1:])
    only = json.loads(wrenn_cli(server, "snapshot", "--json", "list", "--type", "snapshot").stdout)
    assert all(t["type"] == "snapshot" for t in only) and name in [t["name"] for t in only]
    assert wrenn_cli(server, "snapshot", "rm", name).returncode == 0
    r = wrenn_cli(server, "snapshot", "rm", name)
    assert r.returncode == 1 and r.stderr.decode().startswith("error: not_found: ")


def test_options_after_the_subcommand(server):
    # `--json`, `--base-url` and `--api-key` work after the subcommand too.
    r = wrenn_cli(server, "capsule", "list", "--json", "--base-url", server.url + "/api", "--api-key", server.key)
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), list)


def test_key_create_list_rm_against_the_running_server(server):
    binary = os.environ.get("WRENN_BIN") or str(REPO / "target" / "debug" / "wrenn")

    def key_cmd(*args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop("WRENN_DIR", None)
        return subprocess.run(
            [binary, "key", *args, "--data-dir", str(server.data_dir)], capture_output=True, env=env, timeout=120
        )

    name = f"e2e-{os.getpid()}"
    r = key_cmd("create", "--name", name)
    assert r.returncode == 0, r.stderr
    key = r.stdout.decode().strip()
    assert key.startswith("wrn_") and len(key) == 36, key
    rows = [line.split() for line in key_cmd("list").stdout.decode().splitlines()]
    assert rows[0] == ["ID", "PREFIX", "NAME", "CREATED"]
    mine = [row for row in rows[1:] if row[2] == name]
    assert len(mine) == 1 and mine[0][1] == key[:10] and mine[0][0].startswith("key-")
    key_id = mine[0][0]
    # The running server accepts the new key at once.
    ok = httpx.get(f"{server.url}/v1/capsules", headers={"X-API-Key": key}, timeout=30)
    assert ok.status_code == 200, ok.text
    r = key_cmd("rm", key_id)
    assert r.returncode == 0, r.stderr
    assert name not in key_cmd("list").stdout.decode()
    # A removed key is refused, and removing it again is an error.
    gone = httpx.get(f"{server.url}/v1/capsules", headers={"X-API-Key": key}, timeout=30)
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "unauthorized"
    r = key_cmd("rm", key_id)
    assert r.returncode == 1 and r.stderr.decode().startswith("error: not_found: ")


DATE = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\b")


def test_create_waits_and_no_wait_returns_at_once(server):
    r = wrenn_cli(server, "capsule", "--json", "create")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    try:
        # Waited: the answer is already a running capsule.
        assert made["status"] == "running", made
    finally:
        wrenn_cli(server, "capsule", "rm", made["id"])
    r = wrenn_cli(server, "capsule", "--json", "create", "--no-wait")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    try:
        assert made["status"] in ("starting", "running"), made
        wait_until(
            lambda: json.loads(wrenn_cli(server, "capsule", "--json", "get", made["id"]).stdout)["status"] == "running",
            120, what="the --no-wait capsule running",
        )
    finally:
        wrenn_cli(server, "capsule", "rm", made["id"])


def test_exec_timeout_is_reported(server, cli_capsule):
    start = time.monotonic()
    r = wrenn_cli(server, "capsule", "exec", "--timeout-sec", "2", cli_capsule, "--", "sh", "-c", "echo begun; sleep 60")
    took = time.monotonic() - start
    assert r.returncode == 124, (r.returncode, r.stderr)
    assert r.stdout == b"begun\n"
    assert b"wrenn: command timed out after 2 s and was killed" in r.stderr, r.stderr
    assert took < 40, took
    # A command that fails on its own within the timeout is not called timed out.
    r = wrenn_cli(server, "capsule", "exec", "--timeout-sec", "30", cli_capsule, "--", "sh", "-c", "exit 3")
    assert r.returncode == 3 and b"timed out" not in r.stderr, r.stderr


def test_exec_says_when_output_was_cut(server, cli_capsule):
    r = wrenn_cli(server, "capsule", "exec", cli_capsule, "head -c 34000000 /dev/zero | tr '\\0' a")
    assert r.returncode == 0, r.stderr[-500:]
    assert len(r.stdout) == 32 * 1024 * 1024
    assert b"wrenn: stdout was cut at the server's limit (32 MiB)" in r.stderr, r.stderr[-500:]


def _make_tree(root: Path) -> None:
    (root / "src" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty dir").mkdir()
    (root / "README.md").write_text("hello from the host\n")
    (root / "src" / "deep" / "blob.bin").write_bytes(os.urandom(1_500_000))
    (root / "src" / "deep" / "deeper" / "name with spaces.txt").write_text("spaces\n")
    (root / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (root / "run.sh").chmod(0o755)
    (root / "src" / "zero").write_bytes(b"")


def _tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every path under root: kind, permission bits, content of files."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = ("dir", p.stat().st_mode & 0o777, b"")
        else:
            out[rel] = ("file", p.stat().st_mode & 0o777, p.read_bytes())
    return out


def test_cp_directory_tree_round_trip(server, cli_capsule, tmp_path):
    src = tmp_path / "proj"
    _make_tree(src)
    # To a path that does not exist: the tree takes that name.
    r = wrenn_cli(server, "capsule", "cp", str(src), f"{cli_capsule}:/tmp/up")
    assert r.returncode == 0, r.stderr
    assert f"to {cli_capsule}:/tmp/up in".encode() in r.stderr and b"5 files, 5 directories" in r.stderr, r.stderr
    listing = wrenn_cli(server, "capsule", "exec", cli_capsule, "cd /tmp/up && find . | sort && sha256sum src/deep/blob.bin && ./run.sh")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.decode().splitlines()
    assert "./empty dir" in lines and "./src/deep/deeper/name with spaces.txt" in lines, lines
    assert hashlib.sha256((src / "src/deep/blob.bin").read_bytes()).hexdigest() in listing.stdout.decode()
    assert lines[-1] == "ran", "run.sh kept its execute bit"
    # Into an existing directory: the tree keeps its name there.
    r = wrenn_cli(server, "capsule", "cp", str(src), f"{cli_capsule}:/tmp")
    assert r.returncode == 0 and f"{cli_capsule}:/tmp/proj in".encode() in r.stderr, r.stderr
    # And back: into an existing local directory, then to a new name.
    back = tmp_path / "back"
    back.mkdir()
    r = wrenn_cli(server, "capsule", "cp", f"{cli_capsule}:/tmp/up", str(back))
    assert r.returncode == 0, r.stderr
    assert _tree(back / "up") == _tree(src)
    r = wrenn_cli(server, "capsule", "cp", f"{cli_capsule}:/tmp/proj/", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert _tree(tmp_path / "again") == _tree(src)
    # One file, to stdout and to a local directory.
    r = wrenn_cli(server, "capsule", "cp", f"{cli_capsule}:/tmp/up/README.md", "-")
    assert (r.returncode, r.stdout) == (0, b"hello from the host\n"), r.stderr
    r = wrenn_cli(server, "capsule", "cp", f"{cli_capsule}:/tmp/up/src/deep/blob.bin", str(tmp_path))
    assert r.returncode == 0 and (tmp_path / "blob.bin").read_bytes() == (src / "src/deep/blob.bin").read_bytes()


def test_cp_errors_are_clear(server, cli_capsule, tmp_path):
    r = wrenn_cli(server, "capsule", "cp", f"{cli_capsule}:/no/such/thing", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.decode().startswith(f"error: not_found: cp: {cli_capsule}:/no/such/thing: no such file"), r.stderr
    r = wrenn_cli(server, "capsule", "cp", str(tmp_path / "missing"), f"{cli_capsule}:/tmp")
    assert r.returncode == 1 and b"missing: No such file or directory" in r.stderr, r.stderr
    r = wrenn_cli(server, "capsule", "cp", str(tmp_path), str(tmp_path / "x"))
    assert r.returncode == 1 and b"one side must be in a capsule" in r.stderr, r.stderr
    r = wrenn_cli(server, "capsule", "cp", str(tmp_path), f"{cli_capsule}:tmp")
    assert r.returncode == 1 and b"must be absolute" in r.stderr, r.stderr


def test_ps_and_kill_a_background_process(server, cli_capsule):
    tag = unique("job")
    r = wrenn_cli(server, "capsule", "exec", "--background", "--tag", tag, cli_capsule, "--", "sleep", "600")
    assert r.returncode == 0, r.stderr
    pid, got_tag = r.stdout.decode().split()
    assert got_tag == tag and pid.isdigit()
    table = wrenn_cli(server, "capsule", "ps", cli_capsule).stdout.decode().splitlines()
    assert table[0].split() == ["PID", "TAG", "COMMAND"]
    row = next(line.split() for line in table[1:] if line.split()[1] == tag)
    assert row[0] == pid and "sleep" in " ".join(row[2:]), table
    r = wrenn_cli(server, "capsule", "kill", cli_capsule, tag, "--signal", "TERM")
    assert (r.returncode, r.stdout.decode()) == (0, f"sent SIGTERM to {tag}\n"), r.stderr
    wait_until(lambda: tag not in wrenn_cli(server, "capsule", "ps", cli_capsule).stdout.decode(), 30, what="the process gone")
    r = wrenn_cli(server, "capsule", "kill", cli_capsule, pid)
    assert r.returncode == 1 and r.stderr.decode().startswith("error: not_found: "), r.stderr


def test_metrics_chart_and_table(server, cli_capsule):
    wrenn_cli(server, "capsule", "exec", cli_capsule, "--", "true")
    # The server samples running capsules every 10 s: wait for the first sample.
    out = wait_until(
        lambda: (r := wrenn_cli(server, "capsule", "metrics", cli_capsule)).returncode == 0
        and "samples, " in (text := r.stdout.decode()) and text,
        120, interval=2.0, what="a metrics sample",
    )
    lines = out.splitlines()
    assert re.match(r"^\d+ samples, " + DATE.pattern + " \\.\\. " + DATE.pattern + "$", lines[0]), lines[0]
    assert re.match(r"^CPU  [▁▂▃▄▅▆▇█]+  now \d+\.\d %, peak \d+\.\d %$", lines[1]), lines[1]
    assert re.match(r"^MEM  [▁▂▃▄▅▆▇█]+  now .+ of 512\.0 MiB, peak ", lines[2]), lines[2]
    assert lines[4].split() == ["TIME", "CPU", "MEMORY", "DISK"]
    assert DATE.match(lines[5]), lines[5]
    m = json.loads(wrenn_cli(server, "capsule", "--json", "metrics", cli_capsule, "--range", "5m").stdout)
    assert m["sandbox_id"] == cli_capsule and m["range"] == "5m" and m["points"][0]["mem_bytes"] > 0


def test_events_stream_sees_a_create_and_ends_on_ctrl_c(server):
    binary = os.environ.get("WRENN_BIN") or str(REPO / "target" / "debug" / "wrenn")
    env = dict(os.environ, WRENN_API_KEY=server.key, WRENN_BASE_URL=server.url)
    proc = subprocess.Popen([binary, "events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        err = Collector(iter(proc.stderr.readline, b""))
        err.until(lambda lines: any(b"listening for events" in x for x in lines), 60, "the stream to open")
        out = Collector(iter(proc.stdout.readline, b""))
        r = wrenn_cli(server, "capsule", "create")
        assert r.returncode == 0, r.stderr
        cid = r.stdout.decode().strip()
        try:
            lines = out.until(lambda ls: any(b"capsule.create" in x and cid.encode() in x for x in ls), 120, "capsule.create")
            line = next(x.decode() for x in lines if "capsule.create" in x.decode() and cid in x.decode())
            assert DATE.match(line) and " success " in line and "api_key" in line, line
        finally:
            wrenn_cli(server, "capsule", "rm", cid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_one_date_format_and_visible_aliases(server, cli_capsule):
    table = wrenn_cli(server, "capsule", "list").stdout.decode().splitlines()
    row = next(line for line in table if line.startswith(cli_capsule))
    assert DATE.search(row), row
    binary = os.environ.get("WRENN_BIN") or str(REPO / "target" / "debug" / "wrenn")
    keys = subprocess.run([binary, "key", "list", "--data-dir", str(server.data_dir)], capture_output=True, timeout=120)
    assert keys.returncode == 0, keys.stderr
    assert all(DATE.search(line) for line in keys.stdout.decode().splitlines()[1:]), keys.stdout
    helptext = wrenn_cli(server, "capsule", "--help").stdout.decode()
    assert "[alias: ls]" in helptext and "[aliases: destroy, delete]" in helptext, helptext


def test_a_mistyped_data_dir_is_an_error_not_a_new_store(tmp_path):
    binary = os.environ.get("WRENN_BIN") or str(REPO / "target" / "debug" / "wrenn")
    env = dict(os.environ)
    env.pop("WRENN_DIR", None)
    typo = tmp_path / "wrenn-dta"
    for args in (["key", "list"], ["key", "create", "--name", "x"], ["team", "create", "t1"]):
        r = subprocess.run([binary, *args, "--data-dir", str(typo)], capture_output=True, env=env, timeout=120)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.decode().startswith(f"error: not_found: data dir {typo} does not exist"), r.stderr
        assert not typo.exists()
    # An existing directory without a store is refused too, and left as it was.
    r = subprocess.run([binary, "team", "list", "--data-dir", str(tmp_path)], capture_output=True, env=env, timeout=120)
    assert r.returncode == 1 and b"no Wrenn store in" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
