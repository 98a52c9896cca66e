"""The SDK's code runner against `code-runner-beta`, built here from the recipe Wrenn ships.

The template is built once for the module, on first use (a create of it starts the build of the
shipped recipe), on a server of its own: its build installs Debian packages, so that server's capsules ask the host's
own resolvers (the only traffic that leaves the machine is that package download, from the
Debian registry). The SDK reaches Jupyter through the port URLs `8888-<id>.localhost:<port>`,
which the host resolves to the loopback address with nss-myhostname, as any program on a
machine set up by scripts/setup-host does: nothing in the SDK is patched.
"""

from __future__ import annotations

import asyncio
import base64
import queue
import re
import socket
import subprocess
import time
import warnings
from pathlib import Path

import httpx
import pytest

from wrenn import code_runner

from conftest import start_server, stop_server, unique, wrenn_binary

BUILD_TIMEOUT = 3600


def _host_resolvers() -> str:
    servers = [
        line.split()[1]
        for line in Path("/etc/resolv.conf").read_text().splitlines()
        if line.startswith("nameserver") and len(line.split()) > 1
    ]
    if not servers:
        pytest.fail("/etc/resolv.conf names no resolver; the build's apt-get needs one")
    return ",".join(servers)


@pytest.fixture(scope="module")
def runner(request):
    """A server with `code-runner-beta` built; yields (server, base URL the SDK uses)."""
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo("8888-cl-check.localhost", 80)}
    except socket.gaierror as e:
        pytest.fail(f"*.localhost does not resolve ({e}): install libnss-myhostname (scripts/setup-host)")
    assert addrs <= {"127.0.0.1", "::1"}, addrs
    srv = start_server(extra_env={"WRENN_DNS_SERVERS": _host_resolvers()})
    try:
        port = srv.url.rsplit(":", 1)[1]
        base_url = f"http://localhost:{port}"
        started = time.monotonic()
        # First use: the create starts the build of the shipped recipe and says so.
        first = httpx.post(f"{srv.url}/v1/capsules", headers={"X-API-Key": srv.key},
                           json={"template": "code-runner-beta"}, timeout=60)
        assert first.status_code == 503, first.text
        message = first.json()["error"]["message"]
        assert "being built" in message, message
        build_id = re.search(r"bld-[0-9a-z]{20}", message).group(0)
        build = subprocess.run(
            [str(wrenn_binary()), "template", "logs", build_id],
            env={"PATH": "/usr/bin:/bin", "WRENN_BASE_URL": srv.url, "WRENN_API_KEY": srv.key},
            capture_output=True, text=True, timeout=BUILD_TIMEOUT,
        )
        assert build.returncode == 0, f"build failed:\n{build.stderr[-6000:]}\n{build.stdout[-3000:]}"
        # A progress line per step, the steps' output, and the end.
        assert "[1/" in build.stderr and "] snapshot" in build.stderr, build.stderr[-3000:]
        assert "template code-runner-beta built" in build.stderr
        print(f"code-runner-beta built in {time.monotonic() - started:.0f} s")
        yield srv, base_url
    finally:
        # The server's templates/ is the shared test cache: the built template must not stay.
        try:
            httpx.delete(f"{srv.url}/v1/admin/templates/code-runner-beta",
                         headers={"X-API-Key": srv.key}, timeout=120)
        except httpx.HTTPError:
            pass
        stop_server(srv, request)


def _capsule(runner) -> code_runner.Capsule:
    srv, base_url = runner
    return code_runner.Capsule(api_key=srv.key, base_url=base_url, wait=True)


def test_results_logs_errors_and_state(runner):
    c = _capsule(runner)
    try:
        first = c.run_code("x = 41\nprint('hello')\nx + 1")
        assert first.error is None, first.error
        assert first.logs.stdout == ["hello\n"]
        assert first.text == "42"
        # State persists between calls.
        assert c.run_code("x * 2").text == "82"
        err = c.run_code("import sys\nsys.stderr.write('to stderr\\n')\n1 / 0")
        assert err.logs.stderr == ["to stderr\n"]
        assert err.error is not None
        assert err.error.name == "ZeroDivisionError"
        assert "division by zero" in err.error.value
        assert "ZeroDivisionError" in err.error.traceback
        # The kernel goes on after an error.
        assert c.run_code("x").text == "41"
    finally:
        c.destroy()


