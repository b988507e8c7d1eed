"""Tiny real inputs for evaluation tests: ONNX graphs built with onnx.helper (no TensorFlow) and
dataset dirs written with the datasets package's own pure-python shard writer."""

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

SIZE = 16


def write_onnx(path, task="classification", metadata=None, n_classes=2, size=SIZE, batch=None):
    """A classifier whose P(class 1) is the image maximum, or a segmenter sigmoid(20·(x − 0.5))."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch or "N", size, size, 1])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    if task == "classification":
        one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
        shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])
        nodes = [helper.make_node("ReduceMax", ["image"], ["m4"], axes=[1, 2, 3], keepdims=1),
                 helper.make_node("Reshape", ["m4", "shape"], ["m"]),
                 helper.make_node("Sub", ["one", "m"], ["not_m"])]
        if n_classes == 2:
            nodes.append(helper.make_node("Concat", ["not_m", "m"], ["probabilities"], axis=1))
        else:  # extra classes share the "not max" mass: softmax-free but rows sum to 1
            parts = ["not_m", "m"] + ["not_m"] * (n_classes - 2)
            nodes += [helper.make_node("Concat", parts, ["raw"], axis=1),
                      helper.make_node("ReduceSum", ["raw", "axis1"], ["tot"], keepdims=1),
                      helper.make_node("Div", ["raw", "tot"], ["probabilities"])]
        out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch or "N", n_classes])
        inits = [one, shape, helper.make_tensor("axis1", TensorProto.INT64, [1], [1])]
    else:
        k = helper.make_tensor("k", TensorProto.FLOAT, [], [20.0])
        nodes = [helper.make_node("Sub", ["image", "half"], ["c"]),
                 helper.make_node("Mul", ["c", "k"], ["z"]),
                 helper.make_node("Sigmoid", ["z"], ["mask"])]
        out = helper.make_tensor_value_info("mask", TensorProto.FLOAT, [batch or "N", size, size, 1])
        inits = [half, k]
    graph = helper.make_graph(nodes, "tiny", [image], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"task": task, "classes": ["normal", "lesion"], "image_size": [size, size], "test_fold": 0,
            "folds": 3, "seed": 0, "model": f"tiny-{task[:3]}"}
    meta.update(metadata or {})
    helper.set_model_props(model, {f"medzoo.{k}": json.dumps(v) for k, v in meta.items() if v is not None})
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def write_dataset(ds_dir, patients=18, slices=2, folds=3, seed=0, size=SIZE, rng_seed=0, with_mask=True):
    """A dataset dir: lesion images hold a bright square (mask) of varying brightness."""
    from medzoo.datasets.records import ShardWriter, record_features

    rng = np.random.default_rng(rng_seed)
    ds_dir = Path(ds_dir)
    index, truth = [], {}
    with ShardWriter(ds_dir / "shards", records_per_shard=10) as writer:
        for p in range(patients):
            label = p % 2
            fold = p % folds
            for s in range(slices):
                rid = f"r{p * slices + s:06d}"
                image = rng.uniform(0.0, 0.45, (size, size, 1)).astype(np.float32)
                mask = np.zeros((size, size), np.uint8)
                if label:
                    r, c = rng.integers(2, size - 7, 2)
                    mask[r:r + 5, c:c + 5] = 1
                    image[mask == 1, 0] = rng.uniform(0.4, 1.0)  # faint lesions: imperfect AUC
                writer.write(record_features(rid, image, label, mask if with_mask else None))
                truth[rid] = (image, label, mask)
                index.append({"record_id": rid, "row": len(index) + 1, "frame": s, "patient": f"p{p:03d}",
                              "study": f"s{p:03d}", "series": f"e{p:03d}", "label": label, "fold": fold,
                              "modality": "CT", "window_center": 40.0, "window_width": 400.0,
                              "photometric": "MONOCHROME2", "has_mask": int(with_mask)})
    with open(ds_dir / "index.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(index[0]))
        w.writeheader()
        w.writerows(index)
    info = {"schema_version": 1, "task": "classification", "image_size": [size, size], "channels": 1,
            "classes": ["normal", "lesion"], "has_mask": with_mask, "window": "auto", "folds": folds,
            "seed": seed, "counts": {"records": len(index), "patients": patients}}
    (ds_dir / "dataset.json").write_text(json.dumps(info))
    return ds_dir, index, truth


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "ds")
