"""A host where the server may not manage networking (no CAP_NET_ADMIN) starts with capsule
networking off, says so once at start, and runs capsules without network instead of failing
every create."""

from __future__ import annotations

import shutil

import httpx

from conftest import _leftovers, _stop, start_server, wait_until

NO_NET_ADMIN = ("setpriv", "--inh-caps=-net_admin", "--ambient-caps=-net_admin", "--bounding-set=-net_admin")


def test_without_cap_net_admin_capsules_run_without_network():
    srv = start_server(wrapper=NO_NET_ADMIN)
    try:
        log = srv.log_path.read_text(errors="replace")
        assert log.count("capsule networking is off") == 1, srv.log_tail()
        h = {"X-API-Key": srv.key}
        r = httpx.post(f"{srv.url}/v1/capsules", json={"template": "minimal"}, headers=h, timeout=300)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        wait_until(
            lambda: httpx.get(f"{srv.url}/v1/capsules/{cid}", headers=h).json()["status"] == "running",
            300,
            what="the capsule to run",
        )
        info = httpx.get(f"{srv.url}/v1/capsules/{cid}", headers=h).json()
        assert info["network"]["enabled"] is False, info
        assert "cannot manage capsule networks" in info["network"]["reason"]
        r = httpx.post(f"{srv.url}/v1/capsules/{cid}/exec", json={"cmd": "echo", "args": ["up"]}, headers=h, timeout=120)
        assert r.status_code == 200 and r.json()["stdout"] == "up\n", r.text
        assert httpx.delete(f"{srv.url}/v1/capsules/{cid}", headers=h, timeout=120).status_code == 204
        assert _leftovers(srv.data_dir) == []
    finally:
        _stop(srv.proc)
        shutil.rmtree(srv.data_dir, ignore_errors=True)
        srv.log_path.unlink(missing_ok=True)
