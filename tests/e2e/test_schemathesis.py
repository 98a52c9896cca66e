"""schemathesis (pinned in run.sh) against the live server's /openapi.yaml: no 5xx, and every
answer conforms to the document (status code, content type, headers, body schema).

The runs are configured in schemathesis.toml next to this file (which operations, which
checks, how many examples, and why). Every capsule operation gets the module's running
capsule, so the generated requests reach envd in a real guest. Runs are deterministic (no
example database, deterministic generation) and bounded (examples per operation, one worker, a
request timeout, and the timeout below). On failure the test prints schemathesis' report:
each failure with a curl command that reproduces it.

Two runs: first every operation but files/remove, then files/list with files/remove.
schemathesis feeds values it saw in answers back into requests: paths from files/list (of /,
/dev, /etc) make files/remove delete real guest paths (/bin, /etc, /dev/*, mount points such as
/dev). Run last, it leaves the other operations an intact guest, whose exec, reads and writes
succeed and get their answers checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import wrenn

from conftest import Server

CONFIG = Path(__file__).with_name("schemathesis.toml")
REMOVE = "POST /v1/capsules/{id}/files/remove"
LIST = "POST /v1/capsules/{id}/files/list"
# Per run: the longer one takes about 80 s here (TCG guests); far past that something hangs.
RUN_TIMEOUT = 300


def _schemathesis(server: Server, capsule_id: str, out_dir: Path, *select: str) -> tuple[int, str, float]:
    """Runs `st run` with schemathesis.toml and the `select` options; returns exit code, output
    and seconds."""
    env = dict(os.environ, WRENN_SCH_URL=server.url, WRENN_SCH_KEY=server.key, WRENN_SCH_CAPSULE=capsule_id, NO_COLOR="1")
    st = Path(sys.executable).with_name("st")
    out_dir.mkdir(parents=True)
    cmd = [
        str(st), "--config-file", str(CONFIG), "run", f"{server.url}/openapi.yaml", *select,
        "--report", "junit", "--report-dir", str(out_dir / "report"),
    ]
    started = time.monotonic()
    # cwd: schemathesis keeps its cache (and nothing else) under the working directory.
    try:
        proc = subprocess.run(cmd, env=env, cwd=out_dir, capture_output=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") + (e.stderr or b"")
        return -1, f"(timed out after {RUN_TIMEOUT} s)\n" + out.decode(errors="replace"), time.monotonic() - started
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace"), time.monotonic() - started


def test_schemathesis_finds_no_server_error_or_schema_violation(
    server: Server, shared_capsule: wrenn.Capsule, tmp_path: Path
) -> None:
    capsule_id = shared_capsule.capsule_id
    runs = {
        "every operation but files/remove": _schemathesis(server, capsule_id, tmp_path / "all", "--exclude-name", REMOVE),
        "files/list and files/remove": _schemathesis(
            server, capsule_id, tmp_path / "remove", "--include-name", LIST, "--include-name", REMOVE
        ),
    }
    for what, (code, out, secs) in runs.items():
        print(f"===== schemathesis, {what}: exit {code} in {secs:.0f} s\n{out[-3000:]}")
    failed = {what: out for what, (code, out, _) in runs.items() if code != 0}
    assert not failed, "schemathesis found failures:\n" + "\n".join(
        f"===== {what}\n{out[-60000:]}" for what, out in failed.items()
    )

    # The capsule the runs used is still running and its envd answers. (Its file system need
    # not be whole: files/remove deleted real paths.)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=120) as http:
        info = http.get(f"/v1/capsules/{capsule_id}")
        assert info.status_code == 200 and info.json()["status"] == "running", info.text
        files = f"/v1/capsules/{capsule_id}/files"
        w = http.post(f"{files}/write", files={"path": (None, "/tmp/after-schemathesis"), "file": ("f", b"ok")})
        assert w.status_code == 204, w.text
        r = http.post(f"{files}/read", json={"path": "/tmp/after-schemathesis"})
        assert r.status_code == 200 and r.content == b"ok", r.text
