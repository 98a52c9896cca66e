"""Port URL access through the real server: private ports (extension field `"ports":"private"`)
need the owning team's key or the capsule's access token, and no caller credential ever reaches
the guest. A perl HTTP server in the capsule answers with the request head it received."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
import uuid
from typing import Iterable

import httpx
import pytest

import wrenn
from wrenn.models import Status

from conftest import Server, unique, wait_until

ECHO_PORT = 8001

# Answers every request with its request line and headers (perl is in every Debian base).
ECHO_PL = r"""
use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
                              Listen => 16, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) {
    my $h = "";
    while (my $l = <$c>) { last if $l =~ /^\r?\n$/; $h .= $l; }
    print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " . length($h)
        . "\r\nConnection: close\r\n\r\n" . $h;
    close $c;
}
"""

CREDENTIAL_HEADERS = ("x-api-key", "authorization", "proxy-authorization", "x-access-token")


def _api(server: Server, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": key or server.key}, timeout=120)


def _port_get(server: Server, capsule_id: str, path: str = "/", headers: dict | None = None) -> httpx.Response:
    """A port-URL request to the echo server of `capsule_id`, through the control plane."""
    h = {"Host": f"{ECHO_PORT}-{capsule_id}.localhost"}
    h.update(headers or {})
    return httpx.get(f"{server.url}{path}", headers=h, timeout=30)


def _start_echo(capsule: wrenn.Capsule) -> None:
    capsule.files.write("/tmp/echo-headers.pl", ECHO_PL)
    capsule.commands.run(f"perl /tmp/echo-headers.pl {ECHO_PORT}", background=True, tag=unique("echo"))


def _wait_answering(server: Server, capsule_id: str, headers: dict | None = None) -> httpx.Response:
    def ok():
        r = _port_get(server, capsule_id, headers=headers)
        return r if r.status_code == 200 else None

    return wait_until(ok, 60, what=f"port {ECHO_PORT} of {capsule_id} to answer through the proxy")


def _header_lines(echoed: str) -> list[str]:
    return [line.strip().lower() for line in echoed.splitlines()[1:] if line.strip()]


def _assert_no_credentials(echoed: str, *secrets_: str) -> None:
    for line in _header_lines(echoed):
        name = line.split(":", 1)[0]
        assert name not in CREDENTIAL_HEADERS, f"{name} reached the guest:\n{echoed}"
    for s in secrets_:
        assert s.lower() not in echoed.lower(), f"a credential reached the guest:\n{echoed}"


def _other_team_key(server: Server) -> str:
    """An API key of a second team. Neither the API nor `wrenn key create` makes keys of
    another team, so it goes straight into the server's SQLite store (only the SHA-256 of a
    key is stored; the running server reads keys from the store on every request)."""
    key = "wrn_" + secrets.token_hex(16)
    now = int(time.time() * 1000)
    team_id = "team-" + uuid.uuid4().hex[:20]
    db = sqlite3.connect(server.data_dir / "wrenn.db", timeout=30)
    try:
        with db:
            db.execute(
                "INSERT INTO teams (id, name, created_at) VALUES (?, ?, ?)",
                (team_id, unique("e2e-other-team"), now),
            )
            db.execute(
                "INSERT INTO api_keys (id, team_id, name, key_prefix, key_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                ("key-" + uuid.uuid4().hex[:20], team_id, "e2e-other", key[:10], hashlib.sha256(key.encode()).hexdigest(), now),
            )
    finally:
        db.close()
    with _api(server, key) as http:
        assert http.get("/v1/capsules").status_code == 200
    return key


@pytest.fixture(scope="module")
def private_capsule(server: Server) -> Iterable[tuple[wrenn.Capsule, str]]:
    """A running capsule created with `"ports":"private"` (raw HTTP: the SDK does not know the
    field), its echo server started; yields it and its access token."""
    with _api(server) as http:
        resp = http.post("/v1/capsules", json={"ports": "private"})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        capsule_id, token = body["id"], body.get("access_token")
        assert body["ports"] == "private", body
        assert isinstance(token, str) and token.startswith("wrn_at_"), body
        wait_until(lambda: http.get(f"/v1/capsules/{capsule_id}").json()["status"] == "running", 600,
                   interval=0.5, what="the private capsule to run")
    c = wrenn.Capsule.connect(capsule_id)
    try:
        _start_echo(c)
        _wait_answering(server, capsule_id, {"X-API-Key": server.key})
        yield c, token
    finally:
        try:
            c.destroy()
        finally:
            c._client.close()


def test_the_sdk_reads_a_private_capsule(server, private_capsule):
    c, token = private_capsule
    info = wrenn.Capsule.get_info(c.capsule_id)
    assert info.status == Status.running
    assert c.capsule_id in [x.id for x in wrenn.Capsule.list()]
    with _api(server) as http:
        got = http.get(f"/v1/capsules/{c.capsule_id}").json()
    assert got["ports"] == "private"
    assert "access_token" not in got and token not in str(got)


def test_private_port_without_a_credential_is_401(server, private_capsule):
    c, _ = private_capsule
    for headers, path in [({}, "/"), ({"X-Access-Token": "wrn_at_wrong"}, "/"), ({}, "/?access_token=wrn_at_wrong"),
                          ({"X-API-Key": "wrn_" + "0" * 32}, "/")]:
        r = _port_get(server, c.capsule_id, path, headers)
        assert r.status_code == 401, (headers, path, r.text)
        assert r.json()["error"]["code"] == "unauthorized"


def test_private_port_with_another_teams_key_is_404(server, private_capsule):
    c, _ = private_capsule
    other = _other_team_key(server)
    r = _port_get(server, c.capsule_id, headers={"X-API-Key": other})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"


def test_private_port_with_the_owners_key_reaches_the_guest_without_it(server, private_capsule):
    c, _ = private_capsule
    r = _port_get(server, c.capsule_id, "/hello?q=1", {
        "X-API-Key": server.key,
        "Authorization": "Bearer visitor-secret",
        "Cookie": "theme=dark",
        "X-Custom": "kept",
    })
    assert r.status_code == 200, r.text
    assert r.text.lower().startswith("get /hello?q=1 http/1.1"), r.text
    _assert_no_credentials(r.text, server.key, "visitor-secret")
    lines = _header_lines(r.text)
    assert "cookie: theme=dark" in lines and "x-custom: kept" in lines, r.text


def test_private_port_with_the_access_token(server, private_capsule):
    c, token = private_capsule
    r = _port_get(server, c.capsule_id, headers={"X-Access-Token": token})
    assert r.status_code == 200, r.text
    _assert_no_credentials(r.text, token)
    # As a query parameter (a browser link): removed from what the guest sees.
    r = _port_get(server, c.capsule_id, f"/p?a=1&access_token={token}&b=2")
    assert r.status_code == 200, r.text
    assert r.text.lower().startswith("get /p?a=1&b=2 http/1.1"), r.text
    _assert_no_credentials(r.text, token)


def test_public_port_does_not_forward_the_callers_key(server, capsule):
    _start_echo(capsule)
    r = _wait_answering(server, capsule.capsule_id, {
        "X-API-Key": server.key,
        "Authorization": "Basic dXNlcjpwYXNz",
        "Cookie": "sid=abc",
    })
    _assert_no_credentials(r.text, server.key, "dXNlcjpwYXNz")
    assert "cookie: sid=abc" in _header_lines(r.text), r.text
    # Public ports need no key at all.
    assert _port_get(server, capsule.capsule_id).status_code == 200
