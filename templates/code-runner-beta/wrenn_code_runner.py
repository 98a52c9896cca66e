"""Jupyter server extension of the code-runner-beta template: a new cell interrupts a running
one whose caller stopped waiting.

The wrenn SDK's ``run_code(timeout=…)`` stops reading when its timeout passes but sends nothing
to the kernel, so the cell would keep the kernel busy and the caller's next ``run_code`` would
queue behind it. Here an ``execute_request`` that reaches a busy kernel first interrupts the
running cell (SIGINT: ``KeyboardInterrupt`` in Python), waits until the kernel is idle, and is
then passed on: one cell runs at a time, and the newest is the one a caller waits for.
"""

import asyncio
import json

from jupyter_server.services.kernels.handlers import ZMQChannelsHandler
from jupyter_server.utils import ensure_async

# How long an interrupted cell may take to stop before the new one is queued anyway.
INTERRUPT_WAIT_SECONDS = 10.0
# Pause after the kernel went idle: the kernel aborts requests that reach it while it unwinds
# an error, so the new request must arrive after that.
AFTER_IDLE_SECONDS = 0.1


def _jupyter_server_extension_points():
    return [{"module": "wrenn_code_runner"}]


def _load_jupyter_server_extension(serverapp):
    original = ZMQChannelsHandler.on_message
    if getattr(original, "_wrenn_code_runner", False):
        return

    async def on_message(self, ws_msg):
        if _is_execute_request(ws_msg):
            await _interrupt_running_cell(self)
        return original(self, ws_msg)

    on_message._wrenn_code_runner = True
    ZMQChannelsHandler.on_message = on_message
    serverapp.log.info("wrenn_code_runner: a new cell interrupts a running one")


def _is_execute_request(ws_msg):
    """True for a JSON shell-channel ``execute_request`` (other framings pass untouched)."""
    if not isinstance(ws_msg, str):
        return False
    try:
        msg = json.loads(ws_msg)
    except ValueError:
        return False
    if not isinstance(msg, dict):
        return False
    header = msg.get("header")
    return (
        msg.get("channel", "shell") == "shell"
        and isinstance(header, dict)
        and header.get("msg_type") == "execute_request"
    )


async def _interrupt_running_cell(handler):
    km = handler.kernel_manager
    try:
        kernel = km.get_kernel(handler.kernel_id)
    except KeyError:
        return
    if getattr(kernel, "execution_state", None) != "busy":
        return
    handler.log.warning(
        "wrenn_code_runner: interrupting the running cell of kernel %s for a new one",
        handler.kernel_id,
    )
    await ensure_async(km.interrupt_kernel(handler.kernel_id))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + INTERRUPT_WAIT_SECONDS
    while getattr(kernel, "execution_state", None) == "busy" and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(AFTER_IDLE_SECONDS)
