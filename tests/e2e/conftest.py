"""Session fixtures: a real `wrenn server` on a free port, the SDK pointed at it, helpers.

Environment:
  WRENN_BIN                 the wrenn binary (default: <repo>/target/debug/wrenn)
  WRENN_TEST_DATA_DIR       shared test data; its images/ is reused (default /var/tmp/wrenn-test)
  WRENN_E2E_START_TIMEOUT   seconds to wait for /health (default 1800: a first start builds images)
  WRENN_E2E_KEEP            keep the server's data dir after the run when set
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import httpx
import pytest

import wrenn

import testhost

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@dataclass
class Server:
    """A running `wrenn server`."""

    url: str  # http://127.0.0.1:<port>
    key: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen
    binary: Path

    def restart(self, hard: bool = False) -> None:
        """Stops the server (SIGTERM, or SIGKILL when `hard`) and starts it again on the same
        port and data dir."""
        if hard:
            self.proc.kill()
            self.proc.wait(timeout=30)
        else:
            _stop(self.proc)
        port = int(self.url.rsplit(":", 1)[1])
        self.proc = _spawn(self.binary, self.data_dir, port, self.log_path)
        _wait_healthy(self, float(os.environ.get("WRENN_E2E_START_TIMEOUT", "1800")))

    def log_tail(self, lines: int = 200) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no server log: {e})"
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Callable[[], T], timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> T:
    """Polls `cond` until it returns a truthy value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as e:  # keep polling; report the last failure
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


class Collector:
    """Iterates a blocking iterator on a daemon thread so tests can wait with a deadline."""

    _END = object()

    def __init__(self, iterable: Iterable) -> None:
        self.items: list = []
        self.error: BaseException | None = None
        self._q: queue.Queue = queue.Queue()
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(iterable,), daemon=True)
        self._thread.start()

    def _run(self, iterable: Iterable) -> None:
        try:
            for item in iterable:
                self._q.put(item)
        except BaseException as e:  # surfaced to the test
            self.error = e
        finally:
            self._q.put(self._END)

    def until(self, pred: Callable[[list], bool], timeout: float = 60.0, what: str = "events") -> list:
        """Waits until `pred(all items so far)` holds; returns the items."""
        deadline = time.monotonic() + timeout
        while not pred(self.items):
            if self._done:
                raise AssertionError(f"stream ended before {what}; got {self.items!r}; error {self.error!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {self.items!r}")
            try:
                item = self._q.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if item is self._END:
                self._done = True
            else:
                self.items.append(item)
        return self.items

    def finish(self, timeout: float = 60.0) -> list:
        """Waits for the iterator to end; returns all items."""
        deadline = time.monotonic() + timeout
        while not self._done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for the stream to end; got {self.items!r}")
            try:
                item = self._q.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if item is self._END:
                self._done = True
            else:
                self.items.append(item)
        if self.error is not None:
            raise self.error
        return self.items


