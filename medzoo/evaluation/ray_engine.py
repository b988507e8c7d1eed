"""``medzoo evaluate --engine ray``: onnxruntime mapped over a dataset's shards with Ray Data.

Every TFRecord shard is one unit of work: a Ray task opens an onnxruntime session, reads the
shard's selected records and scores them with the same code as the local engine (:func:`medzoo.evaluation.evaluate.predict_records`). The driver puts the shards back in
order, so predictions (and therefore metrics) are the ones the local engine computes.

Ray is an optional extra (``pip install 'medzoo[ray]'``) imported only when this engine runs.
On a cluster (``--address``), the model file and the dataset dir must be readable at the same
paths on every node (a shared file system), because workers open them by path.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from medzoo.errors import InputError

__all__ = ["predict_records_ray", "connect"]

FIELDS = ("record_id", "label", "labels", "output", "dice", "iou", "hausdorff95_px")


def connect(address: str | None = None):
    """The ``ray`` module, connected to ``address`` (None: a running local instance or a new one).

    Raises
    ------
    InputError
        Ray is not installed, or the cluster at ``address`` cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs the optional Ray extra: pip install 'medzoo[ray]'. "
                         "Received: no module named 'ray'") from None
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a new local instance"
            raise InputError(f"--address: cannot connect Ray to {where} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                             ) from None
    return ray


def _check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) where nothing answers, at once.

    ``ray.init`` would wait for such a cluster for many minutes instead of failing.
    """
    if not address or address in ("auto", "local"):
        return
    body = address.split("://", 1)[1] if "://" in address else address
    host, _, port = body.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address must look like host:port or ray://host:port "
                         f"(e.g. ray://head:10001). Received: {address!r}")
    import socket

    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InputError(f"--address: cannot connect Ray to {address} "
                         f"({exc.strerror or type(exc).__name__})") from None


def _pack(raw: dict) -> bytes:
    """One shard's predictions as an ``.npz`` (numbers and strings only: loads without pickle)."""
    arrays = {"record_id": np.array(raw["record_id"], dtype=str),
              "label": np.array(raw["label"], dtype=np.int64),
              "output": np.array(raw["output"], dtype=np.float64),
              "labels": np.array(raw["labels"], dtype=np.int64)}
    for name in ("dice", "iou", "hausdorff95_px"):
        arrays[name] = np.array(raw[name], dtype=np.float64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: list(npz[name]) for name in FIELDS}


def _shard_records(shard: str, wanted: set):
    from medzoo.datasets.records import decode_example, iter_tfrecord, parse_record

    for data in iter_tfrecord(shard):
        features = decode_example(data)
        if features["record_id"][0].decode() in wanted:
            yield parse_record(features)


def score_shards(batch: dict, *, model_path: str, wanted: list[str], task: str, batch_size: int,
                 threads: int | None) -> dict:
    """A Ray Data task: score the selected records of each shard in ``batch`` with onnxruntime.

    Tasks rather than actors: Ray reuses its worker processes from one evaluate call to the next,
    and one session per shard (up to 1024 images) costs little next to scoring them.
    """
    from medzoo.evaluation.evaluate import predict_records
    from medzoo.evaluation.runtime import OnnxModel

    model, selected = OnnxModel(model_path, threads=threads), set(wanted)
    payloads, errors = [], []
    for shard in batch["shard"]:
        try:
            raw = predict_records(model, _shard_records(str(shard), selected), task=task,
                                  batch_size=batch_size)
            payloads.append(_pack(raw))
            errors.append("")
        except InputError as exc:  # a damaged shard: reported by the driver, in one line
            payloads.append(b"")
            errors.append(str(exc))
    return {"order": np.asarray(batch["order"]), "payload": np.array(payloads, dtype=object),
            "error": np.array(errors, dtype=object)}


def predict_records_ray(model_path, ds_dir, record_ids, *, task: str, batch_size: int = 32,
                        threads: int | None = None, address: str | None = None,
                        progress: Callable[[int], None] | None = None) -> dict:
    """What :func:`medzoo.evaluation.evaluate.predict_records` returns, computed on Ray.

    Parameters
    ----------
    model_path : the ``.onnx`` file (:func:`medzoo.evaluation.runtime.resolve_model`)
    ds_dir : dataset dir; its ``shards/*.tfrecord`` are the units of work
    record_ids : the records to score (any order; results come in stored order)
    task, batch_size, threads : as for the local engine
    address : Ray cluster address (``ray://host:10001`` or ``host:6379``); None → the running
        instance or a new local one
    progress : callable(n_done), optional

    Returns
    -------
    dict of lists, in the dataset's stored order (the local engine's order).

    Raises
    ------
    InputError
        Ray missing or unreachable, or a shard that cannot be read (its path and the reason).
    """
    from medzoo.datasets.records import shard_paths

    ray = connect(address)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-run execution plans on stdout
    shards = [os.fspath(Path(p).resolve()) for p in shard_paths(ds_dir)]
    raw: dict = {name: [] for name in FIELDS}
    if not shards:
        return raw
    items = ray.data.from_items([{"shard": s, "order": i} for i, s in enumerate(shards)],
                                override_num_blocks=len(shards))
    scored = items.map_batches(
        score_shards, batch_size=1, batch_format="numpy", num_cpus=1,
        fn_kwargs={"model_path": os.fspath(Path(model_path).resolve()),
                   "wanted": sorted(map(str, record_ids)), "task": task,
                   "batch_size": int(batch_size), "threads": threads})
    parts = {}
    for row in scored.iter_rows():
        if row["error"]:
            raise InputError(str(row["error"]))
        parts[int(row["order"])] = _unpack(row["payload"])
        if progress:
            progress(sum(len(p["record_id"]) for p in parts.values()))
    for order in sorted(parts):
        for name in FIELDS:
            raw[name].extend(parts[order][name])
    raw["record_id"] = [str(r) for r in raw["record_id"]]
    raw["label"] = [int(v) for v in raw["label"]]
    if task != "classification":
        raw["output"] = [float(v) for v in raw["output"]]
    return raw
