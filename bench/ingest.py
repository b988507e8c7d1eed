"""Ingest benchmark: prints ratios against baselines measured in the same run (no wall-time asserts).

1. ingest with --workers 2 vs a plain single-process pydicom loop over the same files
   (dcmread + pixel_array + apply_modality_lut → float32): images per second, as a ratio.
   ``--workers N`` is N decoding processes, the ingesting one included; ingest starts its N − 1
   worker processes only when worthwhile (the line says whether it did). With ``--repeat R``
   the loop and both ingests are measured R times, interleaved, and the median ratio is shown
   (each ratio is against the loop of its own round: on a shared machine the load drifts).
   The CPU time per image of each (this process, and the worker processes) is shown too: on a
   machine with fewer free cores than decoding processes, it is what bounds the ratio.
2. a cached tf.data epoch (passes 2–6 over make_dataset, the median) vs the same plain loop.
3. peak RSS of the ingesting process for 4× the files vs 1× (streaming: should stay near 1).

    python bench/ingest.py [--files 512] [--size 512] [--workers 2] [--repeat 1]
                           [--compress j2k] [--no-rss]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plain_loop(src: Path, cpu: dict | None = None) -> float:
    """Images per second of the obvious single-process loop (``cpu["loop"]``: CPU s/image)."""
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_modality_lut

    files = sorted(src.glob("*/*.dcm"))
    t, c = time.perf_counter(), time.process_time()
    for f in files:
        ds = pydicom.dcmread(f)
        apply_modality_lut(ds.pixel_array, ds).astype(np.float32)  # decodes any syntax
    if cpu is not None:
        cpu["loop"] = (time.process_time() - c) / len(files)
    return len(files) / (time.perf_counter() - t)


def _cpu_seconds():
    """CPU seconds of this process and of its finished child processes (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


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
    parser.add_argument("--workers", type=int, default=2,
                        help="decoding processes, this one included (default 2)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure loop and ingest this many times, report the median")
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

        w = args.workers
        rounds = []  # per round: images/s ratios against that round's loop, CPU ms per image
        for r in range(args.repeat):
            cpu: dict = {}
            loop_ips = plain_loop(src, cpu)
            got = {"loop": loop_ips, "cpu loop": 1e3 * cpu["loop"]}
            for workers in (1, w):
                out = tmp / f"DS{workers}"
                shutil.rmtree(out, ignore_errors=True)
                own0, kids0 = _cpu_seconds()
                t = time.perf_counter()
                summary = ingest(src, src / "labels.csv", out, size=64, workers=workers,
                                 folds=2, key_file=key, progress=False)
                got[workers] = n / (time.perf_counter() - t) / loop_ips
                own1, kids1 = _cpu_seconds()
                got["cpu", workers] = 1e3 * (own1 - own0) / n
                got["cpu workers", workers] = 1e3 * (kids1 - kids0) / n
                got["started", workers] = summary["workers_started"]
            rounds.append(got)
            if args.repeat > 1:
                print(f"round {r + 1}: loop {loop_ips:.0f} images/s, ingest workers=1 "
                      f"{got[1]:.2f}x, workers={w} {got[w]:.2f}x", flush=True)
        shutil.move(tmp / f"DS{w}", tmp / "DS")
        med = {key: statistics.median(got[key] for got in rounds) for key in rounds[0]}
        loop_ips = med["loop"]
        what = f"median of {args.repeat} rounds, " if args.repeat > 1 else ""
        print(f"plain pydicom loop: {loop_ips:.0f} images/s ({what}"
              f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f})")
        print(f"ingest workers=1 vs plain pydicom loop: {med[1]:.2f}x images/s")
        print(f"ingest workers={w} vs plain pydicom loop: {med[w]:.2f}x images/s "
              f"(worker processes started besides this one: {rounds[-1]['started', w]}; "
              "start-up, masks and shard writing included)")
        print(f"ingest workers={w} vs workers=1: {med[w] / med[1]:.2f}x images/s")
        print(f"CPU ms per image: plain loop {med['cpu loop']:.2f}; ingest workers=1 "
              f"{med['cpu', 1]:.2f}; workers={w} {med['cpu', w]:.2f} in this process + "
              f"{med['cpu workers', w]:.2f} in worker processes")
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
        epochs = []
        for _ in range(5):  # one epoch is a few milliseconds: a single one is mostly noise
            t = time.perf_counter()
            for _ in data:
                pass
            epochs.append(time.perf_counter() - t)
        epoch_ips = n / statistics.median(epochs)
        print(f"cached tf.data epoch vs plain pydicom loop: {epoch_ips / loop_ips:.1f}x images/s "
              "(median of 5 epochs)")
        print(f"peak RSS of ingest, 4x files vs 1x: {rss4 / rss1:.2f}x "
              f"({rss1 // 1024} MiB -> {rss4 // 1024} MiB)")


if __name__ == "__main__":
    main()
