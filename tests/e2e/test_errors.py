"""Errors map to the SDK's exception classes by their code."""

from __future__ import annotations

import httpx
import pytest

import wrenn

from conftest import unique


def test_bad_key_is_authentication_error(server):
    with wrenn.WrennClient(api_key="wrn_" + "0" * 32) as client:
        with pytest.raises(wrenn.WrennAuthenticationError):
            client.capsules.list()


def test_missing_key_is_401_json(server):
    resp = httpx.get(f"{server.url}/v1/capsules", timeout=30)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"


def test_unknown_capsule_is_not_found(client):
    missing = "cl-" + "0" * 25
    with pytest.raises(wrenn.WrennNotFoundError):
        client.capsules.get(missing)
    with pytest.raises(wrenn.WrennNotFoundError):
        client.capsules.destroy(missing)
    with pytest.raises(wrenn.WrennNotFoundError):
        client.capsules.pause(missing)


@pytest.mark.parametrize("bad", ["not-an-id", "cl-short", "cl-" + "A" * 25])
def test_malformed_id_is_validation_error(client, bad):
    with pytest.raises(wrenn.WrennValidationError):
        client.capsules.get(bad)


def test_exec_on_paused_is_conflict(capsule):
    capsule.pause(wait=True)
    with pytest.raises(wrenn.WrennConflictError) as e:
        capsule.commands.run("true")
    assert e.value.code == "invalid_state"
    capsule.resume(wait=True)
    assert capsule.commands.run("echo fine").stdout == "fine\n"


def test_bad_request_bodies_are_validation_errors(shared_capsule):
    http = shared_capsule._client.http
    cid = shared_capsule.capsule_id
    resp = http.post(f"/v1/capsules/{cid}/exec", json={"args": ["x"]})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_request"
    resp = http.post(f"/v1/capsules/{cid}/exec", content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_request"
    resp = http.post(f"/v1/capsules/{cid}/files/read", json={"path": f"/tmp/{unique('x')}"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
