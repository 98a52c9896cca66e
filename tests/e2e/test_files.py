"""Files through the SDK: write, read, list, mkdir, remove, and a 20 MiB streamed round trip."""

from __future__ import annotations

import hashlib
import os

import pytest

import wrenn

from conftest import unique


def test_write_read_text_and_bytes(shared_capsule):
    d = f"/tmp/{unique('f')}"
    shared_capsule.files.write(f"{d}/sub/hello.txt", "héllo\n")
    assert shared_capsule.files.read(f"{d}/sub/hello.txt") == "héllo\n"
    blob = bytes(range(256)) * 4
    shared_capsule.files.write(f"{d}/blob.bin", blob)
    assert shared_capsule.files.read_bytes(f"{d}/blob.bin") == blob
    # The guest sees the same bytes.
    r = shared_capsule.commands.run(f"wc -c < {d}/blob.bin")
    assert r.stdout.strip() == str(len(blob))
    assert shared_capsule.files.exists(f"{d}/blob.bin")
    assert not shared_capsule.files.exists(f"{d}/nope")


def test_list_entries(shared_capsule):
    d = f"/tmp/{unique('ls')}"
    shared_capsule.files.write(f"{d}/a.txt", "abc")
    shared_capsule.files.make_dir(f"{d}/inner")
    shared_capsule.files.write(f"{d}/inner/deep.txt", "x")
    shared_capsule.commands.run(f"ln -s a.txt {d}/link")
    entries = {e.name: e for e in shared_capsule.files.list(d)}
    assert set(entries) == {"a.txt", "inner", "link"}
    a = entries["a.txt"]
    assert (a.type, a.size, a.path) == ("file", 3, f"{d}/a.txt")
    assert a.modified_at is not None and a.modified_at > 0
    assert a.permissions and a.owner and a.mode
    assert entries["inner"].type == "directory"
    assert entries["link"].type == "symlink" and entries["link"].symlink_target
    deep = {e.path for e in shared_capsule.files.list(d, depth=2)}
    assert f"{d}/inner/deep.txt" in deep


def test_mkdir_and_conflict(shared_capsule):
    d = f"/tmp/{unique('mk')}/x/y"
    entry = shared_capsule.files.make_dir(d)
    assert entry.type == "directory" and entry.path == d
    assert shared_capsule.commands.run(f"test -d {d}").exit_code == 0
    resp = shared_capsule._client.http.post(
        f"/v1/capsules/{shared_capsule.capsule_id}/files/mkdir", json={"path": d}
    )
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "conflict"
    # The SDK treats an existing directory as success.
    assert shared_capsule.files.make_dir(d).type == "directory"


def test_remove(shared_capsule):
    d = f"/tmp/{unique('rm')}"
    shared_capsule.files.write(f"{d}/f.txt", "bye")
    shared_capsule.files.remove(f"{d}/f.txt")
    assert not shared_capsule.files.exists(f"{d}/f.txt")
    with pytest.raises(wrenn.WrennNotFoundError):
        shared_capsule.files.read(f"{d}/f.txt")
    shared_capsule.files.write(f"{d}/sub/g.txt", "x")
    shared_capsule.files.remove(d)
    assert not shared_capsule.files.exists(d)


def test_read_missing_is_not_found(shared_capsule):
    with pytest.raises(wrenn.WrennNotFoundError):
        shared_capsule.files.read_bytes(f"/tmp/{unique('missing')}")
    with pytest.raises(wrenn.WrennNotFoundError):
        shared_capsule.files.list(f"/tmp/{unique('missing')}")


def test_stream_20_mib_round_trip(shared_capsule):
    path = f"/root/{unique('big')}.bin"
    size = 20 * 1024 * 1024
    chunk = 256 * 1024
    seed = os.urandom(chunk)
    sent = hashlib.sha256()

    def chunks():
        for i in range(size // chunk):
            # Different content per chunk so misplaced chunks are caught.
            block = i.to_bytes(4, "big") + seed[4:]
            sent.update(block)
            yield block

    shared_capsule.files.upload_stream(path, chunks())
    got = hashlib.sha256()
    n = 0
    for part in shared_capsule.files.download_stream(path):
        got.update(part)
        n += len(part)
    assert n == size
    assert got.hexdigest() == sent.hexdigest()
    guest = shared_capsule.commands.run(f"sha256sum {path}", timeout=120).stdout.split()[0]
    assert guest == sent.hexdigest()
    shared_capsule.files.remove(path)
