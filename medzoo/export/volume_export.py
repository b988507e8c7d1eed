"""Export of a 3D patch-trained segmenter (``config["volume"]``, training/patch_fit.py).

The model takes patches of the plan's patch size — ``image`` float32 ``(N, pd, ph, pw, C)``
normalised per the plan — and returns ``mask``: softmax probabilities ``(N, pd, ph, pw, K)``
over the plan's ``label_classes``. Whole volumes are predicted by sliding this window
(:mod:`medzoo.evaluation.sliding_window`), so there is no raw-DICOM signature: ``serve_float``
is the only one, in the SavedModel and in ``model.onnx``. The plan (target spacing,
normalisation, patch size, classes) goes into the model card (``volume``) and the ONNX metadata
(``medzoo.plan``, ``medzoo.label_classes``, ``medzoo.volume``), so that evaluate and predict
resample and normalise a series exactly as the training data was. The training data's domain
(``dataset.json`` ``domain``, or ``"unknown"``) goes into both as well (card ``domain``,
``medzoo.domain``), as for 2D exports: predict checks each series against it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from medzoo import fsio

SIGNATURE = "serve_float"


def _serving_function(model, input_shape):
    import tensorflow as tf

    spec = [tf.TensorSpec((None, *input_shape), tf.float32, name="image")]
    return tf.function(lambda image: {"mask": model(image, training=False)}, input_signature=spec)


def volume_metadata(config: dict, name: str, version: int) -> dict:
    """The ``medzoo.*`` ONNX metadata of a volume export (values JSON-encoded on write)."""
    from medzoo.export.card import training_domain

    plan = config["plan"]
    return {"model": config["model"], "name": name, "version": version,
            "task": "segmentation", "volume": True, "classes": config.get("classes") or [],
            "label_classes": config["label_classes"], "plan": plan,
            "patch_size": [int(p) for p in plan["patch_size"]],
            "target_spacing": [float(v) for v in plan["target_spacing"]],
            "normalization": plan.get("normalization"), "modality": plan.get("modality"),
            "channels": int(config["input_shape"][-1]),
            "test_fold": config["test_fold"], "folds": config["folds"],
            "seed": config["split_seed"], "data_fingerprint": config["data"]["fingerprint"],
            "signature": SIGNATURE, "domain": training_domain(config)}


def parity_patches(data_dir: Path, config: dict, n: int = 4) -> np.ndarray:
    """Centre patches of validation volumes (padded where smaller), or noise without the data."""
    from medzoo.datasets import splits
    from medzoo.datasets.volume_records import read_volume_records

    patch = [int(p) for p in config["plan"]["patch_size"]]
    out = []
    if (data_dir / "dataset.json").exists():
        fold_of = splits.fold_assignment(data_dir, config["folds"], config["split_seed"])
        wanted = sorted(r for r, f in fold_of.items() if f == config["val_fold"])[:n]
        for rec in read_volume_records(data_dir, wanted):
            image = rec["image"]
            pads = [(0, max(p - s, 0)) for s, p in zip(image.shape[:3], patch)] + [(0, 0)]
            image = np.pad(image, pads)
            start = [(s - p) // 2 for s, p in zip(image.shape[:3], patch)]
            out.append(image[tuple(slice(a, a + p) for a, p in zip(start, patch))])
    if not out:
        rng = np.random.default_rng(config.get("seed", 0))
        out = list(rng.normal(size=(n, *config["input_shape"])).astype(np.float32))
    return np.stack(out).astype(np.float32)


def export_volume_run(run_dir: Path, config: dict, final_dir: Path, *, bless_if=None,
                      baseline_metrics=None, margin: float = 0.0, tolerance: float | None = None,
                      data_dir: Path, opset: int | None = None,
                      evaluator: Callable | None = None) -> Path:
    """Write the export of a volume run into ``final_dir`` (a new version dir); return it.

    SavedModel (``serve_float``) + ``model.onnx`` + ``parity.json`` (Keras vs SavedModel vs
    onnxruntime on real validation patches) + validation metrics by sliding window (Dice per
    class, HD95, ...; names ``dice``, ``dice_<class>`` for ``--bless-if``) + model card.

    Raises
    ------
    medzoo.export.parity.ParityError
        When an exported model differs from Keras past ``tolerance``.
    """
    import keras
    import tensorflow as tf
    import tf2onnx

    from medzoo.export import blessing, card, parity, saved_model
    from medzoo.export.exporter import software_versions
    from medzoo.export.versions import staged_version
    from medzoo.zoo import saving

    model = saving.load_model(run_dir / "model.keras")
    input_shape = tuple(config["input_shape"])
    name, version = final_dir.parent.name, int(final_dir.name)
    with staged_version(final_dir) as staging:
        tf.get_logger().setLevel("ERROR")
        serve = _serving_function(model, input_shape)
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SIGNATURE, serve)
        archive.write_out(str(staging), verbose=False)
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature,
                                                 opset=opset or 17)
        del proto.metadata_props[:]
        metadata = volume_metadata(config, name, version)
        for key, value in sorted(metadata.items()):
            entry = proto.metadata_props.add()
            entry.key, entry.value = f"medzoo.{key}", json.dumps(value)
        fsio.write_bytes(staging / "model.onnx", proto.SerializeToString())

        patches = parity_patches(data_dir, config)
        expected = {"mask": np.asarray(model(patches, training=False))}
        loaded = saved_model.load_signatures(staging)[SIGNATURE]
        from_saved = {k: v.numpy() for k, v in loaded(image=tf.constant(patches)).items()}
        limit = tolerance if tolerance is not None else parity.DEFAULT_TOLERANCE
        comparisons = {"keras_vs_savedmodel": parity.max_abs_difference(expected, from_saved),
                       "keras_vs_onnx": parity.max_abs_difference(
                           expected, parity.run_onnx(staging / "model.onnx", {"image": patches}))}
        report = {"tolerance": limit, "max_abs_difference": comparisons,
                  "n_float_inputs": int(len(patches)),
                  "passed": all(v <= limit for v in comparisons.values())}
        if not report["passed"]:
            worst = max(comparisons, key=comparisons.get)
            raise parity.ParityError(f"export parity failed: {worst} differs by "
                                     f"{comparisons[worst]:.3g}, expected at most {limit:g}")
        fsio.write_json(staging / "parity.json", report)

        metrics = _validation_metrics(staging / "model.onnx", data_dir, config, evaluator)
        blessed, reasons = blessing.decide(metrics.get("metrics", {}), list(bless_if or []),
                                           parity_passed=True, baseline=baseline_metrics,
                                           margin=margin, evaluation=metrics)
        reasons[1] = "parity: SavedModel and ONNX match Keras on validation patches"
        model_card = card.build_card(
            config=config, name=name, version=version, parameters=int(model.count_params()),
            signatures=[SIGNATURE], metrics=metrics, parity=report, blessed=blessed,
            reasons=reasons, artefacts=card.artefact_hashes(staging), versions=software_versions(),
            domain=metadata["domain"])
        model_card.update(volume_card_sections(config, metadata["domain"]))
        fsio.write_json(staging / "model_card.json", model_card)
        fsio.write_text(staging / "model_card.md", card.render_markdown(model_card)
                        + render_volume_markdown(model_card))
        fsio.write_text(staging / ("BLESSED" if blessed else "NOT_BLESSED"),
                        "\n".join(reasons) + "\n")
    return final_dir


def volume_card_sections(config: dict, domain=None) -> dict:
    """The card's ``input``, ``volume`` and ``limitations`` for a volume model (``domain``:
    the training domain, for the limitation on what the model may be given)."""
    from medzoo.export.card import UNKNOWN_DOMAIN, domain_limit

    plan = config["plan"]
    patch = [int(p) for p in plan["patch_size"]]
    spacing = [float(v) for v in plan["target_spacing"]]
    return {
        "input": {"image_size": patch, "channels": int(config["input_shape"][-1]),
                  "window": None,
                  "serve_float": f"float32 patches N×{'×'.join(map(str, patch))}×C at "
                                 f"{spacing} mm (z, y, x), normalised per the plan"},
        "volume": {"label_classes": config["label_classes"], "patch_size": patch,
                   "target_spacing_mm": spacing, "normalization": plan.get("normalization"),
                   "modality": plan.get("modality"), "plan": plan,
                   "inference": "sliding window, Gaussian importance (sigma = patch/8), "
                                "overlap 0.5; probabilities resampled back to the source grid"},
        "limitations": [
            f"Trained on {sum(config['data']['counts'].values())} volumes from one data source; "
            "performance on other scanners, protocols or populations is unknown until measured.",
            f"Input contract: volumes resampled to {spacing} mm and normalised as "
            f"{plan.get('normalization')}; other preprocessing changes the segmentation.",
            "Metrics below come from the validation fold; the held-out test fold "
            f"({config['test_fold']}) is for `medzoo evaluate`.",
            domain_limit(UNKNOWN_DOMAIN if domain is None else domain),
        ],
    }


def render_volume_markdown(model_card: dict) -> str:
    volume = model_card["volume"]
    return ("\n## Volumes\n\n"
            f"- Classes: {', '.join(volume['label_classes'])}\n"
            f"- Target spacing: {volume['target_spacing_mm']} mm (z, y, x); patch "
            f"{volume['patch_size']}\n"
            f"- Normalisation: {volume['normalization']}\n"
            f"- Inference: {volume['inference']}\n")


def _validation_metrics(onnx_path: Path, data_dir: Path, config: dict,
                        evaluator: Callable | None) -> dict:
    """Sliding-window metrics of the exported ONNX model on the validation fold, or a note.

    ``evaluator`` is :func:`medzoo.evaluation.evaluate.evaluate` (it recognises a volume model by
    its ONNX metadata and runs the sliding window); export never imports evaluation itself.
    """
    if evaluator is None:
        return {"split": None, "note": "no evaluator given to the export; no validation metrics"}
    if not (data_dir / "dataset.json").exists():
        return {"split": None, "note": "dataset not found; no validation metrics"}
    with tempfile.TemporaryDirectory() as scratch:
        result = evaluator(onnx_path, data_dir, scratch, split=f"fold:{config['val_fold']}",
                           n_boot=200, charts=False)
    return {"split": f"validation fold {config['val_fold']}", **result}
