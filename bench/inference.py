"""Inference benchmark: batch images/s of onnxruntime vs Keras vs the SavedModel, as ratios.

The same model (one run and its export), the same float images and the same batch size go
through three runtimes:

1. onnxruntime on the export's ``model.onnx`` (``medzoo.evaluation.runtime.OnnxModel.predict``);
2. ``keras.Model.predict`` on the run's ``model.keras`` (``medzoo.zoo.saving.load_model``);
3. the SavedModel's ``serve_float`` signature (``tf.saved_model.load``), called batch by batch.

Each runtime gets one warm-up pass, then the best of ``--repeats`` timed passes is reported.
Prints images/s and the ratios ORT/Keras and ORT/SavedModel, plus the largest difference between
the runtimes' outputs; asserts nothing about time.

    python bench/inference.py                        # tiny phantom dataset, 1 epoch, export
    python bench/inference.py --run RUN --export BASE/NAME/VERSION [--images 1024] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make_run_and_export(workdir: Path, model: str, size: int) -> tuple[Path, Path]:
    """A tiny phantom dataset, one training epoch and an export, all with medzoo's functions."""
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train

    write_synthetic(workdir / "dicom", patients=12, size=size, slices=2, seed=0)
    ingest(workdir / "dicom", workdir / "dicom" / "labels.csv", workdir / "ds", size=size,
           folds=3, seed=0, key_file=workdir / "key", progress=False)
    train(model, workdir / "ds", workdir / "run", epochs=1, batch_size=8, seed=0, verbose=0)
    return workdir / "run", export_run(workdir / "run", workdir / "models")


def best_rate(fn, n_images: int, repeats: int) -> tuple[float, object]:
    """Images/s of the fastest of ``repeats`` timed calls (after one warm-up call)."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return n_images / best, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run dir holding model.keras")
    parser.add_argument("--export", type=Path, help="its export version dir BASE/NAME/VERSION")
    parser.add_argument("--model", default="cnn", help="zoo model when building a tiny run")
    parser.add_argument("--size", type=int, default=64, help="image size when building a run")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for all three runtimes (default: each one's own)")
    args = parser.parse_args(argv)
    if (args.run is None) != (args.export is None):
        parser.error("--run and --export go together")

    import numpy as np
    import tensorflow as tf

    if args.threads:  # before TensorFlow runs anything (training below initialises it)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    with tempfile.TemporaryDirectory(prefix="medzoo-bench-") as scratch:
        if args.run is None:
            print(f"building a tiny {args.model} run ({args.size} px, 1 epoch) and its export …",
                  flush=True)
            run_dir, export_dir = make_run_and_export(Path(scratch), args.model, args.size)
        else:
            run_dir, export_dir = args.run, args.export

        import keras

        from medzoo.evaluation.runtime import OnnxModel
        from medzoo.zoo import saving

        ort_model = OnnxModel(export_dir, threads=args.threads)
        keras_model = saving.load_model(run_dir / "model.keras")
        serve_float = tf.saved_model.load(str(export_dir)).signatures["serve_float"]
        shape = tuple(keras_model.input_shape[1:])
        images = np.random.default_rng(0).random((args.images, *shape), dtype=np.float32)
        batch = args.batch_size
        output = "mask" if "mask" in ort_model.output_names else "probabilities"

        def run_ort():
            return ort_model.predict(images, batch_size=batch)

        def run_keras():
            return np.asarray(keras_model.predict(images, batch_size=batch, verbose=0))

        def run_saved():
            return np.concatenate([serve_float(image=tf.constant(images[i:i + batch]))[output]
                                   .numpy() for i in range(0, len(images), batch)])

        rates, outputs = {}, {}
        for name, fn in (("onnxruntime", run_ort), ("keras.predict", run_keras),
                         ("savedmodel", run_saved)):
            rates[name], outputs[name] = best_rate(fn, len(images), args.repeats)

    print(f"\nmodel {keras_model.name} {shape}, {args.images} images, batch {batch}, "
          f"best of {args.repeats}, threads {args.threads or 'default'}, "
          f"tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"devices {[d.device_type for d in tf.config.list_logical_devices()]}")
    for name, rate in rates.items():
        print(f"  {name:<14} {rate:10.1f} images/s")
    print(f"  ratio ORT/Keras       {rates['onnxruntime'] / rates['keras.predict']:.2f}x")
    print(f"  ratio ORT/SavedModel  {rates['onnxruntime'] / rates['savedmodel']:.2f}x")
    reference = outputs["onnxruntime"]
    worst = max(float(np.max(np.abs(reference - outputs[k]))) for k in outputs)
    print(f"  max |difference| between runtimes' outputs: {worst:.2e}")


if __name__ == "__main__":
    main()
