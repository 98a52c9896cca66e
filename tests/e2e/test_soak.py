"""Soak: 5 capsules paused and resumed 40 times each, concurrently, with exec and file traffic
in between; every cycle checks that nothing was lost: a 4 MiB random block in guest memory
(tmpfs, by checksum), a running process (same pid, still counting) and a file on disk.

Bounded: WRENN_SOAK_CAPSULES (default 5) × WRENN_SOAK_CYCLES (default 40)."""

from __future__ import annotations

import os
import threading

import wrenn

from conftest import wait_until

CAPSULES = int(os.environ.get("WRENN_SOAK_CAPSULES", "5"))
CYCLES = int(os.environ.get("WRENN_SOAK_CYCLES", "40"))
# The counter file is replaced atomically, so a read never sees it half-written.
LOOP = "i=0; while true; do i=$((i+1)); echo $i > /tmp/soak-c.tmp; mv /tmp/soak-c.tmp /tmp/soak-counter; sleep 0.1; done"


def _counter(c: wrenn.Capsule) -> int:
    text = c.files.read("/tmp/soak-counter").strip()
    return int(text) if text else 0


def _soak(c: wrenn.Capsule, failures: list[str], cycles: list[int]) -> None:
    c.commands.run("head -c 4194304 /dev/urandom > /dev/shm/block", timeout=60)
    want = c.commands.run("sha256sum /dev/shm/block | cut -d' ' -f1", timeout=60).stdout.strip()
    h = c.commands.run(LOOP, background=True, tag="soak")
    wait_until(lambda: _counter(c) > 0, 60, what="the counter to start")
    for i in range(CYCLES):
        c.files.write(f"/root/cycle-{i}.txt", f"cycle {i}")
        before = _counter(c)
        c.pause(wait=True)
        c.resume(wait=True)
        got = c.commands.run("sha256sum /dev/shm/block | cut -d' ' -f1", timeout=60).stdout.strip()
        if got != want:
            failures.append(f"{c.capsule_id} cycle {i}: memory block changed")
        if h.pid not in [p.pid for p in c.commands.list()]:
            failures.append(f"{c.capsule_id} cycle {i}: the process is gone")
        if c.files.read(f"/root/cycle-{i}.txt") != f"cycle {i}":
            failures.append(f"{c.capsule_id} cycle {i}: the file is gone")
        if _counter(c) < before:
            failures.append(f"{c.capsule_id} cycle {i}: the counter went back")
        cycles.append(i)


def test_soak_pause_resume_with_traffic(server):
    caps = [wrenn.Capsule(wait=True, memory_mb=256) for _ in range(CAPSULES)]
    failures: list[str] = []
    errors: list[BaseException] = []
    cycles: list[int] = []

    def run(c: wrenn.Capsule) -> None:
        try:
            _soak(c, failures, cycles)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in caps]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=1800)
        assert not errors, errors
        assert failures == []
        assert len(cycles) == CAPSULES * CYCLES
    finally:
        for c in caps:
            try:
                c.destroy()
            except wrenn.WrennError:
                pass
