"""Teams: the admin key makes teams and their keys (admin-only routes); each team's SDK client
sees only its own capsules."""

from __future__ import annotations

import subprocess

import httpx
import pytest

import wrenn

from conftest import unique, wrenn_binary


def _admin(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=60)


def _team_with_key(admin: httpx.Client, name: str) -> str:
    r = admin.post("/v1/teams", json={"name": name})
    assert r.status_code == 201, r.text
    r = admin.post(f"/v1/teams/{name}/keys", json={"name": "e2e"})
    assert r.status_code == 201, r.text
    return r.json()["key"]


@pytest.fixture(scope="module")
def two_teams(server):
    """Two fresh teams and one key of each; the teams are removed afterwards."""
    names = [unique("team-a"), unique("team-b")]
    with _admin(server) as admin:
        keys = [_team_with_key(admin, n) for n in names]
        yield dict(zip(names, keys))
        for n in names:
            admin.delete(f"/v1/teams/{n}")


def test_team_b_cannot_see_or_touch_team_a(server, two_teams):
    (name_a, key_a), (_, key_b) = two_teams.items()
    with wrenn.WrennClient(api_key=key_a, timeout=300) as a, wrenn.WrennClient(api_key=key_b, timeout=300) as b:
        capsule = wrenn.Capsule(wait=True, api_key=key_a)
        try:
            assert capsule.capsule_id in [c.id for c in a.capsules.list()]
            assert b.capsules.list() == []
            with pytest.raises(wrenn.WrennNotFoundError):
                b.capsules.get(capsule.capsule_id)
            with pytest.raises(wrenn.WrennNotFoundError):
                b.capsules.destroy(capsule.capsule_id)
            # Still there, still running, for its own team.
            assert a.capsules.get(capsule.capsule_id).status == wrenn.models.Status.running
            # A team with a live capsule is not removed.
            with _admin(server) as admin:
                r = admin.delete(f"/v1/teams/{name_a}")
                assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
        finally:
            capsule.__exit__(None, None, None)


def test_team_routes_are_admin_only(server, two_teams):
    _, key_b = list(two_teams.items())[1]
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key_b}, timeout=60) as http:
        for method, path in [("GET", "/v1/teams"), ("POST", "/v1/teams"), ("GET", "/v1/teams/admin/keys")]:
            r = http.request(method, path, json={"name": "x"})
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"]["code"] == "forbidden"


def test_team_and_key_cli(server):
    binary = wrenn_binary()
    name = unique("cli-team")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(binary), *args, "--data-dir", str(server.data_dir)], capture_output=True, timeout=120)

    r = cli("team", "create", name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip().startswith("team-")
    assert cli("team", "create", name).returncode == 1
    assert name in cli("team", "list").stdout.decode()
    r = cli("key", "create", "--team", name, "--name", "cli")
    assert r.returncode == 0, r.stderr
    key = r.stdout.decode().strip()
    # The running server accepts the new team's key at once, and it sees no other team's capsules.
    with wrenn.WrennClient(api_key=key, timeout=60) as c:
        assert c.capsules.list() == []
    assert key[:10] in cli("key", "list", "--team", name).stdout.decode()
    r = cli("key", "create", "--team", unique("missing"))
    assert r.returncode == 1 and b"not_found" in r.stderr, r.stderr
    assert cli("team", "rm", name).returncode == 0
    assert name not in cli("team", "list").stdout.decode()
    r = httpx.get(f"{server.url}/v1/capsules", headers={"X-API-Key": key}, timeout=30)
    assert r.status_code == 401
    r = cli("team", "rm", "admin")
    assert r.returncode == 1 and b"forbidden" in r.stderr, r.stderr
