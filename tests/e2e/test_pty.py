"""PTY sessions through the SDK: output, exit code, resize, reattach by tag."""

from __future__ import annotations

import httpx_ws

from wrenn.pty import PtySession

from conftest import Collector


def _output(events) -> bytes:
    return b"".join(e.data for e in events if e.type == "output" and isinstance(e.data, bytes))


def test_echo_in_bash_and_exit_code(shared_capsule):
    with shared_capsule.pty(cmd="/bin/bash", cols=80, rows=24) as term:
        events = Collector(term)
        events.until(lambda ev: any(e.type == "started" for e in ev), 60, "started")
        assert term.tag and term.pid
        term.write(b"echo hello-$((6*7))\n")
        events.until(lambda ev: b"hello-42" in _output(ev), 60, "echo output")
        term.write(b"exit 3\n")
        got = events.until(lambda ev: any(e.type == "exit" for e in ev), 60, "exit")
        assert [e.exit_code for e in got if e.type == "exit"] == [3]


def test_resize_reaches_the_terminal(shared_capsule):
    with shared_capsule.pty(cmd="/bin/bash", cols=80, rows=24) as term:
        events = Collector(term)
        events.until(lambda ev: any(e.type == "started" for e in ev), 60, "started")
        term.resize(132, 43)
        # Resize is asynchronous: ask until the new size shows.
        term.write(b"stty size\n")
        events.until(lambda ev: b"43 132" in _output(ev), 60, "the new size from stty")
        term.write(b"exit\n")
        events.until(lambda ev: any(e.type == "exit" for e in ev), 60, "exit")


def test_reattach_by_tag(shared_capsule):
    cid = shared_capsule.capsule_id
    http = shared_capsule._client.http
    # First socket: start a shell and leave without killing it.
    with httpx_ws.connect_ws(f"/v1/capsules/{cid}/pty", client=http) as ws:
        first = PtySession(ws, cid)
        first._send_start(cmd="/bin/bash")
        events = Collector(first)
        events.until(lambda ev: any(e.type == "started" for e in ev), 60, "started")
        tag = first.tag
        first.write(b"MARK=kept-$((40+2))\n")
        first.write(b"echo set-$MARK\n")
        events.until(lambda ev: b"set-kept-42" in _output(ev), 60, "first output")
    assert tag
    # Second socket: the same shell, with its state.
    with shared_capsule.pty_connect(tag) as term:
        events = Collector(term)
        term.write(b"echo again-$MARK\n")
        events.until(lambda ev: b"again-kept-42" in _output(ev), 60, "output after reattach")
        term.write(b"exit 0\n")
        got = events.until(lambda ev: any(e.type == "exit" for e in ev), 60, "exit")
        assert [e.exit_code for e in got if e.type == "exit"] == [0]


def test_kill_ends_the_session(shared_capsule):
    with shared_capsule.pty(cmd="/bin/bash", cols=80, rows=24) as term:
        events = Collector(term)
        events.until(lambda ev: any(e.type == "started" for e in ev), 60, "started")
        pid = term.pid
        term.write(b"echo before-kill\n")
        events.until(lambda ev: b"before-kill" in _output(ev), 60, "output before the kill")
        term.kill()
        got = events.until(lambda ev: any(e.type == "exit" for e in ev), 60, "exit after kill")
        assert [e.exit_code for e in got if e.type == "exit"] != [0]
    procs = shared_capsule.commands.run(f"test -e /proc/{pid} && echo alive || echo gone").stdout
    assert procs == "gone\n"
