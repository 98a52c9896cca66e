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