def test_rich_outputs_arrive_as_the_sdk_expects(runner):
    c = _capsule(runner)
    try:
        ex = c.run_code(
            "from IPython.display import display, HTML, Markdown, JSON, Latex, SVG\n"
            "display(HTML('<b>bold</b>'))\n"
            "display(Markdown('# title'))\n"
            "display(JSON({'a': 1}))\n"
            "display(Latex(r'$x^2$'))\n"
            "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"></svg>'))\n"
            "import pandas as pd\n"
            "pd.DataFrame({'n': [1, 2]})"
        )
        assert ex.error is None, ex.error
        shown = [r for r in ex.results if not r.is_main_result]
        assert [bool(r.html) for r in shown[:1]] == [True] and "<b>bold</b>" in shown[0].html
        assert any(r.markdown and "# title" in r.markdown for r in shown)
        assert any(r.json == {"a": 1} for r in shown)
        assert any(r.latex and "x^2" in r.latex for r in shown)
        assert any(r.svg and "<svg" in r.svg for r in shown)
        main = [r for r in ex.results if r.is_main_result]
        assert len(main) == 1 and "<table" in (main[0].html or "") and "n" in main[0].text
        fig = c.run_code(
            "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\nplt.show()"
        )
        assert fig.error is None, fig.error
        pngs = [r.png for r in fig.results if r.png]
        assert pngs, fig.results
        assert base64.b64decode(pngs[0]).startswith(b"\x89PNG\r\n\x1a\n")
        # numpy, seaborn and requests are there.
        ok = c.run_code("import numpy, seaborn, requests\nnumpy.arange(3).sum()")
        assert ok.error is None and ok.text == "3", (ok.error, ok.text)
    finally:
        c.destroy()


def test_a_cell_past_its_timeout_is_interrupted_and_the_next_call_works(runner):
    c = _capsule(runner)
    try:
        assert c.run_code("kept = 'yes'").error is None
        started = time.monotonic()
        # The sync client's timeout surfaces as the queue.Empty of httpx-ws 0.9 (the SDK
        # catches TimeoutError only); either way the caller stops waiting after 3 s.
        try:
            slow = c.run_code("import time\ntime.sleep(600)", timeout=3)
            assert slow.timed_out and slow.error is not None and slow.error.name == "Timeout"
        except queue.Empty:
            pass
        assert time.monotonic() - started < 60
        # The next cell interrupts the abandoned one and runs, state intact.
        nxt = c.run_code("kept + '!'", timeout=60)
        assert nxt.error is None, nxt.error
        assert nxt.text == "'yes!'"
        assert c.run_code("1 + 1").text == "2"
    finally:
        c.destroy()


def test_two_capsules_never_share_a_kernel_or_random_state(runner):
    a, b = _capsule(runner), _capsule(runner)
    try:
        assert a.run_code("secret = 'a'").error is None
        miss = b.run_code("secret")
        assert miss.error is not None and miss.error.name == "NameError"
        # Both are clones of one snapshot; their generators must still differ.
        draw = "import random, numpy\n(random.random(), float(numpy.random.rand()))"
        assert a.run_code(draw).text != b.run_code(draw).text
    finally:
        a.destroy()
        b.destroy()


