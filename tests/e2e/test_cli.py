"""The `wrenn capsule|snapshot` commands for people against the same server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import REPO


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
