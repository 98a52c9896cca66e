"""Connection hardening and error shapes against the real server: slow clients are cut off,
oversized requests and unparsable ones get JSON errors."""

from __future__ import annotations

import socket
import time

import httpx


def _addr(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _read_to_close(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            return got
        got += chunk
    raise AssertionError(f"connection still open after {timeout}s; got {got!r}")


def _json_answer(raw: bytes) -> tuple[int, dict]:
    import json

    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), raw[:300]
    return int(head.split(b" ")[1]), json.loads(body)


def test_half_sent_headers_are_cut_off(server):
    # The default header-read timeout is 30 s: the connection is closed well before 60 s.
    with socket.create_connection(_addr(server)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        _read_to_close(s, 60)
        assert time.monotonic() - started < 45


def test_big_create_body_is_413_json(server):
    body = '{"metadata":{"a":"' + "x" * 1_100_000 + '"}}'
    r = httpx.post(f"{server.url}/v1/capsules", content=body, headers={"X-API-Key": server.key, "content-type": "application/json"}, timeout=60)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


def test_100kb_url_is_414_json(server):
    with socket.create_connection(_addr(server)) as s:
        s.sendall(f"GET /v1/capsules?x={'a' * 100_000} HTTP/1.1\r\nHost: x\r\nX-API-Key: {server.key}\r\n\r\n".encode())
        status, body = _json_answer(_read_to_close(s, 30))
    assert status == 414 and body["error"]["code"] == "too_large"


def test_unknown_snapshot_field_is_400_naming_it(server):
    r = httpx.post(f"{server.url}/v1/snapshots", json={"sandbox_id": "cl-" + "0" * 25, "bogus_field": 1}, headers={"X-API-Key": server.key}, timeout=60)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"
    assert "bogus_field" in r.json()["error"]["message"]


def test_server_limit_flags_take_effect():
    """`wrenn server`'s bounds come from its flags (here through their environment
    variables): a 3 s header-read timeout, two connections at most."""
    import shutil

    from conftest import _stop, start_server

    srv = start_server(extra_env={"WRENN_HEADER_READ_TIMEOUT_SEC": "3", "WRENN_MAX_CONNECTIONS": "2"})
    try:
        addr = _addr(srv)
        # Headers never finished: cut off after about 3 s, long before the default 30 s.
        with socket.create_connection(addr) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            _read_to_close(slow, 60)
            assert time.monotonic() - started < 20
        # Two idle connections hold both places: a third is answered 503 JSON and closed.
        held = [socket.create_connection(addr) for _ in range(2)]
        try:
            time.sleep(0.5)
            with socket.create_connection(addr) as third:
                third.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                status, body = _json_answer(_read_to_close(third, 30))
                assert status == 503, body
                assert body["error"]["code"] == "host_unavailable", body
        finally:
            for c in held:
                c.close()
        # With the places free again the server answers as usual.
        assert httpx.get(f"{srv.url}/health", timeout=10).status_code == 200
    finally:
        _stop(srv.proc)
        shutil.rmtree(srv.data_dir, ignore_errors=True)
        srv.log_path.unlink(missing_ok=True)