def test_async_client_and_the_deprecated_import_path(runner):
    srv, base_url = runner

    async def run() -> str:
        c = await code_runner.AsyncCapsule.create(api_key=srv.key, base_url=base_url, wait=True)
        try:
            assert (await c.run_code("y = 6")).error is None
            slow = await c.run_code("import time\ntime.sleep(600)", timeout=3)
            assert slow.timed_out and slow.error is not None and slow.error.name == "Timeout"
            return (await c.run_code("y * 7", timeout=60)).text
        finally:
            await c.destroy()

    assert asyncio.run(run()) == "42"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import importlib
        import wrenn.code_interpreter as old
        importlib.reload(old)
    assert any(issubclass(w.category, FutureWarning) and "code_interpreter" in str(w.message) for w in caught)
    assert old.Capsule is code_runner.Capsule
    c = old.Capsule(api_key=srv.key, base_url=base_url, wait=True)
    try:
        assert c.run_code("print(2 + 2)").logs.stdout == ["4\n"]
    finally:
        c.destroy()


def test_the_port_url_checks_the_key_it_is_sent(runner):
    srv, base_url = runner
    c = _capsule(runner)
    team = unique("crb-team")
    admin = httpx.Client(base_url=srv.url, headers={"X-API-Key": srv.key}, timeout=60)
    try:
        assert admin.post("/v1/teams", json={"name": team}).status_code == 201
        other_key = admin.post(f"/v1/teams/{team}/keys", json={"name": "e2e"}).json()["key"]
        url = c.get_url(8888) + "/api/status"
        assert url.startswith("http://8888-cl-") and ".localhost:" in url, url
        assert httpx.get(url, headers={"X-API-Key": srv.key}, timeout=30).status_code == 200
        assert httpx.get(url, headers={"X-API-Key": other_key}, timeout=30).status_code == 404
        bad = httpx.get(url, headers={"X-API-Key": "wrn_" + "0" * 32}, timeout=30)
        assert bad.status_code == 401
    finally:
        c.destroy()
        admin.delete(f"/v1/teams/{team}")
        admin.close()


def test_e2b_code_interpreter_runs_code_in_the_same_template(runner, monkeypatch):
    """`e2b_code_interpreter.Sandbox` (template `code-interpreter-v1`, which is this template)
    through the E2B front end: state across calls, an error, a matplotlib PNG, contexts."""
    ci = pytest.importorskip("e2b_code_interpreter")
    srv, base_url = runner
    monkeypatch.setenv("E2B_API_KEY", srv.key)
    monkeypatch.setenv("E2B_API_URL", base_url)
    monkeypatch.setenv("E2B_SANDBOX_URL", base_url)
    sb = ci.Sandbox.create(timeout=600)
    try:
        first = sb.run_code("x = 41\nprint('hello')\nx + 1")
        assert first.error is None, first.error
        assert first.logs.stdout == ["hello\n"]
        assert first.text == "42"
        assert sb.run_code("x * 2").text == "82"
        err = sb.run_code("1 / 0")
        assert err.error is not None and err.error.name == "ZeroDivisionError"
        assert "ZeroDivisionError" in err.error.traceback
        assert sb.run_code("import os; os.environ.get('ONLY_HERE')", envs={"ONLY_HERE": "yes"}).text == "'yes'"
        assert sb.run_code("import os; os.environ.get('ONLY_HERE')").text is None
        fig = sb.run_code("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()")
        pngs = [r.png for r in fig.results if r.png]
        assert pngs and base64.b64decode(pngs[0]).startswith(b"\x89PNG\r\n\x1a\n"), fig.results
        ctx = sb.create_code_context()
        assert sb.run_code("x", context=ctx).error is not None  # a new kernel: no x there
        assert ctx.id in [c.id for c in sb.list_code_contexts()]
        sb.remove_code_context(ctx)
        assert ctx.id not in [c.id for c in sb.list_code_contexts()]
        # The same sandbox runs commands too.
        assert sb.commands.run("echo ok").stdout == "ok\n"
        # /execute needs the sandbox's access token.
        r = httpx.post(f"{base_url}/execute", json={"code": "1"}, timeout=30,
                       headers={"E2b-Sandbox-Id": sb.sandbox_id, "E2b-Sandbox-Port": "49999"})
        assert r.status_code == 401, r.text
    finally:
        sb.kill()
