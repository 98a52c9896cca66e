"""The E2B front end's cost: each figure through the `e2b` SDK beside the same operation
through the `wrenn` SDK (Wrenn's own routes), on the same server, template and shape, in the
same run. Median of --reps.

    .venv-e2e/bin/python bench/e2b_sdk.py [--reps 5]   # WRENN_BASE_URL, WRENN_API_KEY set

- create: `Sandbox.create()` (template `base`, i.e. `python`, 2 vCPUs, 512 MiB) beside
  `Capsule(template="python", vcpus=2, memory_mb=512)`, both until usable.
- exec: `commands.run("true")` round trip in a running sandbox / capsule.
- write, read: 16 MiB through `files.write` / `files.read`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import wrenn
from e2b import Sandbox


def median_ms(f, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.monotonic()
        f()
        times.append((time.monotonic() - t0) * 1000)
    return statistics.median(times)


def row(name: str, e2b_value: float, wrenn_value: float, unit: str) -> None:
    print(f"| {name} | {e2b_value:.1f} {unit} | {wrenn_value:.1f} {unit} | {e2b_value / wrenn_value:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    base = os.environ["WRENN_BASE_URL"]
    os.environ.setdefault("E2B_API_KEY", os.environ["WRENN_API_KEY"])
    os.environ.setdefault("E2B_API_URL", base)
    os.environ.setdefault("E2B_SANDBOX_URL", base)

    def e2b_create():
        Sandbox.create(timeout=300).kill()

    def wrenn_create():
        wrenn.Capsule.create(template="python", vcpus=2, memory_mb=512, wait=True).destroy()

    print("| figure | through the e2b SDK | through the wrenn SDK | ratio |")
    print("|---|---|---|---|")
    row("create", median_ms(e2b_create, args.reps), median_ms(wrenn_create, args.reps), "ms")
    sb = Sandbox.create(timeout=600)
    cap = wrenn.Capsule.create(template="python", vcpus=2, memory_mb=512, wait=True)
    try:
        sb.commands.run("true")
        cap.commands.run("true")
        row("exec `true`", median_ms(lambda: sb.commands.run("true"), args.reps * 4),
            median_ms(lambda: cap.commands.run("true"), args.reps * 4), "ms")
        data = os.urandom(16 << 20)
        mib = len(data) / (1 << 20)
        w_e = median_ms(lambda: sb.files.write("/tmp/b.bin", data), args.reps)
        w_w = median_ms(lambda: cap.files.write("/tmp/b.bin", data), args.reps)
        row("write 16 MiB", mib / (w_e / 1000), mib / (w_w / 1000), "MiB/s")
        r_e = median_ms(lambda: sb.files.read("/tmp/b.bin", format="bytes"), args.reps)
        r_w = median_ms(lambda: cap.files.read_bytes("/tmp/b.bin"), args.reps)
        row("read 16 MiB", mib / (r_e / 1000), mib / (r_w / 1000), "MiB/s")
    finally:
        sb.kill()
        cap.destroy()


if __name__ == "__main__":
    main()
