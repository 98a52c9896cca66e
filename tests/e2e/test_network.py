"""Capsule networking through the real server and SDK: egress to a test host (HTTP, DNS, git),
egress policy (create body and live `PUT …/network`), isolation from the host, link-local
metadata and other capsules, and networking across pause/resume, snapshot templates, a
`kill -9` of the server and destroy. The only outside server is the session's test host."""

from __future__ import annotations

import subprocess
import sys
import threading
import http.server
from pathlib import Path
from typing import Iterable

import httpx
import pytest

import wrenn
from wrenn.models import Status

import testhost
from conftest import Server, network_leftovers, network_tag, unique, wait_until

FETCH = f"curl -sS -m 10 http://{testhost.IP}/"


def _create(server: Server, network: dict | None = None) -> wrenn.Capsule:
    """Creates a capsule through the API (the policy is our extension of the create body)."""
    body: dict = {"template": "minimal"}
    if network is not None:
        body["network"] = network
    r = httpx.post(f"{server.url}/v1/capsules", json=body, headers={"X-API-Key": server.key}, timeout=300)
    assert r.status_code == 201, r.text
    c = wrenn.Capsule.connect(r.json()["id"])
    wait_until(c.is_running, 300, what="the capsule to run")
    return c


def _put_network(server: Server, capsule_id: str, policy: dict) -> httpx.Response:
    return httpx.put(
        f"{server.url}/v1/capsules/{capsule_id}/network", json=policy, headers={"X-API-Key": server.key}, timeout=60
    )


def _reaches(c: wrenn.Capsule, url: str) -> bool:
    """Whether an HTTP GET from inside the capsule gets any answer (timeouts bound every try)."""
    r = c.commands.run(f"curl -s -o /dev/null -m 5 -w '%{{http_code}}' {url}", timeout=30)
    return r.exit_code == 0 and r.stdout.strip() not in ("", "000")


@pytest.fixture
def net_capsule(server: Server) -> Iterable[wrenn.Capsule]:
    c = _create(server)
    try:
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="module")
def host_service() -> Iterable[int]:
    """An HTTP service of the host bound on all addresses: no capsule may reach it."""
    srv = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()


def test_guest_fetches_from_the_test_host_by_address_and_name(net_capsule):
    info = httpx.get(
        f"{wrenn_base()}/v1/capsules/{net_capsule.capsule_id}", headers={"X-API-Key": wrenn_key()}
    ).json()
    assert info["network"]["enabled"] is True, info
    r = net_capsule.commands.run(FETCH, timeout=60)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == testhost.MARKER
    r = net_capsule.commands.run(f"getent hosts {testhost.NAME}", timeout=60)
    assert r.exit_code == 0 and r.stdout.split()[0] == testhost.IP, (r.stdout, r.stderr)
    r = net_capsule.commands.run(f"curl -sS -m 10 http://{testhost.NAME}/", timeout=60)
    assert r.stdout.strip() == testhost.MARKER, r.stderr


def test_sdk_git_methods_work_and_clone_over_http(net_capsule):
    g = net_capsule.git
    res = g.clone(f"http://{testhost.IP}/repo.git", "/root/cloned")
    assert res.exit_code == 0, res.stderr
    assert net_capsule.files.read(f"/root/cloned/{testhost.REPO_FILE}") == testhost.REPO_TEXT
    g.init("/root/fresh", initial_branch="main")
    g.configure_user("Wrenn Test", "test@wrenn.test", cwd="/root/fresh")
    net_capsule.files.write("/root/fresh/a.txt", "a\n")
    g.add(cwd="/root/fresh")
    g.commit("first", cwd="/root/fresh")
    st = g.status(cwd="/root/fresh")
    assert st.is_clean, st
    branches = g.branches(cwd="/root/fresh")
    assert "main" in str(branches), branches


def test_deny_out_blocks_the_test_host_and_put_lifts_it_live(server):
    c = _create(server, {"deny_out": [f"{testhost.SUBNET}.0/24"]})
    try:
        assert not _reaches(c, f"http://{testhost.IP}/")
        info = c.get_info()
        assert info.status == Status.running
        r = _put_network(server, c.capsule_id, {})
        assert r.status_code == 200, r.text
        assert r.json()["network"]["policy"]["deny_out"] == []
        assert _reaches(c, f"http://{testhost.IP}/")
        r = _put_network(server, c.capsule_id, {"deny_out": [testhost.IP]})
        assert r.status_code == 200, r.text
        assert not _reaches(c, f"http://{testhost.IP}/")
        assert _reaches(c, f"http://{testhost.IP2}/"), "only the denied address is blocked"
    finally:
        c.destroy()


def test_allow_internet_false_with_allow_out_reaches_only_that_host(server):
    c = _create(server, {"allow_internet": False, "allow_out": [testhost.IP]})
    try:
        assert _reaches(c, f"http://{testhost.IP}/")
        assert not _reaches(c, f"http://{testhost.IP2}/")
        info = httpx.get(f"{server.url}/v1/capsules/{c.capsule_id}", headers={"X-API-Key": server.key}).json()
        assert info["network"]["policy"] == {"allow_internet": False, "allow_out": [testhost.IP], "deny_out": []}
    finally:
        c.destroy()


