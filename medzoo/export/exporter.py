"""``medzoo export``: run dir → ``BASE/NAME/VERSION`` (SavedModel + ONNX + card + blessing).

The version is built in a hidden folder beside its final place and renamed at the end, so a
half-written export is never visible; an existing version is never overwritten.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from medzoo import __version__, fsio
from medzoo.errors import InputError
from medzoo.export.versions import new_version_dir, staged_version


def export_run(run_dir, base, *, name: str | None = None, version: int | None = None,
               bless_if: list[str] | None = None, baseline=None, margin: float = 0.0,
               tolerance: float | None = None, data_dir=None, opset: int | None = None,
               quantize: list[str] | tuple = (), max_drop: float | None = None,
               evaluator: Callable | None = None) -> Path:
    """Export a finished run; return the version dir.

    Parameters
    ----------
    run_dir : path-like
        A finished run dir (``config.json`` + ``model.keras``).
    base : path-like
        The model base folder; the export goes to ``base/name/version``.
    name : str, optional
        Model name (default: the zoo model's name).
    version : int, optional
        Version number (default: one more than the highest existing version, starting at 1).
    bless_if : list of str
        Rules such as ``"auc>=0.85"`` on validation metrics; all must hold to bless.
    baseline : path-like, optional
        A blessed version dir; the candidate must not be worse by more than ``margin``.
    tolerance : float
        Largest allowed difference between Keras, SavedModel and ONNX outputs (default 1e-4).
    data_dir : path-like, optional
        Dataset dir for parity inputs and validation metrics (default: the one trained on).
    quantize : subset of ("int8", "fp16")
        Also write ``model.int8.onnx`` (static QDQ, calibrated on training images) and/or
        ``model.fp16.onnx``; their validation AUC change and largest probability difference
        against ``model.onnx`` go into ``parity.json`` under ``quantized``.
    max_drop : float
        Largest allowed validation AUC drop of a quantised model (default 0.01).
    evaluator : callable, optional
        What measures the exported ``model.onnx`` on the validation fold for the card and the
        blessing: ``evaluator(model_path, ds_dir, out_dir, *, split, charts, threshold,
        threshold_source) -> dict``, i.e. :func:`medzoo.evaluation.evaluate.evaluate`, which the
        command line, the demo and cross-validation pass. Export stands before evaluation in
        the chain, so it never imports it; without one the card records no validation metrics
        (a note says why), the validation threshold is not copied into ``metrics.threshold``
        and a ``--bless-if`` rule finds nothing to judge.

    Raises
    ------
    InputError
        Not a finished run, a bad name, or an existing version.
    medzoo.export.parity.ParityError
        When the exported models disagree with Keras past ``tolerance``.
    medzoo.export.quantize.QuantizationError
        When a quantised model loses more validation AUC than ``max_drop`` (nothing is exported).
    """
    from medzoo.export import blessing, card, inputs, onnx, parity, saved_model
    from medzoo.training.fit import read_config
    from medzoo.zoo import saving

    run_dir, base = Path(run_dir), Path(base)
    if (run_dir / "generator.keras").is_file():
        return export_generator(run_dir, base, name=name or "gan", version=version,
                                tolerance=tolerance, opset=opset)
    config = read_config(run_dir)
    name = name or config["model"]
    final_dir = new_version_dir(base, name, version)
    version = int(final_dir.name)
    data_dir = Path(data_dir or config["data"]["dir"])
    if config.get("volume"):  # a 3D patch-trained segmenter: export/volume_export.py
        from medzoo.export.volume_export import export_volume_run

        if quantize:
            raise InputError("--quantize is not available for volume (3D patch) models yet")
        return export_volume_run(run_dir, config, final_dir, bless_if=bless_if,
                                 baseline_metrics=_blessed_metrics(Path(baseline)) if baseline
                                 else None, margin=margin, tolerance=tolerance,
                                 data_dir=data_dir, opset=opset, evaluator=evaluator)
    model = saving.load_model(run_dir / "model.keras")
    input_shape = tuple(config["input_shape"])
    with staged_version(final_dir) as staging:
        preprocessing = config["data"].get("preprocessing") or []
        declared = inputs.declared_inputs(_dataset_info(data_dir), int(input_shape[-1]))
        signatures = saved_model.write_saved_model(model, staging, task=config["task"],
                                                   input_shape=input_shape,
                                                   preprocessing=preprocessing, inputs=declared)
        metadata = {"model": config["model"], "name": name, "version": version,
                    "task": config["task"], "classes": config["classes"],
                    "image_size": list(input_shape[:2]), "channels": input_shape[-1],
                    "test_fold": config["test_fold"], "folds": config["folds"],
                    "seed": config["split_seed"], "data_fingerprint": config["data"]["fingerprint"],
                    "window": config["data"].get("window")}
        metadata["domain"] = card.training_domain(config)
        if config.get("multi_label"):
            metadata["multi_label"] = True
        metadata["inputs"] = declared
        metadata["findings"] = inputs.declared_findings(config)
        onnx_paths = onnx.write_onnx(model, staging, task=config["task"], input_shape=input_shape,
                                     metadata=metadata, preprocessing=preprocessing,
                                     inputs=declared, **({"opset": opset} if opset else {}))
        float_feeds, raw_feeds = parity_inputs(data_dir, config)
        raw_feeds = inputs.raw_feeds_per_input(raw_feeds, declared)
        keras_outputs = _keras_outputs(model, float_feeds["image"], config["task"])
        report = parity.check_parity(
            keras_outputs=keras_outputs, signatures=saved_model.load_signatures(staging),
            onnx_paths=onnx_paths, float_feeds=float_feeds, raw_feeds=raw_feeds,
            tolerance=tolerance if tolerance is not None else parity.DEFAULT_TOLERANCE)
        if quantize:
            from medzoo.export import quantize as quantizer

            report["quantized"] = quantizer.quantize_export(
                staging, data_dir, config, list(quantize),
                max_drop=quantizer.DEFAULT_MAX_DROP if max_drop is None else max_drop)
        fsio.write_json(staging / "parity.json", report)
        ood_info = _ood(model, staging, config, opset or onnx.DEFAULT_OPSET)
        metrics = validation_metrics(staging / "model.onnx", data_dir, config, evaluator)
        baseline_metrics = _blessed_metrics(Path(baseline)) if baseline else None
        blessed, reasons = blessing.decide(metrics.get("metrics", {}), list(bless_if or []),
                                           parity_passed=report["passed"],
                                           baseline=baseline_metrics, margin=margin,
                                           evaluation=metrics)
        model_card = card.build_card(
            config=config, name=name, version=version, parameters=int(model.count_params()),
            signatures=signatures, metrics=metrics, parity=report, blessed=blessed,
            reasons=reasons, artefacts=card.artefact_hashes(staging), versions=software_versions(),
            domain=metadata["domain"], ood=ood_info)
        model_card["input"]["inputs"] = declared
        if len(declared) > 1:
            model_card["input"]["serving_default"] = (
                "per input " + ", ".join(d["name"] for d in declared) + ": raw stored pixels "
                "<name>_pixels (int32 B×rows×cols) + <name>_rescale_slope, _rescale_intercept, "
                "_window_center, _window_width, _invert")
        model_card["findings"] = metadata["findings"]
        fsio.write_json(staging / "model_card.json", model_card)
        fsio.write_text(staging / "model_card.md", card.render_markdown(model_card)
                        + inputs.render_markdown(declared, model_card["findings"]))
        fsio.write_text(staging / ("BLESSED" if blessed else "NOT_BLESSED"),
                        "\n".join(reasons) + "\n")
    return final_dir


def _ood(model, staging: Path, config: dict, opset: int) -> dict:
    """The model-based OOD statistics (:mod:`medzoo.export.ood`); an export does not fail for
    want of them."""
    from medzoo.export import ood

    try:
        return ood.export_ood(model, staging, Path(config["data"]["dir"]), config, opset=opset)
    except Exception as exc:  # the model itself is exported; say why it has no OOD score
        print(f"medzoo export: no OOD statistics ({type(exc).__name__}: {exc})", file=sys.stderr)
        return {"available": False, "reason": f"{type(exc).__name__}"}


def _dataset_info(data_dir: Path) -> dict | None:
    """``dataset.json`` of the training dataset, or None when it is not there any more."""
    try:
        return fsio.read_json(data_dir / "dataset.json")
    except (OSError, ValueError):
        return None


def export_generator(gan_run, base, *, name: str = "gan", version: int | None = None,
                     tolerance: float | None = None, opset: int | None = None) -> Path:
    """Export a GAN run's generator like any model: SavedModel + ONNX + parity + card.

    Signature ``serving_default``: ``latent`` (B × latent_dim float32) and ``label`` (B int32)
    in, ``image`` (B × H × W × C in [0, 1]) out. Generated images are synthetic; the card says so
    and the export is never BLESSED for diagnosis (``NOT_BLESSED`` with that reason).
    """
    import keras
    import tensorflow as tf
    import tf2onnx

    from medzoo.export import card, parity, saved_model
    from medzoo.training.gan import load_generator

    generator, gan_config = load_generator(gan_run)
    final_dir = new_version_dir(Path(base), name, version)
    latent_dim = int(generator.inputs[0].shape[-1])
    spec = [tf.TensorSpec((None, latent_dim), tf.float32, name="latent"),
            tf.TensorSpec((None,), tf.int32, name="label")]
    serve = tf.function(lambda latent, label: {"image": generator([latent, label],
                                                                  training=False)},
                        input_signature=spec)
    with staged_version(final_dir) as staging:
        tf.get_logger().setLevel("ERROR")
        archive = keras.export.ExportArchive()
        archive.track(generator)
        archive.add_endpoint("serving_default", serve)
        archive.write_out(str(staging), verbose=False)
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec,
                                                 opset=opset or 17)
        for key, value in {"task": "generation", "classes": gan_config["classes"],
                           "synthetic": True}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = f"medzoo.{key}", json.dumps(value)
        fsio.write_bytes(staging / "model.onnx", proto.SerializeToString())
        rng = np.random.default_rng(0)
        feeds = {"latent": rng.standard_normal((4, latent_dim)).astype(np.float32),
                 "label": (np.arange(4) % len(gan_config["classes"])).astype(np.int32)}
        expected = {"image": np.asarray(generator([feeds["latent"], feeds["label"]],
                                                  training=False))}
        loaded = saved_model.load_signatures(staging)["serving_default"]
        from_saved = {k: v.numpy() for k, v in
                      loaded(**{k: tf.constant(v) for k, v in feeds.items()}).items()}
        limit = tolerance if tolerance is not None else parity.DEFAULT_TOLERANCE
        report = {"tolerance": limit, "max_abs_difference": {
            "keras_vs_savedmodel": parity.max_abs_difference(expected, from_saved),
            "keras_vs_onnx": parity.max_abs_difference(
                expected, parity.run_onnx(staging / "model.onnx", feeds))}}
        report["passed"] = all(v <= limit for v in report["max_abs_difference"].values())
        if not report["passed"]:
            raise parity.ParityError(f"generator export parity failed: {report}")
        fsio.write_json(staging / "parity.json", report)
        fsio.write_json(staging / "model_card.json", {
            "schema_version": 1,
            "model": {"name": name, "version": int(final_dir.name),
                      "architecture": "conditional_gan generator", "task": "generation",
                      "classes": gan_config["classes"], "latent_dim": latent_dim,
                      "parameters": int(generator.count_params())},
            "training": {"data_fingerprint": gan_config["data"]["fingerprint"],
                         "folds": gan_config["folds"], "test_fold": gan_config["test_fold"],
                         "trained_on": gan_config["trained_on"]},
            "intended_use": "Synthetic training images for data augmentation only. Generated "
                            "images are not patient images and must never be read as such.",
            "parity": report, "versions": software_versions(),
            "artefacts": card.artefact_hashes(staging)})
        fsio.write_text(staging / "NOT_BLESSED",
                        "generator: synthetic images are for augmentation, not diagnosis\n")
    return final_dir


def parity_inputs(data_dir: Path, config: dict, n: int = 8) -> tuple[dict, dict]:
    """Real validation images (float path) and raw int pixels in a CT-like range (raw path)."""
    from medzoo.datasets import records, splits

    input_shape = tuple(config["input_shape"])
    images = []
    if (data_dir / "dataset.json").exists():
        fold_of = splits.fold_assignment(data_dir, config["folds"], config["split_seed"])
        wanted = sorted(r for r, f in fold_of.items() if f == config["val_fold"])[:n]
        images = [rec["image"] for rec in records.read_records(data_dir, wanted)]
    rng = np.random.default_rng(config.get("seed", 0))
    if not images:
        images = list(rng.random((n, *input_shape), dtype=np.float32))
    float_feeds = {"image": np.stack(images).astype(np.float32)}
    rows, cols = 2 * input_shape[0] + 3, 2 * input_shape[1] - 5  # exercise the in-graph resize
    count = len(images)
    raw_feeds = {
        "pixels": rng.integers(0, 2400, size=(count, rows, cols)).astype(np.int32),
        "rescale_slope": np.ones(count, np.float32),
        "rescale_intercept": np.full(count, -1024.0, np.float32),
        "window_center": np.full(count, 40.0, np.float32),
        "window_width": np.full(count, 400.0, np.float32),
        "invert": (np.arange(count) % 2).astype(np.float32),
    }
    return float_feeds, raw_feeds


def _keras_outputs(model, images: np.ndarray, task: str) -> dict:
    predictions = np.asarray(model(images, training=False))
    if task == "segmentation":
        return {"mask": predictions, "score": predictions.reshape(len(predictions), -1).max(1)}
    return {"probabilities": predictions}


def validation_metrics(onnx_path: Path, data_dir: Path, config: dict,
                       evaluator: Callable | None = None) -> dict:
    """Metrics of the exported ONNX model on the validation fold, or a note why there are none.

    ``evaluator`` is :func:`medzoo.evaluation.evaluate.evaluate` or a function with its signature
    (see :func:`export_run`); it gets the run's validation threshold, if one was chosen.
    """
    if evaluator is None:
        return {"split": None, "note": "no evaluator given to the export; no validation metrics"}
    if not (data_dir / "dataset.json").exists():
        return {"split": None, "note": f"dataset not found; no validation metrics"}
    chosen = config.get("threshold") or {}
    threshold = chosen.get("value") if isinstance(chosen.get("value"), (int, float)) else None
    with tempfile.TemporaryDirectory() as scratch:
        result = evaluator(onnx_path, data_dir, scratch, split=f"fold:{config['val_fold']}",
                           charts=False, threshold=threshold,
                           threshold_source=f"validation ({chosen.get('rule')})"
                           if threshold is not None else None)
    return {"split": f"validation fold {config['val_fold']}", **result}


def _blessed_metrics(version_dir: Path) -> dict:
    if not (version_dir / "BLESSED").exists():
        raise InputError(f"{version_dir}: --baseline must be a BLESSED export version")
    return fsio.read_json(version_dir / "model_card.json")["metrics"].get("metrics", {})


def software_versions() -> dict:
    """medzoo's version and those of the libraries that wrote and check an export."""
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {"medzoo": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}
