"""Capsule lifecycle through the SDK: create, get, list, destroy, ping, both base URL forms."""

from __future__ import annotations

import re
from datetime import timezone

import httpx
import pytest

import wrenn
from wrenn.models import Status

from conftest import unique, wait_until

ID_RE = re.compile(r"^cl-[0-9a-z]{25}$")


def test_create_get_list_destroy(server):
    c = wrenn.Capsule(wait=True)
    try:
        assert ID_RE.match(c.capsule_id), c.capsule_id
        info = c.get_info()
        assert info.id == c.capsule_id
        assert info.status == Status.running
        assert info.template == "minimal"
        assert (info.vcpus, info.memory_mb, info.timeout_sec) == (1, 512, 0)
        for ts in (info.created_at, info.started_at, info.last_active_at, info.last_updated):
            assert ts is not None and ts.tzinfo is not None
        assert info.created_at.utcoffset() == timezone.utc.utcoffset(None)
        assert c.capsule_id in [x.id for x in wrenn.Capsule.list()]
        assert c.is_running()
        assert c.commands.run("echo alive").stdout == "alive\n"
    finally:
        c.destroy(wait=True)
    assert c.capsule_id not in [x.id for x in wrenn.Capsule.list()]
    # The row stays: GET of a destroyed capsule answers it as stopped (docs/api.md).
    after = wrenn.Capsule.get_info(c.capsule_id)
    assert after.status == Status.stopped


def test_inactivity_timeout_is_raised_to_60_and_pauses(server):
    with wrenn.Capsule(timeout=5, wait=True) as c:
        assert c.get_info().timeout_sec == 60
        c.files.write("/tmp/idle.txt", "kept while idle")
        # GET is not activity: after about a minute without any, the capsule is paused.
        wait_until(lambda: c.get_info().status == Status.paused, 300, interval=2.0,
                   what="the idle capsule to be paused")
        again = wrenn.Capsule.connect(c.capsule_id)
        try:
            assert again.get_info().status == Status.running
            assert again.files.read("/tmp/idle.txt") == "kept while idle"
        finally:
            again._client.close()


def test_create_with_other_size(server):
    # A size without a ready template snapshot may need a boot: allow a long call.
    with wrenn.WrennClient(timeout=600) as client:
        info = client.capsules.create(vcpus=2, memory_mb=768)
        try:
            c = wrenn.Capsule(_capsule_id=info.id, _client=client, _info=info)
            c.wait_ready(timeout=600)
            got = c.get_info()
            assert (got.vcpus, got.memory_mb) == (2, 768)
            assert c.commands.run("nproc").stdout.strip() == "2"
            mem_kib = int(c.commands.run("grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2").stdout)
            assert 512 * 1024 < mem_kib <= 768 * 1024
        finally:
            client.capsules.destroy(info.id)


def test_ping_resets_activity(shared_capsule):
    before = shared_capsule.get_info().last_active_at

    def advanced() -> bool:
        shared_capsule.ping()
        return shared_capsule.get_info().last_active_at > before

    wait_until(advanced, timeout=120, interval=1.0, what="last_active_at to advance after ping")
    with wrenn.WrennClient() as client, pytest.raises(wrenn.WrennNotFoundError):
        client.capsules.ping("cl-" + "0" * 25)


@pytest.mark.parametrize("suffix", ["", "/api", "/api/"])
def test_base_url_with_and_without_api(server, shared_capsule, suffix):
    base = server.url + suffix
    with wrenn.WrennClient(base_url=base) as client:
        assert shared_capsule.capsule_id in [x.id for x in client.capsules.list()]
    # HTTP and WebSocket calls both work under the chosen prefix.
    c = wrenn.Capsule.connect(shared_capsule.capsule_id, base_url=base)
    try:
        assert c.commands.run("echo via-prefix").stdout == "via-prefix\n"
        events = list(c.commands.stream("echo streamed"))
        assert any(e.type == "stdout" and "streamed" in e.data for e in events)
    finally:
        c._client.close()


