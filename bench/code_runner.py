"""Code runner start-up: time from `code_runner.Capsule()` to the first `run_code` result, beside
a cold start of the same template in the same run.

    .venv-e2e/bin/python bench/code_runner.py [--reps 5]   # WRENN_BASE_URL, WRENN_API_KEY set

The server must have `code-runner-beta` built (`wrenn template build code-runner-beta`), and
`*.localhost` must resolve (libnss-myhostname): use a base URL such as http://localhost:8080.

- warm: `Capsule()` (a restore of the snapshot, Jupyter and a kernel already running with the
  libraries imported) and `run_code("1 + 1")`.
- cold (the baseline): in a capsule of the same template, Jupyter and its kernel are stopped,
  then timed: starting `jupyter server` as the template's START does, waiting for it, starting a
  kernel (its startup imports numpy, pandas, matplotlib, seaborn) and the first result. A real
  cold boot adds the guest's own boot on top, so the ratio printed is a lower bound of the gain.
"""

from __future__ import annotations

import argparse
import statistics
import time

from wrenn import code_runner


def warm_once() -> float:
    t0 = time.monotonic()
    c = code_runner.Capsule()
    try:
        ex = c.run_code("1 + 1", jupyter_timeout=120)
        took = time.monotonic() - t0
        assert ex.text == "2", (ex.text, ex.error)
        return took
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
        ex = c.run_code("1 + 1", jupyter_timeout=900, timeout=900)
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
    warm = [warm_once() for _ in range(args.reps)]
    cold = [cold_once() for _ in range(max(1, args.reps // 2))]
    w, c = statistics.median(warm), statistics.median(cold)
    print(f"| measure | code-runner-beta snapshot (warm) | baseline: cold start of Jupyter and kernel (same run) |")
    print(f"|---|---|---|")
    print(f"| Capsule() to first run_code result, median | {w * 1000:.0f} ms (n={len(warm)}) | {c * 1000:.0f} ms (n={len(cold)}) |")
    print(f"| ratio warm / cold | {w / c:.3f} | aim at most 0.1 |")


if __name__ == "__main__":
    main()
