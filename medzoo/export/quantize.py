"""Quantised ONNX files beside ``model.onnx``: ``model.int8.onnx`` and ``model.fp16.onnx``.

int8 is onnxruntime's static quantisation in QDQ format, calibrated on images of the run's
training part (never validation or test). fp16 converts weights and activations to half
precision, keeping float32 inputs and outputs (``onnxconverter-common``). Each quantised file is
checked against ``model.onnx`` on the validation fold: the AUC difference and the largest
absolute probability difference go into ``parity.json`` under ``quantized``; a file whose AUC
drops by more than ``max_drop`` is refused (:class:`QuantizationError`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medzoo import roc
from medzoo.errors import MedzooError

MODES = ("int8", "fp16")
DEFAULT_MAX_DROP = 0.01
CALIBRATION_IMAGES = 64


class QuantizationError(MedzooError):
    """A quantised model lost more than the allowed AUC, or could not be made."""


def run_parts(data_dir, config: dict) -> dict[str, list[str]]:
    """The run's ``train``/``val``/``test`` record ids, split exactly as training split them."""
    from medzoo.datasets import splits
    from medzoo.training.fit import split_record_ids

    fold_of = splits.fold_assignment(data_dir, config["folds"], config["split_seed"])
    return split_record_ids(fold_of, config["test_fold"], config["folds"])


class TrainingImages:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over training records.

    Yields ``{"image": (batch, H, W, C) float32}`` feeds of up to ``limit`` training images,
    spread evenly over the training part, in batches of ``batch_size``.
    """

    def __init__(self, data_dir, record_ids, *, limit: int = CALIBRATION_IMAGES,
                 batch_size: int = 8, input_name: str = "image") -> None:
        ids = list(record_ids)
        if len(ids) > limit:
            ids = [ids[i] for i in np.linspace(0, len(ids) - 1, limit).round().astype(int)]
        self.data_dir, self.ids = Path(data_dir), ids
        self.batch_size, self.input_name = int(batch_size), input_name
        self._batches = None

    def _iterate(self):
        from medzoo.datasets import records

        batch = []
        for rec in records.read_records(self.data_dir, self.ids):
            batch.append(rec["image"])
            if len(batch) == self.batch_size:
                yield {self.input_name: np.stack(batch).astype(np.float32)}
                batch = []
        if batch:
            yield {self.input_name: np.stack(batch).astype(np.float32)}

    def get_next(self):
        if self._batches is None:
            self._batches = self._iterate()
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = None


def _copy_metadata(source, target, extra: dict) -> None:
    """Give ``target`` the ``medzoo.*`` metadata of ``source`` (quantisers drop or keep it)."""
    import json

    import onnx

    from medzoo import fsio

    src, dst = onnx.load(str(source)), onnx.load(str(target))
    del dst.metadata_props[:]
    for entry in src.metadata_props:
        dst.metadata_props.add(key=entry.key, value=entry.value)
    for key, value in extra.items():
        dst.metadata_props.add(key=f"medzoo.{key}", value=json.dumps(value))
    fsio.write_bytes(Path(target), dst.SerializeToString())


def quantize_int8(fp32_path, out_path, reader) -> None:
    """Static QDQ quantisation (int8 weights per channel, 7-bit range; uint8 activations),
    calibrated by ``reader``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = Path(out_path).with_name(f".{Path(out_path).name}.pre.onnx")
    try:
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out_path), reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        # 7-bit weights: u8×s8 products saturate on x86 CPUs without VNNI
                        # (onnxruntime's own advice); the file must be right on any CPU.
                        per_channel=True, reduce_range=True)
    finally:
        prepared.unlink(missing_ok=True)


def quantize_fp16(fp32_path, out_path) -> None:
    """Half-precision weights and activations; float32 inputs and outputs as before."""
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise QuantizationError("--quantize fp16 needs the onnxconverter-common package "
                                "(pip install onnxconverter-common)") from exc
    from medzoo import fsio

    model = float16.convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    fsio.write_bytes(Path(out_path), model.SerializeToString())


