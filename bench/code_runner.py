"""Code runner start-up: time from `code_runner.Capsule()` to the first `run_code` result, beside
a cold start of the same template in the same run.

    .venv-e2e/bin/python bench/code_runner.py [--reps 5]   # WRENN_BASE_URL, WRENN_API_KEY set

The server must have `code-runner-beta` built (`wrenn template build code-runner-beta`), and
`*.localhost` must resolve (libnss-myhostname): use a base URL such as http://localhost:8080.

- warm: `Capsule()` (a restore of the snapshot, Jupyter and a kernel already running with the
  libraries imported) and `run_code("1 + 1")`.
- cold (the baseline): in a capsule of the same template, Jupyter and its kernel are stopped,
  then timed: starting `jupyter server` as the template's START does, waiting for it, starting a
  kernel (its startup imports numpy, pandas, matplotlib, seaborn) and the first result (the
  SDK's kernel WebSocket times out after 5 s while a cold kernel starts; it is opened again
  until it answers, as a patient user would). A real
  cold boot adds the guest's own boot on top, so the ratio printed is a lower bound of the gain.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from wrenn import code_runner


def warm_once() -> tuple[float, float]:
    """(Capsule() to the first result, of which the create alone)."""
    t0 = time.monotonic()
    c = code_runner.Capsule()
    created = time.monotonic() - t0
    try:
        ex = c.run_code("1 + 1", jupyter_timeout=120)
        took = time.monotonic() - t0
        assert ex.text == "2", (ex.text, ex.error)
        return took, created
    finally:
        c.destroy()


def cold_once() -> float:
    c = code_runner.Capsule(wait=True)
    try:
        c.commands.run("pkill -f jupyter; sleep 1; ! pgrep -f jupyter", timeout=60)
        t0 = time.monotonic()
        c.commands.run(
            "exec setpriv --reuid=user --regid=user --init-groups python3 -m jupyter_server",
            background=True, envs={"HOME": "/home/user"}, cwd="/home/user",
        )
        c._kernel_id = None
        deadline = t0 + 900
        while True:
            try:
                ex = c.run_code("1 + 1", jupyter_timeout=900, timeout=900)
                break
            except httpx.TimeoutException:
                # The kernel WebSocket answers once the new kernel has started (its imports
                # take longer than the SDK's 5 s connect timeout under emulation): try again.
                c._close_ws()
                if time.monotonic() > deadline:
                    raise
        took = time.monotonic() - t0
        assert ex.text == "2", (ex.text, ex.error)
        return took
    finally:
        c.destroy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    warm_once()  # the first restore also fills the host's page cache
    runs = [warm_once() for _ in range(args.reps)]
    cold = [cold_once() for _ in range(max(1, args.reps // 2))]
    w, c = statistics.median(r[0] for r in runs), statistics.median(cold)
    create = statistics.median(r[1] for r in runs)
    first = statistics.median(r[0] - r[1] for r in runs)
    print("| measure | code-runner-beta snapshot (warm) | baseline: cold start of Jupyter and kernel (same run) |")
    print("|---|---|---|")
    print(f"| Capsule() to first run_code result, median | {w * 1000:.0f} ms (n={len(runs)}) | {c * 1000:.0f} ms (n={len(cold)}) |")
    print(f"| of which the create (restore, template copied) | {create * 1000:.0f} ms | – |")
    print(f"| of which create returned to first result | {first * 1000:.0f} ms | {c * 1000:.0f} ms |")
    print(f"| ratio warm / cold | {w / c:.3f} (aim at most 0.1) | 1 |")


if __name__ == "__main__":
    main()
