"""Snapshot templates: a capsule's files and running processes become a template."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import wrenn
from wrenn.models import Status

from conftest import unique, wait_until

LOOP = "i=0; while true; do i=$((i+1)); echo $i > /tmp/snapcounter; sleep 0.2; done"


def _count(c: wrenn.Capsule) -> int:
    text = c.files.read("/tmp/snapcounter").strip()
    return int(text) if text else 0


def test_snapshot_to_template_and_back(server, client, capsule):
    capsule.commands.run(LOOP, background=True, tag="snaploop")
    capsule.files.write("/root/snap.txt", "from the snapshot")
    wait_until(lambda: _count(capsule) >= 3, 120, what="the loop to run")
    name = unique("e2e-snap")

    t = capsule.create_snapshot(name=name)
    assert t.name == name and t.type == "snapshot"
    assert t.vcpus == 1 and t.memory_mb == 512 and t.created_at.tzinfo is not None
    # The source capsule keeps working.
    wait_until(lambda: capsule.get_info().status == Status.running, 120, what="the source to run again")
    assert capsule.commands.run("echo still").stdout == "still\n"

    assert name in [x.name for x in client.snapshots.list(type="snapshot")]
    assert name not in [x.name for x in client.snapshots.list(type="base")]
    listed = {x.name: x for x in client.snapshots.list()}
    assert name in listed and "minimal" in listed and listed["minimal"].type == "base"

    with pytest.raises(wrenn.WrennConflictError):
        client.snapshots.create(capsule.capsule_id, name=name)
    t2 = client.snapshots.create(capsule.capsule_id, name=name, overwrite=True)
    assert t2.name == name

    clone = wrenn.Capsule(template=name, wait=True)
    try:
        assert clone.get_info().template == name
        assert clone.files.read("/root/snap.txt") == "from the snapshot"
        # The loop was running in the snapshot's memory: it runs on in the clone.
        start = _count(clone)
        wait_until(lambda: _count(clone) > start + 2, 120, what="the snapshot's process to run in the clone")
        assert "snaploop" in [p.tag for p in clone.commands.list()]

        client.snapshots.delete(name)
        assert name not in [x.name for x in client.snapshots.list()]
        with pytest.raises(wrenn.WrennNotFoundError):
            client.snapshots.delete(name)
        # The clone does not need its template any more.
        assert clone.commands.run("cat /root/snap.txt").stdout == "from the snapshot"
        clone.pause(wait=True)
        clone.resume(wait=True)
        assert clone.commands.run("echo ok").stdout == "ok\n"
    finally:
        clone.__exit__(None, None, None)
        try:
            client.snapshots.delete(name)
        except wrenn.WrennNotFoundError:
            pass


def test_generated_name_and_invalid_name(client, capsule):
    t = client.snapshots.create(capsule.capsule_id)
    try:
        assert t.name and t.type == "snapshot"
    finally:
        client.snapshots.delete(t.name)
    with pytest.raises(wrenn.WrennValidationError):
        client.snapshots.create(capsule.capsule_id, name="-bad name/")


def test_create_from_unknown_template_fails(client):
    name = unique("no-such-template")
    before = {c.id for c in client.capsules.list()}
    # A valid name that names no snapshot of the team and no base template: 404.
    with pytest.raises(wrenn.WrennNotFoundError) as e:
        client.capsules.create(template=name)
    assert name in str(e.value)
    assert {c.id for c in client.capsules.list()} == before


def test_built_base_template_lists_its_size_and_build_time(server, client, capsule):
    # The server built minimal at its first start (and a capsule of it runs): real figures.
    base = {t.name: t for t in client.snapshots.list(type="base")}
    m = base["minimal"]
    assert (m.type, m.platform, m.protected, m.vcpus, m.memory_mb) == ("base", True, True, 1, 512)
    image = max(server.data_dir.glob("images/rootfs/minimal-*.ext4"), key=lambda p: p.stat().st_mtime)
    assert m.size_bytes > image.stat().st_blocks * 512, (m, image)
    assert datetime(2024, 1, 1, tzinfo=timezone.utc) < m.created_at <= datetime.now(timezone.utc), m
