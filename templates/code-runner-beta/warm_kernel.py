"""Starts the `wrenn` kernel in the running Jupyter server and waits until it answers, so the
template's snapshot holds a warm kernel (its startup imports done). Exits non-zero when the
server or the kernel does not come up in time."""

import json
import queue
import sys
import time
import urllib.error
import urllib.request

from jupyter_client import BlockingKernelClient
from jupyter_core.paths import jupyter_runtime_dir

BASE = "http://127.0.0.1:8888"
KERNEL = "wrenn"
DEADLINE = time.monotonic() + 600


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def wait_for_server():
    while True:
        try:
            return call("GET", "/api/status")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if time.monotonic() > DEADLINE:
                sys.exit(f"Jupyter did not answer: {exc}")
            time.sleep(1)


def reply_to(client, msg_id, what):
    """The shell reply to `msg_id`, waiting up to the deadline (the kernel's startup imports
    numpy, pandas and matplotlib first)."""
    while True:
        left = DEADLINE - time.monotonic()
        if left <= 0:
            sys.exit(f"no reply to the {what} in time")
        try:
            msg = client.get_shell_msg(timeout=min(left, 10))
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def main():
    wait_for_server()
    kernels = [k for k in call("GET", "/api/kernels") if k.get("name") == KERNEL]
    kernel = kernels[0] if kernels else call("POST", "/api/kernels", {"name": KERNEL})
    kid = kernel["id"]
    print(f"kernel {kid} started", flush=True)
    client = BlockingKernelClient(connection_file=f"{jupyter_runtime_dir()}/kernel-{kid}.json")
    client.load_connection_file()
    # No heartbeat channel: under emulation its first beats come late, and a client with no
    # kernel manager would take that for a dead kernel.
    client.start_channels(hb=False)
    try:
        reply_to(client, client.kernel_info(), "kernel_info")
        reply = reply_to(client, client.execute("1 + 1", store_history=False), "warm-up cell")
        if reply["content"]["status"] != "ok":
            sys.exit(f"warm-up cell failed: {reply['content']}")
    finally:
        client.stop_channels()
    print(f"kernel {kid} is ready", flush=True)


main()
