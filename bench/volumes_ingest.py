"""Native-spacing volume ingest: peak RSS against the series size (no wall-time asserts).

For each slice count N (default 100 and 200) two phantom CT series of 512 × 512 × N (one with
lesions, one without, each at its own spacing) are written with ``synth --volumes``, then
ingested with ``--spacing auto`` in a fresh process whose peak RSS (VmHWM) is read. A
baseline process imports the same modules and reads one slice, so the line shows what the
volume adds. One series is ``512 * 512 * N * 4`` bytes as float32 (the decoded volume); the
ratio ``(peak − baseline) / series bytes`` should stay about constant as N grows — memory grows
no faster than the volume (one series at a time).

    python bench/volumes_ingest.py [--size 512] [--slices 100 200] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from _rss import growth, peak_mib, series_memory  # noqa: E402


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
    print(json.dumps({"peak_mib": peak_mib(), "seconds": time.perf_counter() - start,
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
            series_mib, ratio, memory = series_memory(args.size, n, run, base)
            rows.append((n, series_mib, run["peak_mib"], ratio))
            print(f"{args.size}x{args.size}x{n}: synth 2 series {synth_s:.1f} s; ingest "
                  f"{run['seconds']:.1f} s (target spacing {run['target_spacing']}); {memory}",
                  flush=True)
            shutil.rmtree(dicom_dir, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if len(rows) > 1:
        print(growth(rows))


if __name__ == "__main__":
    main()
