"""Server-sent events and the metrics, stats and usage shapes."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import wrenn
from wrenn.models import Status
from wrenn.models._generated import Event

from conftest import Collector, wait_until


def test_events_stream_sees_create_and_destroy(server):
    with wrenn.WrennClient(timeout=300) as client:
        events = Collector(client.events.stream())
        events.until(lambda ev: any(e.event == Event.connected for e in ev), 60, "the connected event")
        c = wrenn.Capsule(wait=True)
        cid = c.capsule_id
        try:
            got = events.until(
                lambda ev: any(e.event == Event.capsule_create and e.resource and e.resource.id == cid for e in ev),
                120,
                "capsule.create",
            )
            create = next(e for e in got if e.event == Event.capsule_create and e.resource.id == cid)
            assert create.outcome == "success"
            assert create.resource.type
            assert create.actor is not None and create.actor.type == "api_key"
            assert create.sandbox is not None and create.sandbox.id == cid
            assert create.timestamp is not None and create.timestamp.tzinfo is not None
            c.pause(wait=True)
            c.resume(wait=True)
            events.until(
                lambda ev: {e.event for e in ev if e.resource and e.resource.id == cid}
                >= {Event.capsule_pause, Event.capsule_resume},
                120,
                "capsule.pause and capsule.resume",
            )
        finally:
            c.destroy()
        events.until(
            lambda ev: any(e.event == Event.capsule_destroy and e.resource and e.resource.id == cid for e in ev),
            120,
            "capsule.destroy",
        )


def test_metrics_are_real_values(client, shared_capsule):
    cid = shared_capsule.capsule_id
    # A guest busy on its one vCPU for a while: the sampler (every 10 s) must see it.
    shared_capsule.commands.run("timeout 60 sh -c 'while :; do :; done'", background=True)
    m = wait_until(
        lambda: (m := client.capsules.metrics(cid, range="10m")).points
        and any(p.cpu_pct >= 50 for p in m.points) and m,
        120, interval=2.0, what="a metrics point of a busy guest",
    )
    assert m.sandbox_id == cid
    assert m.range is not None and m.range.value == "10m"
    now = time.time()
    stamps = [p.timestamp_unix for p in m.points]
    assert stamps == sorted(stamps), stamps
    memory = shared_capsule.get_info().memory_mb * 2**20
    for p in m.points:
        assert now - 600 - 60 <= p.timestamp_unix <= now + 60, p
        # cpu_pct is per vCPU summed (100 per busy vCPU): this capsule has one.
        assert 0 <= p.cpu_pct <= 100 + 5, p
        assert 1 << 20 < p.mem_bytes < memory, p
        assert p.disk_bytes is not None and p.disk_bytes > 1 << 20, p


def test_stats_count_the_running_capsule(client, shared_capsule):
    info = shared_capsule.get_info()
    # Wait for a team sample taken while the shared capsule runs (the sampler runs every 10 s).
    s = wait_until(
        lambda: (s := client.capsules.stats(range="5m")).series.running
        and max(s.series.running) >= 1 and s,
        120, interval=2.0, what="a team sample with the capsule running",
    )
    assert s.range is not None and s.range.value == "5m"
    running = [c for c in client.capsules.list() if c.status == Status.running]
    assert s.current.running_count == len(running) >= 1
    assert s.current.vcpus_reserved == sum(c.vcpus for c in running)
    assert s.current.memory_mb_reserved == sum(c.memory_mb for c in running)
    assert s.current.memory_mb_reserved >= info.memory_mb
    assert s.peaks.running_count >= s.current.running_count
    assert s.peaks.vcpus >= s.current.vcpus_reserved
    assert s.peaks.memory_mb >= s.current.memory_mb_reserved
    series = s.series
    assert len(series.labels) == len(series.running) == len(series.vcpus) == len(series.memory_mb) <= 60
    assert all(label.tzinfo is not None for label in series.labels)
    assert series.labels == sorted(series.labels)
    assert max(series.running) <= s.peaks.running_count
    # A bucket with the capsule running reserves at least its vCPUs and memory.
    for n, v, mb in zip(series.running, series.vcpus, series.memory_mb):
        assert (v >= 1 and mb >= 128) if n >= 1 else (v, mb) == (0, 0)


def test_usage_counts_todays_running_minutes(client, shared_capsule):
    # Wait for a team sample (every 10 s) with the shared capsule running.
    wait_until(lambda: max(client.capsules.stats(range="5m").series.running or [0]) >= 1,
               120, interval=2.0, what="a team sample with the capsule running")
    today = datetime.now(timezone.utc).date()
    u = client.capsules.usage(from_=today - timedelta(days=2), to=today)
    assert u.from_ == today - timedelta(days=2) and u.to == today
    # One point per day of the range, in order, today's last.
    assert [p.date for p in u.points] == [today - timedelta(days=d) for d in (2, 1, 0)]
    for p in u.points:
        assert p.cpu_minutes >= 0 and p.ram_mb_minutes >= 0
    t = u.points[-1]
    # At least one 10 s sample of a 1-vCPU, 512 MiB capsule.
    assert t.cpu_minutes >= 10 / 60 - 1e-9, t
    assert t.ram_mb_minutes >= 512 * 10 / 60 - 1e-6, t
