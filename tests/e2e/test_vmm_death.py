"""A capsule whose VMM dies (kill -9 of QEMU, or a guest that powers off) is seen at once:
GET says `error` with the reason, guest calls answer 409 at once, and an event says so."""

from __future__ import annotations

import os
import signal
import time

import httpx

import wrenn

from conftest import Server, wait_until


def _qemu_pid(server: Server, capsule_id: str) -> int:
    return int((server.data_dir / "capsules" / capsule_id / "qemu.pid").read_text().strip())


def _status(server: Server, capsule_id: str) -> dict:
    return httpx.get(f"{server.url}/v1/capsules/{capsule_id}", headers={"X-API-Key": server.key}).json()


def test_killed_vmm_is_error_at_once_and_guest_calls_are_409(server):
    c = wrenn.Capsule(wait=True)
    try:
        os.kill(_qemu_pid(server, c.capsule_id), signal.SIGKILL)
        t = time.monotonic()
        info = wait_until(lambda: (i := _status(server, c.capsule_id))["status"] == "error" and i, 30, 0.05, "error status")
        print(f"error after {time.monotonic() - t:.3f} s")
        assert "VMM process ended" in (info.get("error") or ""), info
        t = time.monotonic()
        r = httpx.post(
            f"{server.url}/v1/capsules/{c.capsule_id}/exec",
            json={"cmd": "true"},
            headers={"X-API-Key": server.key},
            timeout=120,
        )
        assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state", r.text
        assert time.monotonic() - t < 10, "refused at once, not after a guest timeout"
    finally:
        c.destroy()


def test_a_guest_that_powers_off_is_never_running(server):
    c = wrenn.Capsule(wait=True)
    try:
        c.commands.run("sleep 0.2; echo o > /proc/sysrq-trigger", background=True)
        wait_until(lambda: _status(server, c.capsule_id)["status"] == "error", 30, 0.05, "error status")
    finally:
        c.destroy()