def unique(prefix: str) -> str:
    """A short unique name for files, tags and templates."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _destroy_everything(srv: Server) -> None:
    """Destroys every capsule of the session so no VM outlives the server."""
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": srv.key}, timeout=120) as http:
            resp = http.get("/v1/capsules")
            if resp.status_code != 200:
                return
            for c in resp.json():
                try:
                    http.delete(f"/v1/capsules/{c['id']}")
                except httpx.HTTPError:
                    pass
    except httpx.HTTPError:
        pass


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def _spawn(binary: Path, data: Path, port: int, log_path: Path, wrapper: tuple[str, ...] = (),
           extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts `wrenn server` (under `wrapper`, if given, with `extra_env` on top of the test
    settings) in its own session, appending its output to `log_path`."""
    # The capsules' DNS forwarders ask the test host's resolver: no query leaves the machine.
    # Idle guests cost little CPU: the host hands out 32 vCPUs, so 20 capsules fit at once.
    env = dict(os.environ, WRENN_DIR=str(data), WRENN_DNS_SERVERS=testhost.IP, WRENN_VCPUS_TOTAL="32")
    env.update(extra_env or {})
    env.pop("WRENN_API_KEY", None)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [*wrapper, str(binary), "server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _wait_healthy(srv: Server, timeout: float) -> None:
    """Waits for `/health`; ends the session with the server log when it never comes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            pytest.exit(f"wrenn server exited with {srv.proc.returncode} while starting:\n{srv.log_tail()}", returncode=3)
        try:
            if httpx.get(f"{srv.url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    _stop(srv.proc)
    pytest.exit(f"wrenn server not healthy after {timeout}s:\n{srv.log_tail()}", returncode=3)


def network_tag(data: Path) -> str:
    """The tag in the names of the network namespaces of the agent of `data` (`wr-<tag>-<id>`)."""
    return hashlib.sha256(str(data).encode()).hexdigest()[:6]


def network_leftovers(data: Path, capsule_id: str = "") -> list[str]:
    """Namespaces and slot files of this agent (of one capsule, if given) that still exist."""
    prefix = f"wr-{network_tag(data)}-{capsule_id}"
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    slots = Path("/run/wrenn/net")
    owners = [p.read_text().strip() for p in slots.glob("slot-*")] if slots.is_dir() else []
    return [f"namespace {n}" for n in ns if n.startswith(prefix)] + [f"slot of {o}" for o in owners if o.startswith(prefix)]


def _leftovers(data: Path, timeout: float = 30.0) -> list[str]:
    """VMM processes, capsule dirs and capsule networks of this data dir still there `timeout`
    s after destroy."""

    def found() -> list[str]:
        procs = subprocess.run(["pgrep", "-f", f"{data}/capsules/"], capture_output=True, text=True).stdout.split()
        capsules = data / "capsules"
        dirs = sorted(p.name for p in capsules.iterdir() if p.is_dir()) if capsules.is_dir() else []
        return [f"VMM pid {p}" for p in procs] + [f"capsule dir {d}" for d in dirs] + network_leftovers(data)

    deadline = time.monotonic() + timeout
    while (left := found()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture(scope="session")
def test_host() -> Iterable[testhost.TestHost]:
    """The session's test host (see testhost.py): the only outside server capsules reach."""
    th = testhost.start()
    try:
        yield th
    finally:
        th.stop()


def wrenn_binary() -> Path:
    binary = Path(os.environ.get("WRENN_BIN") or REPO / "target" / "debug" / "wrenn")
    if not binary.is_file():
        pytest.exit(f"wrenn binary {binary} not found (cargo build -p wrenn-cli, or set WRENN_BIN)", returncode=2)
    return binary


def new_data_dir() -> Path:
    """A fresh data dir whose images/ and templates/ are the shared caches."""
    shared = Path(os.environ.get("WRENN_TEST_DATA_DIR", "/var/tmp/wrenn-test")) / "images"
    shared.mkdir(parents=True, exist_ok=True)
    # A short path on disk: VM memory files and QMP sockets (path length limit) live here.
    data = Path(tempfile.mkdtemp(prefix="we2e-", dir="/var/tmp"))
    (data / "images").symlink_to(shared)
    # Base template snapshots are shared too: the server then starts without a cold boot.
    shared_templates = shared.parent / "templates"
    shared_templates.mkdir(parents=True, exist_ok=True)
    (data / "templates").symlink_to(shared_templates)
    return data


def start_server(wrapper: tuple[str, ...] = (), extra_env: dict[str, str] | None = None) -> Server:
    """Starts a `wrenn server` of its own (a fresh data dir, a free port, `extra_env` added to
    its environment) and waits for it."""
    binary = wrenn_binary()
    data = new_data_dir()
    log_path = data.parent / f"{data.name}.log"
    port = _free_port()
    srv = Server(url=f"http://127.0.0.1:{port}", key="", data_dir=data, log_path=log_path,
                 proc=_spawn(binary, data, port, log_path, wrapper, extra_env), binary=binary)
    _wait_healthy(srv, float(os.environ.get("WRENN_E2E_START_TIMEOUT", "1800")))
    key_file = data / "admin.key"
    srv.key = wait_until(lambda: key_file.is_file() and key_file.read_text().strip(), 60, what="admin.key")
    return srv


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, test_host: testhost.TestHost) -> Iterable[Server]:
    """Starts `wrenn server` with a fresh data dir whose images/ is the shared image cache."""
    srv = start_server()
    os.environ["WRENN_API_KEY"] = srv.key
    os.environ["WRENN_BASE_URL"] = srv.url
    os.environ.pop("WRENN_PROXY_DOMAIN", None)
    try:
        yield srv
    finally:
        stop_server(srv, request)


def stop_server(srv: Server, request: pytest.FixtureRequest) -> None:
    """Destroys every capsule of `srv`, stops it and removes its data dir; prints its log when a
    test failed, and fails when destroying left a VMM, a capsule dir or a network behind."""
    data, log_path = srv.data_dir, srv.log_path
    _destroy_everything(srv)
    # Destroying every capsule must end every VMM and remove every capsule dir.
    leaks = _leftovers(data)
    _stop(srv.proc)
    # VMMs are daemonized and outlive the server: end any this session left behind.
    subprocess.run(["pkill", "-9", "-f", f"{data}/capsules/"], check=False)
    failed = request.session.testsfailed > 0 or bool(leaks)
    if failed:
        capman = request.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():
            print(f"\n===== wrenn server log (tail of {log_path}) =====\n{srv.log_tail(300)}\n=====")
    if not os.environ.get("WRENN_E2E_KEEP"):
        shutil.rmtree(data, ignore_errors=True)
        if not failed:
            log_path.unlink(missing_ok=True)
    if leaks:
        pytest.fail(f"left behind after destroying every capsule: {leaks}")


@pytest.fixture(scope="session")
def client(server: Server) -> Iterable[wrenn.WrennClient]:
    """An SDK client (env-configured) with generous timeouts."""
    with wrenn.WrennClient(timeout=300) as c:
        yield c


def _make_capsule(**kwargs) -> wrenn.Capsule:
    c = wrenn.Capsule(wait=True, **kwargs)
    assert c.info is not None and c.info.status == wrenn.models.Status.running or c.is_running()
    return c


@pytest.fixture
def capsule(server: Server) -> Iterable[wrenn.Capsule]:
    """A fresh running capsule of the default template, destroyed after the test."""
    c = _make_capsule()
    try:
        yield c
    finally:
        c.__exit__(None, None, None)


@pytest.fixture(scope="module")
def shared_capsule(server: Server) -> Iterable[wrenn.Capsule]:
    """One running capsule for a module's tests; each test uses its own paths and tags."""
    c = _make_capsule()
    try:
        yield c
    finally:
        c.__exit__(None, None, None)
