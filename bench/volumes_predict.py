"""``medzoo predict`` of one native-volume series (DICOM in → SEG out): peak RSS and seconds
against the slice count (no asserts).

For each slice count N (default 100 200 300) one phantom CT series of SIZE × SIZE × N is written
with ``synth --volumes`` and predicted in a fresh process (``medzoo predict EXPORT DICOM --out``,
the CLI's own code path) whose peak RSS (VmHWM) is read. A baseline process imports the same
modules and opens the same ONNX model, so the line shows what the series adds. One series is
``SIZE * SIZE * N * 4`` bytes as float32; ``(peak − baseline) / series`` should stay about
constant as N grows (memory grows no faster than the volume).

The export must be a 3D segmentation export (``medzoo export`` of a ``train unet`` run on a
``--spacing`` dataset). Without ``--model`` a small one is built first: 6 ``synth --volumes``
patients of 192 × 192 × 40, ingested at ``--spacing`` (default 5,3,3 mm: the work grid of a
512 × 512 × 300 series is then ~150 × 140 × 140, which two shared CPU cores get through),
patch 16 × 48 × 48, ``unet`` base width 4, 1 epoch — its weights do not change the memory.

    python bench/volumes_predict.py [--model EXPORT] [--size 512] [--slices 100 200 300] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
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


def _child(mode: str, model: str, dicom_dir: str, out: str) -> None:
    from medzoo.evaluation.runtime import OnnxModel

    start = time.perf_counter()
    if mode == "predict":
        from medzoo.cli import main

        code = main(["predict", model, dicom_dir, "--out", out])
        if code:
            raise SystemExit(code)
    else:
        import highdicom  # noqa: F401 - the same imports as predict (the SEG writer)

        from medzoo import cli  # noqa: F401
        from medzoo.deploy import predict, predict_volume  # noqa: F401

        OnnxModel(model)
    print(json.dumps({"peak_mib": peak_mib(), "seconds": time.perf_counter() - start}))


def _measure(mode: str, model: Path, dicom_dir: Path, out: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(model), str(dicom_dir),
                           str(out)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _build_model(work: Path, spacing: str) -> Path:
    def medzoo(*argv):
        subprocess.run([sys.executable, "-m", "medzoo", *map(str, argv)], check=True, cwd=work,
                       stdout=subprocess.DEVNULL)

    medzoo("data", "synth", "train-dicom", "--volumes", "--patients", 6, "--size", 192,
           "--slices", 40, "--seed", 3)
    medzoo("data", "ingest", "train-dicom", "--labels", "train-dicom/labels.csv", "--out", "ds",
           "--spacing", spacing, "--patch-size", "16,48,48", "--folds", 3)
    medzoo("train", "unet", "--data", "ds", "--out", "run", "--epochs", 1, "--option", "base_width=4")
    medzoo("export", "run", "--out", "models")
    return work / "models" / "unet" / "1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a 3D segmentation export (default: build a small one)")
    parser.add_argument("--spacing", default="5,3,3", help="target spacing of the built model (mm)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, nargs="+", default=[100, 200, 300])
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    from medzoo.datasets.synth_volumes import write_synthetic_volumes

    work = Path(args.keep or tempfile.mkdtemp(prefix="medzoo-predbench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        model = Path(args.model).resolve() if args.model else _build_model(work, args.spacing)
        card = json.loads((model / "model_card.json").read_text())
        plan = card["volume"]["plan"]
        print(f"model {model}: target spacing {plan['target_spacing']} mm, patch "
              f"{plan['patch_size']}, classes {plan['label_classes']}", flush=True)
        for n in args.slices:
            dicom_dir = work / f"dicom-{n}"
            start = time.perf_counter()
            # synth writes at least 2 patients; the second is dropped: one series per measure
            write_synthetic_volumes(dicom_dir, patients=2, size=args.size, slices=n, seed=n)
            for extra in sorted(p for p in dicom_dir.iterdir() if p.is_dir())[1:]:
                shutil.rmtree(extra)
            synth_s = time.perf_counter() - start
            base = _measure("baseline", model, dicom_dir, work / f"none-{n}")
            run = _measure("predict", model, dicom_dir, work / f"pred-{n}")
            with open(work / f"pred-{n}" / "predictions.csv", newline="") as fh:
                series_s = float(next(csv.DictReader(fh))["seconds"])
            series_mib, ratio, memory = series_memory(args.size, n, run, base)
            rows.append((n, series_mib, run["peak_mib"], ratio))
            print(f"{args.size}x{args.size}x{n}: synth {synth_s:.1f} s; predict {run['seconds']:.1f} s "
                  f"(process), {series_s:.1f} s per series (predictions.csv); {memory}", flush=True)
            shutil.rmtree(dicom_dir, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if len(rows) > 1:
        print(growth(rows))


if __name__ == "__main__":
    main()