def _scores(path, images: np.ndarray, task: str) -> np.ndarray:
    """Outputs of an ONNX file on ``images``: probability rows, or the segmenter's score."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    wanted = "score" if task == "segmentation" and "score" in names else names[0]
    outputs = [session.run([wanted], {"image": images[i:i + 16]})[0]
               for i in range(0, len(images), 16)]
    return np.concatenate(outputs).astype(np.float64)


def _auc(y: np.ndarray, probs: np.ndarray, multi_label: bool) -> float:
    """Positive-class AUC (binary and segmentation scores), macro one-vs-rest AUC otherwise."""
    if probs.ndim == 1:
        return roc.roc_auc(y, probs)
    if multi_label:
        values = [roc.roc_auc(y[:, k], probs[:, k]) for k in range(probs.shape[1])]
    elif probs.shape[1] == 2:
        return roc.roc_auc(y, probs[:, 1])
    else:  # one class against the rest
        values = [roc.roc_auc((y == k).astype(np.int64), probs[:, k]) for k in range(probs.shape[1])]
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


def quantize_export(staging, data_dir, config: dict, modes, *,
                    max_drop: float = DEFAULT_MAX_DROP) -> dict:
    """Write the quantised twins of ``staging/model.onnx``; return the ``quantized`` parity block.

    Parameters
    ----------
    staging : the (not yet published) export version folder holding ``model.onnx``
    data_dir : the dataset dir the run was trained on (calibration and validation images)
    config : the run's config.json
    modes : subset of :data:`MODES`
    max_drop : largest allowed drop of validation AUC against ``model.onnx``

    Returns
    -------
    dict mode → ``{"file", "auc_fp32", "auc", "auc_drop", "max_abs_prob_difference", "n",
    "max_drop", "passed"}`` (+ ``calibration_images`` for int8).

    Raises
    ------
    QuantizationError
        Unknown mode, no dataset dir to calibrate or validate on, or an AUC drop past ``max_drop``.
    """
    from medzoo.datasets import records

    staging, data_dir = Path(staging), Path(data_dir)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise QuantizationError(f"--quantize must be one of {', '.join(MODES)}. Received: {unknown}")
    if not (data_dir / "dataset.json").exists():
        raise QuantizationError(f"{data_dir}: --quantize needs the run's dataset dir for calibration "
                                "and validation images; pass --data")
    task, multi_label = config["task"], bool(config.get("multi_label"))
    parts = run_parts(data_dir, config)
    val = list(records.read_records(data_dir, parts["val"]))
    if task == "segmentation" or not multi_label:
        y = np.array([int(r["label"]) for r in val])
    else:
        y = np.stack([np.asarray(r["labels"]) for r in val]).astype(np.int64)
    images = np.stack([r["image"] for r in val]).astype(np.float32)
    fp32 = staging / "model.onnx"
    reference = _scores(fp32, images, task)
    auc_fp32 = _auc(y, reference, multi_label)
    report = {}
    for mode in dict.fromkeys(modes):
        target = staging / f"model.{mode}.onnx"
        entry = {"file": target.name}
        if mode == "int8":
            reader = TrainingImages(data_dir, parts["train"])
            quantize_int8(fp32, target, reader)
            entry["calibration_images"] = len(reader.ids)
            entry["calibration"] = "training part"
        else:
            quantize_fp16(fp32, target)
        _copy_metadata(fp32, target, {"quantized": mode})
        scores = _scores(target, images, task)
        auc = _auc(y, scores, multi_label)
        drop = auc_fp32 - auc
        entry.update({"n": int(len(images)), "auc_fp32": auc_fp32, "auc": auc,
                      "auc_drop": drop,
                      "max_abs_prob_difference": float(np.max(np.abs(scores - reference))),
                      "max_drop": float(max_drop)})
        entry["passed"] = bool(np.isnan(drop) or drop <= max_drop)
        report[mode] = entry
        if not entry["passed"]:
            raise QuantizationError(
                f"{mode} model refused: validation AUC {auc:.4f} vs {auc_fp32:.4f} for float32 "
                f"(drop {drop:.4f} > --max-drop {max_drop:g}); nothing was exported")
        if np.isnan(drop):
            entry["note"] = "AUC undefined on the validation fold (one class); not checked"
    return report
