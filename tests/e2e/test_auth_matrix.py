"""Auth matrix generated from the server's own /openapi.yaml: every route (WebSocket upgrades
and SSE included) × {no key, malformed key, unknown key, another team's key}.

- Without a valid key every protected route answers 401 in the JSON error shape.
- With another team's key, a route that names team A's capsule or snapshot answers exactly as
  it does for a capsule or snapshot that does not exist (same status, same code): nothing
  tells team B that team A's resources exist, let alone serves them. Lists and the event
  stream never show team A's ids. Admin routes are 403.
"""

from __future__ import annotations

import secrets
import threading
import time

import httpx
import pytest
import yaml

import wrenn

from conftest import unique

WS_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
WS_ROUTES = ("/exec/stream", "/stream", "/pty")
NO_KEY = None
BAD_KEYS = {"none": NO_KEY, "malformed": "not a key at all", "unknown": "wrn_" + secrets.token_hex(24)}


@pytest.fixture(scope="module")
def world(server):
    """Team A (the admin team) with a capsule and a snapshot; team B with a key of its own."""
    admin = httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=120)
    team_b = unique("authb")
    assert admin.post("/v1/teams", json={"name": team_b}).status_code == 201
    key_b = admin.post(f"/v1/teams/{team_b}/keys", json={"name": "matrix"}).json()["key"]
    cap = wrenn.Capsule(wait=True)
    snap = unique("authsnap")
    cap.create_snapshot(name=snap)
    spec = yaml.safe_load(httpx.get(f"{server.url}/openapi.yaml").text)
    try:
        yield {"admin": admin, "key_b": key_b, "capsule": cap.capsule_id, "snapshot": snap, "spec": spec, "team_b": team_b}
    finally:
        cap.destroy()
        admin.delete(f"/v1/snapshots/{snap}")
        admin.delete(f"/v1/teams/{team_b}")
        admin.close()


def _routes(spec: dict) -> list[tuple[str, str]]:
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method not in ("get", "post", "put", "delete"):
                continue
            if op.get("security") == []:
                continue  # public: /health, /metrics, /openapi.yaml, /docs
            out.append((method, path))
    assert len(out) > 25, out
    return out


def _fill(path: str, capsule: str, snapshot: str, team: str) -> str:
    return (
        path.replace("{id}", capsule)
        .replace("{selector}", "1")
        .replace("{name}", snapshot if path.startswith("/v1/snapshots") else team)
        .replace("{key_id}", "key-0")
    )


def _call(server, method: str, path: str, key: str | None) -> httpx.Response:
    headers = {} if key is None else {"X-API-Key": key}
    if method == "get" and path.endswith(WS_ROUTES):
        headers.update(WS_HEADERS)
    body = {} if method in ("post", "put") else None
    return httpx.request(method.upper(), f"{server.url}{path}", headers=headers, json=body, timeout=60)


def _code(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["code"]
    except Exception:
        return f"<no JSON error: {r.text[:80]!r}>"


def test_without_a_valid_key_every_route_is_401(server, world):
    for method, path in _routes(world["spec"]):
        url = _fill(path, world["capsule"], world["snapshot"], world["team_b"])
        for what, key in BAD_KEYS.items():
            r = _call(server, method, url, key)
            assert r.status_code == 401, (what, method, url, r.status_code, r.text)
            assert _code(r) == "unauthorized", (what, method, url, r.text)


def test_another_teams_key_learns_nothing(server, world):
    key_b, cap, snap = world["key_b"], world["capsule"], world["snapshot"]
    ghost_cap = "cl-" + "0" * 25
    ghost_snap = unique("no-such-snap")
    checked = 0
    for method, path in _routes(world["spec"]):
        if path.startswith("/v1/teams"):
            r = _call(server, method, _fill(path, cap, snap, world["team_b"]), key_b)
            assert r.status_code == 403 and _code(r) == "forbidden", (method, path, r.text)
            continue
        if "{id}" in path or "{name}" in path:
            real = _call(server, method, _fill(path, cap, snap, world["team_b"]), key_b)
            ghost = _call(server, method, _fill(path, ghost_cap, ghost_snap, world["team_b"]), key_b)
            assert (real.status_code, _code(real)) == (ghost.status_code, _code(ghost)), (method, path, real.text, ghost.text)
            assert real.status_code >= 400, (method, path, real.text)
            # The answers differ only by the name the caller sent itself.
            same = real.text.replace(cap, ghost_cap).replace(snap, ghost_snap)
            assert same == ghost.text, (method, path, real.text, ghost.text)
            checked += 1
        elif method == "get" and path != "/v1/events/stream":
            r = _call(server, method, path, key_b)
            assert cap not in r.text and snap not in r.text, (path, r.text[:200])
    assert checked > 20
    # Team A's capsule still works for team A after all that.
    assert world["admin"].get(f"/v1/capsules/{cap}").json()["status"] == "running"


def test_another_teams_event_stream_shows_nothing_of_team_a(server, world):
    seen: list[str] = []

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{server.url}/v1/events/stream", headers={"X-API-Key": world["key_b"]}, timeout=30) as r:
                assert r.status_code == 200
                start = time.monotonic()
                for line in r.iter_lines():
                    seen.append(line)
                    if time.monotonic() - start > 8:
                        return
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(1)
    c = wrenn.Capsule.connect(world["capsule"])
    c.pause(wait=True)
    c.resume(wait=True)
    t.join(timeout=30)
    assert seen, "team B's stream was open"
    assert not any(world["capsule"] in line for line in seen), seen