def test_bad_policies_are_400_naming_the_value(server):
    for bad, needle in (
        ({"deny_out": ["10.0.0.0/33"]}, "10.0.0.0/33"),
        ({"allow_out": ["example.com"]}, "example.com"),
        ({"allow_out": ["1.2.3.4/8"]}, "1.2.3.4/8"),
    ):
        r = httpx.post(
            f"{server.url}/v1/capsules", json={"network": bad}, headers={"X-API-Key": server.key}, timeout=60
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_request"
        assert needle in r.json()["error"]["message"]


def _ns_addresses(server: Server, capsule_id: str) -> tuple[str, str]:
    """(host side, namespace side) of a capsule's veth pair."""
    ns = f"wr-{network_tag(server.data_dir)}-{capsule_id}"
    out = subprocess.run(["ip", "-n", ns, "-4", "-br", "addr", "show", "veth0"], capture_output=True, text=True).stdout
    ns_ip = out.split()[2].split("/")[0]
    route = subprocess.run(["ip", "-n", ns, "route", "show", "default"], capture_output=True, text=True).stdout
    return route.split()[2], ns_ip


def test_isolation_host_metadata_and_other_capsules(server, host_service):
    a = _create(server)
    b = _create(server)
    try:
        api_port = int(server.url.rsplit(":", 1)[1])
        a_host, _ = _ns_addresses(server, a.capsule_id)
        b_host, b_ns = _ns_addresses(server, b.capsule_id)
        # The host service answers on the host itself...
        assert httpx.get(f"http://{testhost.HOST_SIDE}:{host_service}/", timeout=5).status_code in (200, 404)
        # ...but not to a guest, whichever host address it tries, nor the API port.
        for url in (
            f"http://{testhost.HOST_SIDE}:{host_service}/",
            f"http://{a_host}:{host_service}/",
            f"http://169.254.0.22:{host_service}/",
            f"http://{testhost.HOST_SIDE}:{api_port}/",
            f"http://{a_host}:{api_port}/",
            "http://169.254.169.254/",
            f"http://{b_host}:{host_service}/",
            f"http://{b_ns}/",
        ):
            assert not _reaches(a, url), url
        # The policy cannot lift isolation.
        r = _put_network(server, a.capsule_id, {"allow_out": [f"{testhost.HOST_SIDE}/32", "169.254.0.0/16", "10.0.0.0/8"], "deny_out": ["1.1.1.1"]})
        assert r.status_code == 200, r.text
        assert not _reaches(a, f"http://{testhost.HOST_SIDE}:{host_service}/")
        assert not _reaches(a, "http://169.254.169.254/")
        # Both still reach the test host.
        assert _reaches(b, f"http://{testhost.IP}/")
    finally:
        a.destroy()
        b.destroy()


def test_network_survives_pause_resume_and_snapshot_clones(server):
    c = _create(server, {"deny_out": [testhost.IP2]})
    clone = None
    try:
        c.pause(wait=True)
        assert network_leftovers(server.data_dir, c.capsule_id) == [], "a paused capsule holds no namespace"
        c.resume(wait=True)
        r = c.commands.run(FETCH, timeout=60)
        assert r.stdout.strip() == testhost.MARKER, r.stderr
        assert not _reaches(c, f"http://{testhost.IP2}/"), "the policy is applied again at resume"
        name = unique("nettpl")
        c.create_snapshot(name=name)
        clone = wrenn.Capsule(template=name, wait=True)
        r = clone.commands.run(FETCH, timeout=60)
        assert r.stdout.strip() == testhost.MARKER, r.stderr
        r = clone.commands.run(f"getent hosts {testhost.NAME}", timeout=60)
        assert r.stdout.split()[0] == testhost.IP
    finally:
        for x in (clone, c):
            if x is not None:
                x.destroy()


def test_network_after_server_kill9_and_destroy_leaves_nothing(server):
    c = _create(server)
    try:
        server.restart(hard=True)
        assert c.get_info().status == Status.running
        r = c.commands.run(FETCH, timeout=60)
        assert r.stdout.strip() == testhost.MARKER, r.stderr
        r = c.commands.run(f"getent hosts {testhost.NAME}", timeout=60)
        assert r.stdout.split()[0] == testhost.IP, "the DNS forwarder is back after the restart"
        ns = f"wr-{network_tag(server.data_dir)}-{c.capsule_id}"
        assert ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    finally:
        c.destroy()
    wait_until(lambda: network_leftovers(server.data_dir, c.capsule_id) == [], 30, what="the namespace to go")
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    # The capsule's rules lived in its namespace; the host table holds no per-capsule rule.
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    assert c.capsule_id not in ruleset and c.capsule_id not in links


def test_twenty_capsules_have_separate_working_networks(server):
    caps: list[wrenn.Capsule] = []
    try:
        for _ in range(20):
            caps.append(wrenn.Capsule(wait=True, memory_mb=256))
        for c in caps:
            r = c.commands.run(FETCH, timeout=60)
            assert r.stdout.strip() == testhost.MARKER, (c.capsule_id, r.stderr)
        namespaces = {f"wr-{network_tag(server.data_dir)}-{c.capsule_id}" for c in caps}
        listed = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        assert namespaces <= listed
        veths = {_ns_addresses(server, c.capsule_id)[0] for c in caps}
        assert len(veths) == 20, "each capsule has its own host-side address"
    finally:
        for c in caps:
            try:
                c.destroy()
            except wrenn.WrennError:
                pass


def wrenn_base() -> str:
    import os

    return os.environ["WRENN_BASE_URL"]


def wrenn_key() -> str:
    import os

    return os.environ["WRENN_API_KEY"]