PERL_HTTP = (
    "perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>\"127.0.0.1\",LocalPort=>8000,"
    "Listen=>5,ReuseAddr=>1) or die; while($c=$s->accept){ while(<$c>){ last if /^\\r?$/ } "
    "print $c \"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 11\\r\\n"
    "Connection: close\\r\\n\\r\\nhello-port\\n\"; close $c }'"
)


def test_port_urls_reach_a_server_in_the_capsule(server, shared_capsule):
    host = f"8000-{shared_capsule.capsule_id}.localhost"
    # Nothing listens yet: a JSON 502.
    resp = httpx.get(f"{server.url}/", headers={"Host": host}, timeout=30)
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["code"] == "agent_error"
    # A tiny HTTP server inside the capsule (perl is in every Debian base).
    shared_capsule.commands.run(PERL_HTTP, background=True, tag=unique("http"))

    def fetch():
        r = httpx.get(f"{server.url}/anything", headers={"Host": host}, timeout=30)
        return r if r.status_code == 200 else None

    resp = wait_until(fetch, 60, what="the capsule's port 8000 to answer through the proxy")
    assert resp.text == "hello-port\n"
    # An unknown capsule's port URL is a JSON 404.
    resp = httpx.get(f"{server.url}/", headers={"Host": "8000-cl-0000000000000000000000000.localhost"}, timeout=30)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_proxy_domain_limits_port_urls_to_it():
    """With --proxy-domain (here WRENN_PROXY_DOMAIN) only host names under that domain are
    port URLs; the same prefix under another name goes to the API routes."""
    import shutil

    from conftest import _stop, start_server

    srv = start_server(extra_env={"WRENN_PROXY_DOMAIN": "sandbox.test"})
    try:
        unknown = "cl-" + "0" * 25
        for host in (f"8000-{unknown}.sandbox.test", f"8000-{unknown}.SANDBOX.test:8080"):
            r = httpx.get(f"{srv.url}/health", headers={"Host": host}, timeout=30)
            assert r.status_code == 404 and f"capsule {unknown} not found" in r.json()["error"]["message"], (host, r.text)
        for host in (f"8000-{unknown}.elsewhere.test", f"8000-{unknown}.sandbox.test.evil.test"):
            r = httpx.get(f"{srv.url}/health", headers={"Host": host}, timeout=30)
            assert r.status_code == 200 and r.json()["status"] == "ok", (host, r.text)
    finally:
        _stop(srv.proc)
        shutil.rmtree(srv.data_dir, ignore_errors=True)
        srv.log_path.unlink(missing_ok=True)


def test_health_needs_no_key(server):
    resp = httpx.get(f"{server.url}/health", timeout=30)
    assert resp.status_code == 200


def test_parallel_creates(server):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        capsules = list(pool.map(lambda _: wrenn.Capsule(wait=True), range(3)))
    try:
        ids = {c.capsule_id for c in capsules}
        assert len(ids) == 3
        for i, c in enumerate(capsules):
            c.files.write("/tmp/who", f"capsule {i}")
        # Each capsule has its own disk.
        assert [c.commands.run("cat /tmp/who").stdout for c in capsules] == [f"capsule {i}" for i in range(3)]
        # Clones of one template get their own random pool.
        seeds = {c.commands.run("head -c 16 /dev/urandom | od -An -tx1").stdout for c in capsules}
        assert len(seeds) == 3
    finally:
        for c in capsules:
            c.destroy()


def test_python_template(server):
    with wrenn.WrennClient(timeout=900) as client:
        info = client.capsules.create(template="python")
        try:
            c = wrenn.Capsule(_capsule_id=info.id, _client=client, _info=info)
            c.wait_ready(timeout=900)
            assert c.get_info().template == "python"
            assert c.commands.run("python3 -c 'print(6*7)'").stdout == "42\n"
        finally:
            client.capsules.destroy(info.id)
