"""Native-spacing volume ingest: peak RSS against the series size (no wall-time asserts).

For each slice count N (default 100 and 200) two phantom CT series of 512 × 512 × N (one with
lesions, one without, each at its own spacing) are written with ``synth --volumes``, then
ingested with ``--spacing auto`` in a fresh process whose peak RSS (ru_maxrss) is read. A
baseline process imports the same modules and reads one slice, so the line shows what the
volume adds. One series is ``512 * 512 * N * 4`` bytes as float32 (the decoded volume); the
ratio ``(peak − baseline) / series bytes`` should stay about constant as N grows — memory grows
no faster than the volume (one series at a time).

    python bench/volumes_ingest.py [--size 512] [--slices 100 200] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_kib() -> float:
    """This process' peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec,
    so a child would report its parent's peak (here: the synth's) when that is higher."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _child(mode: str, dicom_dir: str, out: str) -> None:
    from medzoo.datasets import volumes  # noqa: F401 - the same imports as the ingest
    from medzoo.datasets import dicom

    start = time.perf_counter()
    if mode == "ingest":
        summary = volumes.ingest_volumes(dicom_dir, Path(dicom_dir) / "labels.csv", out,
                                         spacing="auto", folds=2, key_file=Path(out + ".key"),
                                         progress=False)
        extra = {"records": summary["records"], "target_spacing": summary["plan"]["target_spacing"]}
    else:
        first = sorted(Path(dicom_dir).rglob("*.dcm"))[0]
        dicom.read_modality_values(first)
        extra = {}
    print(json.dumps({"peak_mib": _peak_kib() / 1024.0, "seconds": time.perf_counter() - start,
                      **extra}))


def _measure(mode: str, dicom_dir: Path, out: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(dicom_dir), str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    from medzoo.datasets.synth_volumes import write_synthetic_volumes

    work = Path(args.keep or tempfile.mkdtemp(prefix="medzoo-volbench-"))
    rows = []
    try:
        for n in args.slices:
            dicom_dir = work / f"dicom-{n}"
            start = time.perf_counter()
            write_synthetic_volumes(dicom_dir, patients=2, size=args.size, slices=n, seed=0)
            synth_s = time.perf_counter() - start
            base = _measure("baseline", dicom_dir, work / f"none-{n}")
            run = _measure("ingest", dicom_dir, work / f"ds-{n}")
            series_mib = args.size * args.size * n * 4 / 1024**2
            added = run["peak_mib"] - base["peak_mib"]
            rows.append((n, series_mib, base["peak_mib"], run["peak_mib"], added / series_mib))
            print(f"{args.size}x{args.size}x{n}: synth 2 series {synth_s:.1f} s; ingest "
                  f"{run['seconds']:.1f} s (target spacing {run['target_spacing']}); peak RSS "
                  f"{run['peak_mib']:.0f} MiB, baseline {base['peak_mib']:.0f} MiB, one series "
                  f"float32 {series_mib:.0f} MiB → (peak − baseline) / series = "
                  f"{added / series_mib:.2f}", flush=True)
            shutil.rmtree(dicom_dir, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if len(rows) > 1:
        (n0, s0, _, p0, r0), (n1, s1, _, p1, r1) = rows[0], rows[-1]
        print(f"slices x{n1 / n0:.2f} → series bytes x{s1 / s0:.2f}, peak RSS x{p1 / p0:.2f}, "
              f"memory per series byte {r0:.2f} → {r1:.2f}")


if __name__ == "__main__":
    main()
