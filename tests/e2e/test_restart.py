"""A restarted `wrenn server` keeps its capsules: running ones keep running, paused ones resume."""

from __future__ import annotations

import wrenn
from wrenn.models import Status

from conftest import wait_until

LOOP = "i=0; while true; do i=$((i+1)); echo $i > /tmp/rcounter; sleep 0.2; done"


def _count(c: wrenn.Capsule) -> int:
    text = c.files.read("/tmp/rcounter").strip()
    return int(text) if text else 0


def test_restart_keeps_running_and_paused_capsules(server):
    running = wrenn.Capsule(wait=True)
    paused = wrenn.Capsule(wait=True)
    try:
        h = running.commands.run(LOOP, background=True, tag="rloop")
        running.files.write("/root/r.txt", "survives restarts")
        wait_until(lambda: _count(running) >= 3, 120, what="the loop to run")
        paused.files.write("/tmp/p.txt", "paused across restart")
        paused.pause(wait=True)

        server.restart()

        assert running.get_info().status == Status.running
        start = _count(running)
        wait_until(lambda: _count(running) > start + 2, 120, what="the loop to keep running after the restart")
        assert h.pid in [p.pid for p in running.commands.list()]
        assert running.files.read("/root/r.txt") == "survives restarts"
        assert paused.get_info().status == Status.paused
        paused.resume(wait=True)
        assert paused.files.read("/tmp/p.txt") == "paused across restart"
        assert paused.commands.run("echo up").stdout == "up\n"
    finally:
        for c in (running, paused):
            try:
                c.destroy()
            except wrenn.WrennError:
                pass
