"""The published `e2b` SDK, unchanged, against `wrenn server`: E2B's REST API and its sandbox
data plane on the same listener, pointed at by E2B_API_URL and E2B_SANDBOX_URL.

The older SDK (before 2.51, without the `/v2` create and connect paths) runs the core
scenarios from its own venv (`E2B_OLD_PYTHON`, made by run.sh)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

e2b = pytest.importorskip("e2b")
from e2b import CommandExitException, PtySize, Sandbox, SandboxQuery  # noqa: E402

from conftest import unique, wait_until  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def e2b_env(server):
    """Points the SDK at the test server, as a user would: three environment variables."""
    saved = {k: os.environ.get(k) for k in ("E2B_API_KEY", "E2B_API_URL", "E2B_SANDBOX_URL")}
    port = server.url.rsplit(":", 1)[1]
    os.environ["E2B_API_KEY"] = server.key
    os.environ["E2B_API_URL"] = f"http://localhost:{port}"
    os.environ["E2B_SANDBOX_URL"] = f"http://localhost:{port}"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def sandbox(e2b_env):
    sb = Sandbox.create(timeout=600, envs={"GREETING": "hej"}, metadata={"suite": "e2b"})
    yield sb
    sb.kill()


def test_commands_run_with_output_env_exit_codes_and_timeouts(sandbox):
    r = sandbox.commands.run("echo $GREETING $EXTRA; whoami; pwd", envs={"EXTRA": "more"})
    assert r.stdout == "hej more\nuser\n/home/user\n"
    assert r.exit_code == 0
    r = sandbox.commands.run("echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    with pytest.raises(CommandExitException) as e:
        sandbox.commands.run("echo partial; exit 3")
    assert e.value.exit_code == 3
    assert e.value.stdout == "partial\n"
    r = sandbox.commands.run("id -u", user="root")
    assert r.stdout.strip() == "0"
    assert sandbox.commands.run("sudo -n id -u").stdout.strip() == "0"
    assert "Python 3" in sandbox.commands.run("python3 --version").stdout
    started = time.monotonic()
    with pytest.raises(e2b.TimeoutException):
        sandbox.commands.run("sleep 30", timeout=2)
    assert time.monotonic() - started < 25
    # The timed-out command was killed in the guest, not left running.
    wait_until(
        lambda: "sleep 30" not in sandbox.commands.run("ps -eo args").stdout,
        30,
        what="the timed-out command to be killed",
    )


def test_background_commands_list_kill_connect_and_stdin(sandbox):
    h = sandbox.commands.run(
        "for i in 1 2 3; do echo tick $i; sleep 0.3; done; sleep 600", background=True
    )
    assert h.pid in [p.pid for p in sandbox.commands.list()]
    # A second connection replays what the command wrote and follows it.
    again = sandbox.commands.connect(h.pid)
    seen = []

    def pump():
        for out, _err, _pty in again:
            if out:
                seen.append(out)

    threading.Thread(target=pump, daemon=True).start()
    wait_until(lambda: "tick 3" in "".join(seen), 60, what="the replayed output")
    assert sandbox.commands.kill(h.pid)
    assert sandbox.commands.kill(h.pid) is False or h.pid not in [p.pid for p in sandbox.commands.list()]
    wait_until(lambda: h.pid not in [p.pid for p in sandbox.commands.list()], 30, what="the kill")

    cat = sandbox.commands.run("cat", background=True, stdin=True)
    sandbox.commands.send_stdin(cat.pid, "first line\n")
    sandbox.commands.send_stdin(cat.pid, b"second line\n")
    sandbox.commands.close_stdin(cat.pid)
    result = cat.wait()
    assert result.stdout == "first line\nsecond line\n"
    assert result.exit_code == 0


def test_pty_input_resize_and_kill(sandbox):
    screen: list[bytes] = []
    term = sandbox.pty.create(PtySize(cols=80, rows=24))

    def pump():
        for _o, _e, pty in term:
            if pty:
                screen.append(pty)

    threading.Thread(target=pump, daemon=True).start()
    sandbox.pty.send_stdin(term.pid, b"echo $((6*7))\n")
    wait_until(lambda: b"42" in b"".join(screen), 60, what="42 on the terminal")
    sandbox.pty.resize(term.pid, PtySize(cols=132, rows=40))
    sandbox.pty.send_stdin(term.pid, b"stty size\n")
    wait_until(lambda: b"40 132" in b"".join(screen), 60, what="the new size")
    assert sandbox.pty.kill(term.pid)


def test_files_write_read_list_exists_mkdir_rename_remove(sandbox):
    info = sandbox.files.write("notes/hello.txt", "hi there")
    assert info.path == "/home/user/notes/hello.txt"
    assert sandbox.files.read("notes/hello.txt") == "hi there"
    assert sandbox.commands.run("stat -c %U /home/user/notes/hello.txt").stdout.strip() == "user"
    assert "hello.txt" in [e.name for e in sandbox.files.list("notes")]
    assert sandbox.files.exists("notes/hello.txt")
    assert not sandbox.files.exists("notes/nope.txt")
    assert sandbox.files.make_dir("made/deep")
    assert sandbox.files.make_dir("made/deep") is False
    sandbox.files.rename("notes/hello.txt", "made/deep/moved.txt")
    assert not sandbox.files.exists("notes/hello.txt")
    assert sandbox.files.read("/home/user/made/deep/moved.txt") == "hi there"
    sandbox.files.remove("made")
    assert not sandbox.files.exists("made")
    with pytest.raises(e2b.FileNotFoundException):
        sandbox.files.read("made/deep/moved.txt")
    entries = sandbox.files.write_files([
        {"path": "/tmp/multi/a.txt", "data": "a"},
        {"path": "/tmp/multi/b.bin", "data": b"\x00\x01"},
    ])
    assert sorted(e.name for e in entries) == ["a.txt", "b.bin"]
    assert sandbox.files.read("/tmp/multi/b.bin", format="bytes") == b"\x00\x01"


def test_directory_watchers_poll_and_stream(sandbox):
    from e2b import AsyncSandbox, FilesystemEventType

    sandbox.files.make_dir("/tmp/watched")
    handle = sandbox.files.watch_dir("/tmp/watched", recursive=True)
    sandbox.files.write("/tmp/watched/a.txt", "1")
    sandbox.commands.run("mkdir /tmp/watched/sub && sleep 0.3 && echo 2 > /tmp/watched/sub/b.txt && rm /tmp/watched/a.txt")
    events = []
    wait_until(
        lambda: events.extend(handle.get_new_events()) or {
            ("a.txt", FilesystemEventType.CREATE),
            ("sub/b.txt", FilesystemEventType.CREATE),
            ("a.txt", FilesystemEventType.REMOVE),
        } <= {(e.name, e.type) for e in events},
        60,
        what="the watcher's events",
    )
    handle.stop()

    async def stream():
        sb = await AsyncSandbox.connect(sandbox.sandbox_id)
        seen = []
        h = await sb.files.watch_dir("/tmp/watched", on_event=seen.append, timeout=60)
        await sb.files.write("/tmp/watched/c.txt", "3")
        for _ in range(300):
            if any(e.name == "c.txt" and e.type == FilesystemEventType.CREATE for e in seen):
                break
            await asyncio.sleep(0.1)
        await h.stop()
        return seen

    seen = asyncio.run(stream())
    assert any(e.name == "c.txt" and e.type == FilesystemEventType.CREATE for e in seen), seen


def test_a_64_mib_file_round_trips(sandbox):
    data = os.urandom(64 << 20)
    sandbox.files.write("/tmp/big.bin", data)
    back = sandbox.files.read("/tmp/big.bin", format="bytes")
    assert len(back) == len(data)
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    assert sandbox.commands.run("sha256sum /tmp/big.bin").stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_info_timeout_metrics_and_list_with_metadata_and_pages(sandbox, server):
    info = sandbox.get_info()
    assert info.sandbox_id == sandbox.sandbox_id
    assert "-" not in info.sandbox_id
    assert info.metadata == {"suite": "e2b"}
    assert info.state.value == "running"
    assert info.envd_version >= "0.4.0"
    sandbox.set_timeout(1200)
    end = sandbox.get_info().end_at.timestamp()
    assert 1100 < end - time.time() <= 1201
    # The same capsule through Wrenn's API.
    wrenn_view = httpx.get(
        f"{server.url}/v1/capsules/cl-{sandbox.sandbox_id}", headers={"X-API-Key": server.key}
    ).json()
    assert wrenn_view["timeout_sec"] == 1200 and wrenn_view["metadata"] == {"suite": "e2b"}
    points = wait_until(lambda: sandbox.get_metrics(), 120, interval=2, what="a metrics sample")
    assert points[0].mem_total > 0 and points[0].cpu_count >= 1

    group = unique("pg")
    made = [Sandbox.create(timeout=300, metadata={"grp": group}) for _ in range(3)]
    try:
        pager = Sandbox.list(query=SandboxQuery(metadata={"grp": group}), limit=2)
        pages = []
        while pager.has_next:
            pages.append([s.sandbox_id for s in pager.next_items()])
        assert [len(p) for p in pages] == [2, 1]
        assert sorted(sum(pages, [])) == sorted(s.sandbox_id for s in made)
    finally:
        for s in made:
            s.kill()
    assert Sandbox.list(query=SandboxQuery(metadata={"grp": group})).next_items() == []


def test_pause_then_connect_resumes_with_memory_intact(e2b_env):
    sb = Sandbox.create(timeout=600)
    try:
        counter = sb.commands.run(
            "python3 -c 'import time\nn=0\nwhile True:\n  n+=1\n  open(\"/tmp/n\",\"w\").write(str(n))\n  time.sleep(0.2)'",
            background=True,
        )
        wait_until(lambda: sb.files.exists("/tmp/n") and int(sb.files.read("/tmp/n") or 0) > 3, 60, what="the counter")
        assert sb.beta_pause()
        assert Sandbox.get_info(sb.sandbox_id).state.value == "paused"
        before = None
        resumed = Sandbox.connect(sb.sandbox_id)
        before = int(resumed.files.read("/tmp/n"))
        # The process lived through the pause: it is listed and keeps counting from memory.
        assert counter.pid in [p.pid for p in resumed.commands.list()]
        wait_until(lambda: int(resumed.files.read("/tmp/n")) > before + 3, 60, what="the counter to go on")
        assert resumed.is_running()
    finally:
        sb.kill()
    with pytest.raises(e2b.NotFoundException):
        Sandbox.get_info(sb.sandbox_id)
    assert Sandbox.kill(sb.sandbox_id) is False


def test_errors_are_e2b_errors(sandbox, server):
    with pytest.raises(e2b.SandboxException) as e:
        Sandbox.create(template="no-such-template")
    assert str(e.value).startswith("404:"), e.value
    with pytest.raises(e2b.AuthenticationException):
        Sandbox.create(api_key="wrn_" + "0" * 32)
    with pytest.raises(e2b.SandboxException) as e:
        Sandbox.create(volume_mounts={"/data": "vol"})
    assert "not supported" in str(e.value)
    # The data plane needs the sandbox's access token, and a wrong one is refused.
    port = server.url.rsplit(":", 1)[1]
    headers = {"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "49983"}
    url = f"http://localhost:{port}/files?path=/etc/hostname"
    assert httpx.get(url, headers=headers).status_code == 401
    assert httpx.get(url, headers={**headers, "X-Access-Token": "ea_wrong"}).status_code == 401
    r = httpx.post(
        f"http://localhost:{port}/process.Process/List",
        headers={**headers, "X-Access-Token": "ea_wrong", "Content-Type": "application/json"},
        content=b"{}",
    )
    assert r.status_code == 401 and r.json()["code"] == 401
    # A signed download URL works without the token, and only for its own path. With
    # E2B_SANDBOX_URL the SDK's URL cannot name the sandbox; its port-URL form does.
    signed = sandbox.download_url("/etc/hostname", use_signature_expiration=60)
    query = signed.split("?", 1)[1]
    by_host = f"http://49983-{sandbox.sandbox_id}.localhost:{port}/files?{query}"
    r = httpx.get(by_host)
    assert r.status_code == 200 and r.content.strip(), r.text
    assert httpx.get(by_host.replace("hostname", "passwd")).status_code == 401


def test_the_older_sdk_uses_the_paths_before_v2(server):
    py = os.environ.get("E2B_OLD_PYTHON")
    if not py:
        pytest.fail("E2B_OLD_PYTHON is not set: run the suite through tests/e2e/run.sh")
    port = server.url.rsplit(":", 1)[1]
    env = {
        **os.environ,
        "E2B_API_KEY": server.key,
        "E2B_API_URL": f"http://localhost:{port}",
        "E2B_SANDBOX_URL": f"http://localhost:{port}",
    }
    out = subprocess.run(
        [py, str(HERE / "e2b_old_sdk.py")], env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["version"] < "2.51"
    assert report == {**report, "run": "hej\n", "exit": 3, "file": "hi", "resumed": "kept", "listed": True}
