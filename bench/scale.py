"""Scaling benchmark: training images/s with 1 and 2 workers, inference images/s local vs Ray.

Everything is measured in the same run, on the same phantom dataset (ingested into many small
shards so that both workers get some), and printed as ratios against a baseline:

* training — ``medzoo.training.fit.train`` with ``--strategy multiworker`` (MultiWorkerMirrored,
  the custom loop) as 1 worker and as 2 worker processes on localhost with the same global batch,
  plus the default strategy (Keras ``fit``, one process) for reference. Images/s = training images
  × epochs / ``train_seconds`` of the chief's ``config.json`` (the training loop only: not the
  interpreter start, not TensorFlow's import).
* inference — ``medzoo.evaluation.evaluate.evaluate`` of the same ONNX export, local engine vs
  ``engine="ray"`` on a local Ray instance with 2 CPUs, best of ``--repeats`` calls (each call
  schedules one Ray task per shard; the first also starts Ray's worker processes).

On a machine with fewer cores than workers, 2 workers share the cores and add all-reduce
traffic: expect a ratio below 1 there. Nothing is asserted about time.

    python bench/scale.py [--epochs 8] [--patients 40] [--size 32] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WORKER = """
import sys
from medzoo.training.fit import train
ds, out, epochs, batch, strategy = sys.argv[1:6]
train("cnn", ds, out, epochs=int(epochs), batch_size=int(batch), seed=0, verbose=0,
      strategy=strategy, model_options={"dropout": 0.0})
"""


def make_dataset(workdir: Path, patients: int, size: int) -> Path:
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic

    write_synthetic(workdir / "dicom", patients=patients, size=size, slices=4, seed=0)
    ingest(workdir / "dicom", workdir / "dicom" / "labels.csv", workdir / "ds", size=size,
           folds=3, seed=0, key_file=workdir / "key", progress=False, records_per_shard=8)
    return workdir / "ds"


def train_rate(ds: Path, out: Path, workers: int, strategy: str, epochs: int, batch: int) -> float:
    """Training images/s of the chief, with ``workers`` processes on localhost."""
    from medzoo.training.distribute import local_tf_configs

    procs = []
    for tf_config in local_tf_configs(workers):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        if strategy == "multiworker":
            env["TF_CONFIG"] = tf_config
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(ds), str(out), str(epochs), str(batch), strategy],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        for p in procs:
            _, err = p.communicate(timeout=900)
            if p.returncode:
                raise SystemExit(f"a worker failed:\n{err[-2000:]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    config = json.loads((out / "config.json").read_text())
    return config["data"]["counts"]["train"] * config["epochs_run"] / config["train_seconds"]


def inference_rates(ds: Path, workdir: Path, repeats: int) -> dict[str, float]:
    try:
        import ray
    except ImportError:
        raise SystemExit("bench/scale.py: the inference part needs the Ray extra: "
                         "pip install 'medzoo[ray]'") from None

    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train

    train("cnn", ds, workdir / "infer-run", epochs=1, batch_size=16, seed=0, verbose=0)
    export = export_run(workdir / "infer-run", workdir / "models", evaluator=evaluate)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rates: dict[str, float] = {}
    try:
        for engine in ("local", "ray"):
            best = float("inf")
            for i in range(repeats):
                started = time.perf_counter()
                result = evaluate(export, ds, workdir / f"eval-{engine}-{i}", split="all", n_boot=0,
                                  charts=False, engine=engine)
                best = min(best, time.perf_counter() - started)
            rates[engine] = result["n"] / best
    finally:
        ray.shutdown()
    return rates


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch")
    parser.add_argument("--repeats", type=int, default=2, help="evaluate calls per engine (best)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="medzoo-scale-") as tmp:
        workdir = Path(tmp)
        ds = make_dataset(workdir, args.patients, args.size)
        n_shards = len(list((ds / "shards").glob("*.tfrecord")))
        print(f"cpus={os.cpu_count()} dataset: {args.patients} patients × 4 slices, "
              f"{args.size} px, {n_shards} shards; cnn, global batch {args.batch_size}, "
              f"{args.epochs} epochs")
        rows = [("multiworker, 1 worker", 1, "multiworker"), ("multiworker, 2 workers", 2, "multiworker"),
                ("default strategy (Keras fit)", 1, "default")]
        rates = {}
        for label, workers, strategy in rows:
            rates[label] = train_rate(ds, workdir / f"run-{workers}-{strategy}", workers, strategy,
                                      args.epochs, args.batch_size)
        base = rates["multiworker, 1 worker"]
        print("training (images/s of the training loop, chief's train_seconds):")
        for label, rate in rates.items():
            print(f"  {label:30s} {rate:8.1f} img/s   ratio vs 1 worker {rate / base:5.2f}")
        inference = inference_rates(ds, workdir, args.repeats)
        print(f"inference (evaluate --split all, best of {args.repeats} calls; ray: one task per "
              "shard):")
        for engine, rate in inference.items():
            print(f"  {engine:30s} {rate:8.1f} img/s   ratio vs local {rate / inference['local']:5.2f}")


if __name__ == "__main__":
    main()
