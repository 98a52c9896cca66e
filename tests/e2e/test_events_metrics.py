"""Server-sent events and the metrics, stats and usage shapes."""

from __future__ import annotations

from datetime import date, timedelta

import wrenn
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


def test_metrics_shape(client, shared_capsule):
    shared_capsule.commands.run("echo warm")
    # The server samples running capsules periodically: wait for the first point.
    m = wait_until(
        lambda: (m := client.capsules.metrics(shared_capsule.capsule_id, range="10m")).points and m,
        120, interval=2.0, what="a metrics point",
    )
    assert m.sandbox_id == shared_capsule.capsule_id
    assert m.range is not None and m.range.value == "10m"
    assert isinstance(m.points, list)
    for p in m.points:
        assert p.timestamp_unix and p.timestamp_unix > 0
        assert p.cpu_pct is not None and p.cpu_pct >= 0
        assert p.mem_bytes is not None and p.mem_bytes > 0


def test_stats_shape(client, shared_capsule):
    s = client.capsules.stats(range="5m")
    assert s.range is not None and s.range.value == "5m"
    assert s.current.running_count >= 1
    assert s.current.vcpus_reserved >= 1 and s.current.memory_mb_reserved >= 512
    assert s.peaks is not None and s.peaks.running_count is not None and s.peaks.running_count >= 0
    series = s.series
    assert len(series.labels) == len(series.running) == len(series.vcpus) == len(series.memory_mb)
    assert all(label.tzinfo is not None for label in series.labels)


def test_usage_shape(client, shared_capsule):
    today = date.today()
    u = client.capsules.usage(from_=today - timedelta(days=2), to=today)
    assert u.from_ == today - timedelta(days=2) and u.to == today
    assert isinstance(u.points, list)
    for p in u.points:
        assert p.date is not None and p.cpu_minutes >= 0 and p.ram_mb_minutes >= 0
