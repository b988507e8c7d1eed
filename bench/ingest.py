"""Ingest benchmark: prints ratios against baselines measured in the same run (no wall-time asserts).

1. ingest with --workers 2 vs a plain single-process pydicom loop over the same files
   (dcmread + pixel_array + apply_modality_lut → float32): images per second, as a ratio.
   Ingest starts its workers only when worthwhile (the line says whether it did).
2. one cached tf.data epoch (second pass over make_dataset) vs the same plain loop.
3. peak RSS of the ingesting process for 4× the files vs 1× (streaming: should stay near 1).

    python bench/ingest.py [--files 512] [--size 512] [--workers 2] [--compress j2k] [--no-rss]
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


def plain_loop(src: Path) -> float:
    """Images per second of the obvious single-process loop."""
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_modality_lut

    files = sorted(src.glob("*/*.dcm"))
    t = time.perf_counter()
    for f in files:
        ds = pydicom.dcmread(f)
        apply_modality_lut(ds.pixel_array, ds).astype(np.float32)  # decodes any syntax
    return len(files) / (time.perf_counter() - t)


def _rss_child(src: str, out: str, key: str) -> None:
    from medzoo.datasets.ingest import ingest

    ingest(src, Path(src) / "labels.csv", out, size=64, workers=1, folds=2, key_file=key,
           progress=False)
    # VmHWM belongs to this process image (ru_maxrss would carry the parent's peak over exec)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            print(json.dumps({"maxrss_kb": int(line.split()[1])}))


def peak_rss(src: Path, out: Path, key: Path) -> int:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"from bench.ingest import _rss_child; _rss_child({str(src)!r}, {str(out)!r}, {str(key)!r})")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["maxrss_kb"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=512, help="slices (files), default 512")
    parser.add_argument("--size", type=int, default=512, help="rows = columns, default 512")
    parser.add_argument("--slices", type=int, default=8, help="slices per patient")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compress", choices=["rle", "jpeg-ls", "j2k"], default=None,
                        help="compressed transfer syntax for the synthetic files")
    parser.add_argument("--no-rss", action="store_true", help="skip the 4x-files memory check")
    args = parser.parse_args(argv)

    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        key = tmp / "bench.key"
        patients = max(2, args.files // args.slices)
        src = tmp / "src"
        write_synthetic(src, patients=patients, size=args.size, slices=args.slices, seed=0,
                        compress=args.compress)
        n = patients * args.slices
        print(f"{n} synthetic CT slices of {args.size}x{args.size}")

        loop_ips = plain_loop(src)
        rates, started = {}, {}
        for workers in (1, args.workers):
            t = time.perf_counter()
            summary = ingest(src, src / "labels.csv", tmp / f"DS{workers}", size=64,
                             workers=workers, folds=2, key_file=key, progress=False)
            rates[workers] = n / (time.perf_counter() - t)
            started[workers] = summary["workers_started"]
        shutil.move(tmp / f"DS{args.workers}", tmp / "DS")
        print(f"plain pydicom loop: {loop_ips:.0f} images/s")
        print(f"ingest workers=1 vs plain pydicom loop: {rates[1] / loop_ips:.2f}x images/s")
        print(f"ingest workers={args.workers} vs plain pydicom loop: "
              f"{rates[args.workers] / loop_ips:.2f}x images/s (worker processes started: "
              f"{started[args.workers]}; start-up, masks and shard writing included)")
        print(f"ingest workers={args.workers} vs workers=1: "
              f"{rates[args.workers] / rates[1]:.2f}x images/s")
        if args.no_rss:
            return

        big = tmp / "src4"
        write_synthetic(big, patients=4 * patients, size=args.size, slices=args.slices, seed=1)
        rss1 = peak_rss(src, tmp / "R1", key)
        rss4 = peak_rss(big, tmp / "R4", key)

        from medzoo.datasets.pipeline import make_dataset

        data = make_dataset(tmp / "DS", None, target="label", batch_size=32, cache=True)
        for _ in data:  # first epoch fills the cache
            pass
        t = time.perf_counter()
        for _ in data:
            pass
        epoch_ips = n / (time.perf_counter() - t)
        print(f"cached tf.data epoch vs plain pydicom loop: {epoch_ips / loop_ips:.1f}x images/s")
        print(f"peak RSS of ingest, 4x files vs 1x: {rss4 / rss1:.2f}x "
              f"({rss1 // 1024} MiB -> {rss4 // 1024} MiB)")


if __name__ == "__main__":
    main()
