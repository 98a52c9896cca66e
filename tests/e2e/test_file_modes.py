"""What `wrenn server` writes is its own alone: the store, the admin key, guest memory and
disks cannot be read by another user of the host."""

from __future__ import annotations

import stat

import wrenn


def _mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_store_key_and_guest_files_are_private(server):
    assert _mode(server.data_dir / "wrenn.db") == 0o600
    assert _mode(server.data_dir / "admin.key") == 0o600
    c = wrenn.Capsule(wait=True)
    try:
        d = server.data_dir / "capsules" / c.capsule_id
        assert _mode(server.data_dir / "capsules") == 0o700
        assert _mode(d) == 0o700
        assert _mode(d / "memory") == 0o600
        assert _mode(d / "disk.qcow2") == 0o600
    finally:
        c.destroy()
