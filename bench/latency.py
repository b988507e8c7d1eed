"""Real-time speed: one model as Keras, SavedModel, ONNX fp32, int8 and fp16, on the same images.

Single-image latency (batch 1: p50, p95) and batch throughput (images/s), printed as ratios
against ONNX fp32 measured in the same run. Nothing is asserted: the numbers depend on the box.

    python bench/latency.py --export models/cnn/1 --data ds         # an export made with --quantize
    python bench/latency.py --out /tmp/latency                       # makes its own phantom model
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, images: np.ndarray, repeats: int) -> np.ndarray:
    fn(images[:1])  # warm-up: graph tracing, session initialisation
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(images[i % len(images):i % len(images) + 1])
        times.append(time.perf_counter() - start)
    return np.array(times)


def _throughput(fn, images: np.ndarray, batch: int, rounds: int) -> float:
    fn(images[:batch])
    start = time.perf_counter()
    for _ in range(rounds):
        fn(images[:batch])
    return rounds * batch / (time.perf_counter() - start)


def _make_export(out: Path, size: int, seed: int, widths: tuple, epochs: int) -> tuple[Path, Path]:
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train

    write_synthetic(out / "dicom", patients=24, size=size, slices=2, seed=seed)
    ingest(out / "dicom", out / "dicom" / "labels.csv", out / "ds", size=size, folds=4, seed=seed,
           key_file=out / "bench.key")
    train("cnn", out / "ds", out / "run", epochs=epochs, batch_size=8, seed=seed, verbose=0,
          model_options={"widths": list(widths), "dense": max(64, widths[-1] // 2)})
    return export_run(out / "run", out / "models", quantize=["int8", "fp16"], max_drop=1.0), out / "ds"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", help="export version dir holding model(.int8|.fp16).onnx")
    parser.add_argument("--data", help="dataset dir for the images (default: random images)")
    parser.add_argument("--run", help="the export's run dir, to time Keras too")
    parser.add_argument("--out", help="scratch dir without --export (default: a new temporary "
                                      "folder)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=200, help="batch-1 calls per runtime")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=20, help="batches for the throughput")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widths", default="16,32,64",
                        help="CNN convolution widths of the model made without --export; int8 pays "
                             "on wide layers (e.g. 64,128,256)")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs without --export")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import onnxruntime as ort
    import tensorflow as tf

    from medzoo.zoo import saving

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="medzoo-latency-"))
    if args.export:
        version, data = Path(args.export), Path(args.data) if args.data else None
    else:
        widths = tuple(int(w) for w in args.widths.split(","))
        version, data = _make_export(out, args.size, args.seed, widths, args.epochs)
    card = __import__("json").loads((version / "model_card.json").read_text())
    h, w = card["input"]["image_size"]
    c = card["input"]["channels"]
    if data is not None:
        from medzoo.datasets import records

        images = np.stack([r["image"] for _, r in zip(range(max(64, args.batch)),
                                                       records.read_records(data))])
    else:
        images = np.random.default_rng(args.seed).random((max(64, args.batch), h, w, c),
                                                         dtype=np.float32)
    images = np.resize(images, (max(64, args.batch), h, w, c)).astype(np.float32)

    runtimes = {}
    keras_path = Path(args.run or out / "run") / "model.keras"
    if keras_path.is_file():
        model = saving.load_model(keras_path)
        runtimes["keras"] = lambda x: model(x, training=False)
    serve = tf.saved_model.load(str(version)).signatures["serve_float"]
    input_name = list(serve.structured_input_signature[1])[0]
    runtimes["savedmodel"] = lambda x: serve(**{input_name: tf.constant(x)})
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    for name, file in (("onnx_fp32", "model.onnx"), ("onnx_int8", "model.int8.onnx"),
                       ("onnx_fp16", "model.fp16.onnx")):
        if (version / file).is_file():
            session = ort.InferenceSession(str(version / file), options,
                                           providers=["CPUExecutionProvider"])
            runtimes[name] = (lambda s: lambda x: s.run(None, {"image": x}))(session)

    rows = {}
    for name, fn in runtimes.items():
        t = _timed(fn, images, args.repeats) * 1e3
        rows[name] = {"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)),
                      "throughput": _throughput(fn, images, args.batch, args.rounds)}
    base = rows["onnx_fp32"]
    print(f"{'runtime':<12} {'p50 ms':>8} {'p95 ms':>8} {'img/s':>9}   vs ONNX fp32: "
          f"p50 speed-up, throughput ratio")
    for name, r in rows.items():
        print(f"{name:<12} {r['p50_ms']:8.3f} {r['p95_ms']:8.3f} {r['throughput']:9.1f}   "
              f"x{base['p50_ms'] / r['p50_ms']:.2f}  x{r['throughput'] / base['throughput']:.2f}")
    quantized = __import__("json").loads((version / "parity.json").read_text()).get("quantized", {})
    for mode, q in quantized.items():
        print(f"{mode}: validation AUC {q['auc']:.4f} vs fp32 {q['auc_fp32']:.4f} "
              f"(drop {q['auc_drop']:+.4f}), max |Δp| {q['max_abs_prob_difference']:.4g}")


if __name__ == "__main__":
    main()
