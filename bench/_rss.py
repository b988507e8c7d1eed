"""Peak resident memory, for the bench scripts that measure a command in a fresh child process
(bench/volumes_ingest.py, bench/volumes_predict.py): not a bench of its own.

Each script runs its command and a baseline (the same imports, no work) in children, and reads
how the peak grows against the bytes of one float32 series, which should stay about constant as
the series grows (memory grows no faster than the volume).
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_mib() -> float:
    """This process' peak RSS in MiB. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and
    exec, so a child would report its parent's peak (a synth's, say) when that is higher."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def series_memory(size: int, slices: int, run: dict, base: dict) -> tuple[float, float, str]:
    """One float32 series of ``size`` × ``size`` × ``slices`` in MiB, ``(peak − baseline) /
    series`` of the children's ``peak_mib``, and the words for both."""
    series_mib = size * size * slices * 4 / 1024**2
    ratio = (run["peak_mib"] - base["peak_mib"]) / series_mib
    return series_mib, ratio, (f"peak RSS {run['peak_mib']:.0f} MiB, baseline "
                               f"{base['peak_mib']:.0f} MiB, one series float32 {series_mib:.0f} "
                               f"MiB → (peak − baseline) / series = {ratio:.2f}")


def growth(rows) -> str:
    """How memory grew from the first to the last ``(slices, series MiB, peak MiB, ratio)`` row."""
    (n0, s0, p0, r0), (n1, s1, p1, r1) = rows[0], rows[-1]
    return (f"slices x{n1 / n0:.2f} → series bytes x{s1 / s0:.2f}, peak RSS x{p1 / p0:.2f}, "
            f"memory per series byte {r0:.2f} → {r1:.2f}")
