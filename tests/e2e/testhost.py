"""A *test host*: a server inside a network namespace this session makes, attached to the host
by a veth pair and routed by the host like any outside server. Capsule network tests talk only
to it (and to the host itself, to prove they cannot): no traffic leaves this machine.

It serves, at 198.18.0.1 and 198.18.0.2 (a benchmarking range, RFC 2544):
  - HTTP on port 80: `index.html` (MARKER) and a git repository `repo.git` (dumb HTTP);
  - DNS on 198.18.0.1:53 (dnsmasq): `testhost.wrenn.test` -> 198.18.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NETNS = "wrenn-e2e-testhost"
HOST_VETH = "wte2e0"
SUBNET = "198.18.0"
IP = f"{SUBNET}.1"
IP2 = f"{SUBNET}.2"
HOST_SIDE = f"{SUBNET}.254"
NAME = "testhost.wrenn.test"
MARKER = "hello from the test host"
REPO_FILE = "README.md"
REPO_TEXT = "a repository served by the test host\n"


def sh(*args: str, check: bool = True, ns: str | None = None) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@dataclass
class TestHost:
    """The running test host."""

    root: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        sh("ip", "netns", "del", NETNS, check=False)
        sh("ip", "link", "del", HOST_VETH, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _make_repo(www: Path) -> None:
    work = www.parent / "work"
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    (work / REPO_FILE).write_text(REPO_TEXT)
    subprocess.run(["git", "-C", str(work), "add", REPO_FILE], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "first"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(www / "repo.git")], check=True, env=env)
    subprocess.run(["git", "-C", str(www / "repo.git"), "update-server-info"], check=True, env=env)


def _wait_port(ip: str, port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"test host {ip}:{port} does not answer")


def start() -> TestHost:
    """Makes the namespace, the veth pair, the routes and the services."""
    sh("ip", "netns", "del", NETNS, check=False)
    sh("ip", "link", "del", HOST_VETH, check=False)
    sh("ip", "netns", "add", NETNS)
    sh("ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", "eth0", "netns", NETNS)
    sh("ip", "addr", "add", f"{HOST_SIDE}/24", "dev", HOST_VETH)
    sh("ip", "link", "set", HOST_VETH, "up")
    for cmd in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{IP}/24", "dev", "eth0"],
        ["ip", "addr", "add", f"{IP2}/24", "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "route", "add", "default", "via", HOST_SIDE],
    ):
        sh(*cmd, ns=NETNS)
    # Traffic to the test host must stay on this machine: its route is our veth.
    route = sh("ip", "route", "get", IP).stdout
    if f"dev {HOST_VETH}" not in route:
        raise RuntimeError(f"the route to the test host is not local: {route}")
    root = Path(tempfile.mkdtemp(prefix="wrenn-testhost-"))
    www = root / "www"
    www.mkdir()
    (www / "index.html").write_text(MARKER + "\n")
    _make_repo(www)
    th = TestHost(root=root)
    th.procs.append(
        subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "python3", "-m", "http.server", "80", "--bind", "0.0.0.0", "--directory", str(www)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    th.procs.append(
        subprocess.Popen(
            [
                "ip", "netns", "exec", NETNS, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                f"--listen-address={IP}", "--bind-interfaces", f"--address=/{NAME}/{IP}",
                f"--pid-file={root / 'dnsmasq.pid'}", "--user=root",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    try:
        _wait_port(IP, 80)
    except RuntimeError:
        th.stop()
        raise
    return th
