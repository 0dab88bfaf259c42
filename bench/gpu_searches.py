"""The three searches as a user runs them on a GPU machine: wall time, outcome, and the GPU's
peak memory and mean utilisation while each ran.

Run from the repository root on a machine with one or more CUDA GPUs:

    python bench/gpu_searches.py --out DIR [--only eagan,autogan,adversarialnas]

Each search is ``raygan search NAME --gpus G --workers 1 --out DIR/NAME`` with its quick
preset (the supernet rounds therefore run as a one-worker Ray Train job on NCCL), followed by
``raygan analyze DIR/NAME``. Logs go to ``DIR/NAME.log``; a table of the runs prints last.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from gpu_monitor import GPUMonitor

SEARCHES: dict[str, list[str]] = {
    # trial GPU share: quick-preset GANs are small, so four trials share the GPU
    "eagan": ["--gpus", "0.25", "--workers", "1"],
    "autogan": ["--gpus", "0.25", "--workers", "1"],
    # one Ray Train worker holding the whole GPU (DDP over NCCL with more GPUs)
    "adversarialnas": ["--gpus", "1", "--workers", "1"],
}


def raygan(*argv: str, log: Path, timeout: float) -> tuple[int, float]:
    """Run ``raygan ARGV`` in a fresh interpreter; exit code (124 on timeout) and wall time."""
    start = time.perf_counter()
    with log.open("a") as f:
        try:
            code = subprocess.run(
                [sys.executable, "-m", "raygan.cli", *argv],
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the searches and their logs")
    parser.add_argument("--only", default=",".join(SEARCHES), help="comma-separated searches")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per search")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.only.split(","):
        log = out / f"{name}.log"
        with GPUMonitor() as gpu:
            code, wall = raygan(
                "search", name, *SEARCHES[name], "--out", str(out / name),
                log=log, timeout=args.timeout,
            )  # fmt: skip
        if code == 0:
            raygan("analyze", str(out / name), log=log, timeout=120)
        rows.append((name, " ".join(SEARCHES[name]), code, wall, gpu.peak_mib, gpu.mean_util))
        print(f"--- {name}: exit {code}, tail of {log}:")
        print("\n".join(log.read_text().splitlines()[-25:]), flush=True)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{'search':<15} {'options':<28} {'exit':>4} {'wall s':>7} {'peak MiB':>9} {'util %':>7}")
    for name, options, code, wall, peak, util in rows:
        print(f"{name:<15} {options:<28} {code:>4} {wall:>7.1f} {peak:>9.0f} {util:>7.1f}")


if __name__ == "__main__":
    main()
