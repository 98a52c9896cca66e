"""`wrenn capsule shell` under a real terminal (a tmux pane): the local terminal goes raw, so
keys such as Ctrl-C reach the capsule's shell instead of ending the CLI; the capsule's terminal
takes the pane's size and follows it when the pane is resized; leaving the shell gives the
terminal back."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import REPO, wait_until
from test_cli import cli_capsule, wrenn_cli  # noqa: F401  (the fixture is used by name)

SESSION = "wrenn-e2e-shell"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True, timeout=30).stdout


def pane() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def type_line(text: str) -> None:
    tmux("send-keys", "-t", SESSION, "-l", text)
    tmux("send-keys", "-t", SESSION, "Enter")


@pytest.fixture
def terminal():
    if shutil.which("tmux") is None:
        assert os.environ.get("CI") != "true", "tmux is not installed (scripts/setup-host installs it)"
        pytest.skip("tmux is not installed")
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    tmux("new-session", "-d", "-s", SESSION, "-x", "100", "-y", "30", "bash --norc --noprofile")
    try:
        yield
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


def test_shell_in_a_real_terminal_is_raw_sized_and_resizable(server, cli_capsule, terminal):
    binary = os.environ.get("WRENN_BIN") or str(REPO / "target" / "debug" / "wrenn")
    type_line(f"export WRENN_API_KEY={server.key} WRENN_BASE_URL={server.url}; PS1='host$ '")
    type_line(f"{binary} capsule shell {cli_capsule}; echo cli-exit-$?")
    # The capsule's shell answers, in a terminal of the pane's size.
    type_line("echo ready-$((20+22))")
    wait_until(lambda: "ready-42" in pane(), 120, what="the capsule shell")
    type_line("stty size")
    size = tmux("display-message", "-p", "-t", SESSION, "#{pane_height} #{pane_width}").strip()
    wait_until(lambda: size in pane(), 30, what=f"the pane's size ({size}) inside the capsule")
    # Ctrl-C interrupts a command in the capsule, not the CLI: raw mode passes it through.
    type_line("sleep 300")
    time.sleep(1)
    tmux("send-keys", "-t", SESSION, "C-c")
    type_line("echo after-interrupt-$((1+1))")
    wait_until(lambda: "after-interrupt-2" in pane(), 30, what="the shell after Ctrl-C")
    assert re.search(r"cli-exit-\d", pane()) is None, pane()
    # A resized pane resizes the capsule's terminal.
    tmux("resize-window", "-t", SESSION, "-x", "80", "-y", "24")
    time.sleep(1)
    new_size = tmux("display-message", "-p", "-t", SESSION, "#{pane_height} #{pane_width}").strip()
    assert new_size != size, new_size
    type_line("clear; stty size")
    wait_until(lambda: new_size in pane(), 30, what=f"the new size ({new_size}) inside the capsule")
    # Leaving the capsule's shell ends the CLI with its exit status and gives the terminal back
    # in its cooked mode (the host shell echoes and takes lines again).
    type_line("exit 3")
    wait_until(lambda: "cli-exit-3" in pane(), 30, what="the CLI to end")
    type_line("stty -a | grep -o ' icanon' | head -1; echo host-ok")
    wait_until(lambda: "host-ok" in pane(), 30, what="the host shell")
    assert " icanon" in pane(), pane()
