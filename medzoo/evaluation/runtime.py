"""onnxruntime sessions for batch evaluation (numpy + onnxruntime only, no TensorFlow).

An exported model is either a version dir ``BASE/NAME/VERSION`` holding ``model.onnx`` or a bare
``.onnx`` file; its ``medzoo.*`` metadata_props (docs/internals.md) make the file self-describing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from medzoo.errors import InputError

__all__ = ["resolve_model", "OnnxModel", "read_metadata"]

METADATA_PREFIX = "medzoo."


def resolve_model(path) -> Path:
    """The ``.onnx`` file behind an export version dir or an ONNX path.

    Parameters
    ----------
    path : str or Path
        ``BASE/NAME/VERSION`` (its ``model.onnx`` is used) or a ``.onnx`` file.

    Returns
    -------
    Path of the ONNX file.

    Raises
    ------
    InputError
        When the path does not exist, the dir holds no ``model.onnx``, or the file is not ``.onnx``.
    """
    p = Path(path)
    if p.is_dir():
        onnx_file = p / "model.onnx"
        if not onnx_file.is_file():
            raise InputError(f"{p}: expected an export version dir holding model.onnx "
                             f"(BASE/NAME/VERSION) or a .onnx file; found no model.onnx in it")
        return onnx_file
    if not p.exists():
        raise InputError(f"{p}: no such file or directory (expected BASE/NAME/VERSION or a .onnx file)")
    if p.suffix.lower() != ".onnx":
        raise InputError(f"{p}: expected a .onnx file or an export version dir. Received a '{p.suffix or 'no'}' file")
    return p


def _decode(value: str):
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value  # plain strings such as a model name may be stored unquoted


def read_metadata(custom: dict[str, str]) -> dict:
    """``medzoo.*`` metadata_props with the prefix removed and values JSON-decoded."""
    return {k[len(METADATA_PREFIX):]: _decode(v) for k, v in custom.items() if k.startswith(METADATA_PREFIX)}


class OnnxModel:
    """One onnxruntime CPU session over a medzoo ONNX model.

    Parameters
    ----------
    path : str or Path
        Anything :func:`resolve_model` accepts.
    threads : int, optional
        onnxruntime intra-op threads (default: onnxruntime's choice).

    Attributes
    ----------
    path : Path of the ONNX file; ``input_name``; ``output_names``; ``input_shape`` (``None`` for
    dynamic dims); ``metadata`` (dict, see :func:`read_metadata`).

    Raises
    ------
    InputError
        When the path is not a model or onnxruntime cannot load it.
    """

    def __init__(self, path, threads: int | None = None) -> None:
        import onnxruntime as ort  # deferred: importing this module stays cheap

        self.path = resolve_model(path)
        options = ort.SessionOptions()
        if threads is not None:
            if int(threads) < 1:
                raise ValueError(f"Argument `threads` must be a positive integer. Received: threads={threads}")
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(os.fspath(self.path), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes for corrupt/invalid graphs
            raise InputError(f"{self.path}: onnxruntime cannot load this model ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"{self.path}: expected a model with one input 'image'. "
                             f"Received inputs {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.input_shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = read_metadata(self.session.get_modelmeta().custom_metadata_map)

    @property
    def output_name(self) -> str:
        """The output :meth:`predict` returns: ``probabilities`` or ``mask`` if present, else the first."""
        for name in ("probabilities", "mask"):
            if name in self.output_names:
                return name
        return self.output_names[0]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        fixed = self.input_shape[0] if self.input_shape else None
        if fixed and batch.shape[0] != fixed:  # a graph exported with a fixed batch size
            parts = [self._run(batch[i:i + fixed]) if len(batch[i:i + fixed]) == fixed
                     else self._run_padded(batch[i:i + fixed], fixed) for i in range(0, len(batch), fixed)]
            return np.concatenate(parts)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def _run_padded(self, batch: np.ndarray, size: int) -> np.ndarray:
        pad = np.zeros((size - len(batch),) + batch.shape[1:], batch.dtype)
        return self.session.run([self.output_name], {self.input_name: np.concatenate([batch, pad])})[0][:len(batch)]

    def _check(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        want = self.input_shape
        if want and (batch.ndim != len(want) or any(w is not None and w != g for w, g in zip(want[1:], batch.shape[1:]))):
            shown = ["N" if w is None else w for w in want]
            raise InputError(f"{self.path}: input '{self.input_name}' expects shape {shown}. "
                             f"Received: shape={list(batch.shape)}")
        return batch

    def predict_batches(self, images, batch_size: int = 32) -> Iterator[np.ndarray]:
        """Yield the model output batch by batch (streaming; nothing is held beyond one batch).

        Parameters
        ----------
        images : np.ndarray (N, H, W, C) or iterable of arrays
            An iterable may yield single images (H, W, C) or batches (n, H, W, C); they are
            re-batched to ``batch_size``.
        batch_size : int
        """
        if int(batch_size) < 1:
            raise ValueError(f"Argument `batch_size` must be a positive integer. Received: batch_size={batch_size}")
        if isinstance(images, np.ndarray):
            for i in range(0, len(images), batch_size):
                yield self._run(self._check(images[i:i + batch_size]))
            return
        rank = len(self.input_shape) if self.input_shape else 4
        pending: list[np.ndarray] = []
        count = 0
        for item in images:
            arr = np.asarray(item, dtype=np.float32)
            arr = arr[None] if arr.ndim == rank - 1 else arr
            pending.append(arr)
            count += len(arr)
            while count >= batch_size:
                stacked = np.concatenate(pending)
                yield self._run(self._check(stacked[:batch_size]))
                rest = stacked[batch_size:]
                pending, count = ([rest] if len(rest) else []), len(rest)
        if count:
            yield self._run(self._check(np.concatenate(pending)))

    def predict(self, images: np.ndarray | Iterable, batch_size: int = 32) -> np.ndarray:
        """Model output for every image, concatenated along the batch axis.

        Parameters
        ----------
        images : np.ndarray (N, H, W, C) float in [0, 1], or an iterable (see :meth:`predict_batches`)
        batch_size : int

        Returns
        -------
        np.ndarray: probabilities (N, n_classes) for classifiers, masks (N, H, W, 1) for segmenters.

        Raises
        ------
        InputError
            When the images do not have the model's input shape.
        """
        parts = list(self.predict_batches(images, batch_size))
        if not parts:
            out = next(o for o in self.session.get_outputs() if o.name == self.output_name)
            shape = [0] + [d if isinstance(d, int) else 0 for d in out.shape[1:]]
            return np.zeros(shape, np.float32)
        return np.concatenate(parts)
