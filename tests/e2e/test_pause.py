"""Pause and resume keep processes, files and memory; calls on a paused capsule conflict."""

from __future__ import annotations

import pytest

import wrenn
from wrenn.models import Status

from conftest import wait_until

LOOP = "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done"


def _counter(c: wrenn.Capsule) -> int:
    text = c.files.read("/tmp/counter").strip()
    return int(text) if text else 0


def test_pause_resume_keeps_process_file_and_memory(capsule):
    h = capsule.commands.run(LOOP, background=True, tag="counter")
    capsule.files.write("/root/note.txt", "before pause")
    capsule.files.write("/tmp/in-tmp.txt", "tmp survives")
    before = wait_until(lambda: _counter(capsule) >= 10 and _counter(capsule), 120, what="the counter to reach 10")

    info = capsule.pause(wait=True)
    assert capsule.get_info().status == Status.paused, info
    with pytest.raises(wrenn.WrennConflictError):
        capsule.commands.run("echo no")
    with pytest.raises(wrenn.WrennConflictError):
        capsule.files.read("/tmp/counter")
    with pytest.raises(wrenn.WrennConflictError):
        capsule.pause()

    capsule.resume(wait=True)
    assert capsule.get_info().status == Status.running
    # The shell variable lives only in the process's memory: the count goes on, not over.
    after = _counter(capsule)
    assert after >= before
    wait_until(lambda: _counter(capsule) > after + 2, 120, what="the counter to keep counting")
    assert h.pid in [p.pid for p in capsule.commands.list()]
    assert capsule.files.read("/root/note.txt") == "before pause"
    assert capsule.files.read("/tmp/in-tmp.txt") == "tmp survives"
    with pytest.raises(wrenn.WrennConflictError):
        capsule.resume()


def test_pause_twice_then_connect_resumes(capsule):
    capsule.files.write("/tmp/state", "kept")
    capsule.pause(wait=True)
    assert capsule.get_info().status == Status.paused
    again = wrenn.Capsule.connect(capsule.capsule_id)
    try:
        assert again.get_info().status == Status.running
        assert again.files.read("/tmp/state") == "kept"
        assert again.commands.run("echo back").stdout == "back\n"
        # Pause and resume a second time.
        again.pause(wait=True)
        again.resume(wait=True)
        assert again.commands.run("cat /tmp/state").stdout == "kept"
    finally:
        again._client.close()


def test_destroy_while_paused(server):
    c = wrenn.Capsule(wait=True)
    c.pause(wait=True)
    c.destroy(wait=True)
    assert c.capsule_id not in [x.id for x in wrenn.Capsule.list()]
    # Nothing of it is left on the host.
    wait_until(lambda: not (server.data_dir / "capsules" / c.capsule_id).exists(), 30,
               what="the paused capsule's files to be removed")
