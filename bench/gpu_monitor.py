"""The GPU's memory in use and its utilisation while a piece of work runs, sampled by
``nvidia-smi`` every ``interval_ms`` (it sees every process, Ray's trial workers included).

    with GPUMonitor() as gpu:
        work()
    gpu.peak_mib, gpu.mean_util

Used by the GPU benchmarks in this folder; on a machine without ``nvidia-smi`` it records
nothing and reports NaN.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path


class GPUMonitor:
    def __init__(self, interval_ms: int = 500) -> None:
        self.interval_ms = interval_ms
        self.samples: list[tuple[float, float]] = []  # (MiB used, utilisation %)

    def __enter__(self) -> GPUMonitor:
        self._log = Path(tempfile.mkstemp(suffix=".csv")[1])
        self._proc = None
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=memory.used,utilization.gpu",
                    "--format=csv,noheader,nounits",
                    f"-lms={self.interval_ms}",
                ],
                stdout=self._log.open("w"),
                stderr=subprocess.DEVNULL,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()
        for line in self._log.read_text().splitlines():
            try:
                mib, util = (float(v) for v in line.split(","))
            except ValueError:
                continue  # a line cut off by the terminate, or "[N/A]"
            self.samples.append((mib, util))
        self._log.unlink()

    @property
    def peak_mib(self) -> float:
        return max((m for m, _ in self.samples), default=math.nan)

    @property
    def mean_util(self) -> float:
        """Mean utilisation (%) over the samples: the share of time a kernel was running."""
        return sum(u for _, u in self.samples) / len(self.samples) if self.samples else math.nan
