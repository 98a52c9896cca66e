"""Foreground, background and streamed commands through the SDK."""

from __future__ import annotations

import base64

import pytest

import wrenn

from conftest import Collector, unique, wait_until


def test_stdout_stderr_exit_code(shared_capsule):
    r = shared_capsule.commands.run("echo out; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 3)
    assert r.duration_ms is not None and r.duration_ms >= 0


def test_non_utf8_output_round_trips_as_base64(shared_capsule):
    r = shared_capsule.commands.run(r"printf 'ok\377\376'")
    assert r.stdout.startswith("ok") and "\ufffd" in r.stdout
    # The raw answer carries the exact bytes.
    resp = shared_capsule._client.http.post(
        f"/v1/capsules/{shared_capsule.capsule_id}/exec",
        json={"cmd": "/bin/sh", "args": ["-c", r"printf 'ok\377\376'"]},
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["encoding"] == "base64"
    assert base64.b64decode(body["stdout"]) == b"ok\xff\xfe"


def test_env_and_cwd(shared_capsule):
    r = shared_capsule.commands.run('echo "$FOO|$BAR"; pwd', envs={"FOO": "a b", "BAR": "x=y"}, cwd="/tmp")
    assert r.exit_code == 0, r
    assert r.stdout == "a b|x=y\n/tmp\n"


def test_timeout_kills_the_command(shared_capsule):
    marker = "3017"
    r = shared_capsule.commands.run(f"sleep {marker}", timeout=2)
    # The process group gets SIGKILL at the deadline: the shell ends by that signal.
    assert r.exit_code == 128 + 9, r
    assert r.duration_ms is not None and 2000 <= r.duration_ms < 60_000, r

    def gone() -> bool:
        ps = shared_capsule.commands.run(
            "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
        ).stdout
        return f"sleep {marker}" not in ps

    wait_until(gone, timeout=30, what="the timed-out command to be killed")


def test_background_list_and_kill_by_pid(shared_capsule):
    tag = unique("bg")
    h = shared_capsule.commands.run("sleep 1000", background=True, tag=tag)
    assert h.pid > 0 and h.tag == tag
    procs = {p.pid: p for p in shared_capsule.commands.list()}
    assert h.pid in procs and procs[h.pid].tag == tag
    shared_capsule.commands.kill(h.pid)
    wait_until(lambda: h.pid not in [p.pid for p in shared_capsule.commands.list()], 30,
               what="the killed process to leave the list")
    with pytest.raises(wrenn.WrennNotFoundError):
        shared_capsule.commands.kill(h.pid)


def test_background_default_tag_and_kill_by_tag(shared_capsule):
    h = shared_capsule.commands.run("sleep 1000", background=True)
    assert h.tag, "a background process gets a generated tag"
    tag = unique("bgtag")
    h2 = shared_capsule.commands.run("sleep 1000", background=True, tag=tag)
    http = shared_capsule._client.http
    resp = http.delete(f"/v1/capsules/{shared_capsule.capsule_id}/processes/{tag}", params={"signal": "SIGTERM"})
    assert resp.status_code == 204, resp.text
    wait_until(lambda: h2.pid not in [p.pid for p in shared_capsule.commands.list()], 30,
               what="the process killed by tag to leave the list")
    resp = http.delete(f"/v1/capsules/{shared_capsule.capsule_id}/processes/{h.tag}")
    assert resp.status_code == 204, resp.text
    resp = http.delete(f"/v1/capsules/{shared_capsule.capsule_id}/processes/{tag}")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_attach_to_background_process(shared_capsule):
    gate = f"/tmp/{unique('gate')}"
    h = shared_capsule.commands.run(
        f"i=0; while [ ! -e {gate} ]; do i=$((i+1)); echo tick$i; sleep 0.2; done; echo released >&2; exit 5",
        background=True,
    )
    events = Collector(shared_capsule.commands.connect(h.pid))
    events.until(lambda ev: any(e.type == "stdout" for e in ev), 60, "output of the attached process")
    shared_capsule.files.write(gate, "go")
    got = events.finish(60)
    assert got[-1].type == "exit" and got[-1].exit_code == 5, got
    assert "released" in "".join(e.data for e in got if e.type == "stderr")


def test_exec_stream(shared_capsule):
    got = Collector(shared_capsule.commands.stream("echo a; echo b >&2; exit 4")).finish(60)
    types = [e.type for e in got]
    assert types[0] == "start" and got[0].pid > 0, types
    assert "".join(e.data for e in got if e.type == "stdout") == "a\n"
    assert "".join(e.data for e in got if e.type == "stderr") == "b\n"
    assert got[-1].type == "exit" and got[-1].exit_code == 4


def test_exec_stream_with_args(shared_capsule):
    got = Collector(shared_capsule.commands.stream("/bin/echo", ["x  y", "$HOME"])).finish(60)
    assert "".join(e.data for e in got if e.type == "stdout") == "x  y $HOME\n"
    assert got[-1].type == "exit" and got[-1].exit_code == 0


def test_exec_stream_stop_kills_the_command(shared_capsule):
    import json

    import httpx_ws

    cid = shared_capsule.capsule_id
    marker = "4021"
    with httpx_ws.connect_ws(f"/v1/capsules/{cid}/exec/stream", client=shared_capsule._client.http) as ws:
        ws.send_text(json.dumps({"type": "start", "cmd": "/bin/sh", "args": ["-c", f"echo up; exec sleep {marker}"]}))
        seen = []
        while not any(m.get("type") == "stdout" for m in seen):
            seen.append(json.loads(ws.receive_text(timeout=60)))
        assert seen[0]["type"] == "start" and seen[0]["pid"] > 0, seen
        ws.send_text(json.dumps({"type": "stop"}))
        while seen[-1]["type"] not in ("exit", "error"):
            seen.append(json.loads(ws.receive_text(timeout=60)))
        # The server answers a stop with this error and closes; no exit event comes first
        # (the command would have slept for an hour).
        assert seen[-1] == {"type": "error", "data": "stopped by client"}, seen
        assert [m["type"] for m in seen[1:]] == ["stdout", "error"], seen

    def gone() -> bool:
        ps = shared_capsule.commands.run(
            "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
        ).stdout
        return f"sleep {marker}" not in ps

    wait_until(gone, timeout=30, what="the stopped command to be killed")


def test_large_foreground_output(shared_capsule):
    r = shared_capsule.commands.run("head -c 3000000 /dev/zero | tr '\\0' 'x'; echo; echo tail >&2", timeout=120)
    assert r.exit_code == 0
    assert r.stdout == "x" * 3000000 + "\n"
    assert r.stderr == "tail\n"
