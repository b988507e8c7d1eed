"""OnnxModel and resolve_model on real onnxruntime sessions over tiny onnx.helper graphs."""

import subprocess
import sys

import numpy as np
import pytest

from medzoo.errors import InputError
from medzoo.evaluation.runtime import OnnxModel, resolve_model

from .conftest import SIZE, write_onnx


def _images(n, seed=0):
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 1)).astype(np.float32)


def test_predict_matches_numpy_and_batches(tmp_path):
    model = OnnxModel(write_onnx(tmp_path / "m.onnx"), threads=1)
    x = _images(37)
    expected = x.reshape(37, -1).max(1)
    for bs in (1, 8, 64):
        p = model.predict(x, batch_size=bs)
        assert p.shape == (37, 2)
        np.testing.assert_allclose(p[:, 1], expected, rtol=1e-6)
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    # an iterator of single images and of uneven chunks give the same result
    np.testing.assert_allclose(model.predict(iter(list(x)), batch_size=10), model.predict(x))
    np.testing.assert_allclose(model.predict(iter([x[:5], x[5:6], x[6:]]), batch_size=4), model.predict(x))
    assert model.predict(np.zeros((0, SIZE, SIZE, 1), np.float32)).shape == (0, 2)


def test_metadata_and_names(tmp_path):
    model = OnnxModel(write_onnx(tmp_path / "m.onnx", task="segmentation"))
    assert model.input_name == "image"
    assert model.output_name == "mask"
    assert model.metadata == {"task": "segmentation", "classes": ["normal", "lesion"],
                              "image_size": [SIZE, SIZE], "test_fold": 0, "folds": 3, "seed": 0,
                              "model": "tiny-seg"}
    out = model.predict(_images(3))
    assert out.shape == (3, SIZE, SIZE, 1)


def test_fixed_batch_graph_is_padded(tmp_path):
    model = OnnxModel(write_onnx(tmp_path / "fixed.onnx", batch=4))
    x = _images(7)
    np.testing.assert_allclose(model.predict(x, batch_size=32)[:, 1], x.reshape(7, -1).max(1), rtol=1e-6)


def test_resolve_model(tmp_path):
    version = tmp_path / "base" / "cnn" / "1"
    onnx_file = write_onnx(version / "model.onnx")
    assert resolve_model(version) == onnx_file
    assert resolve_model(onnx_file) == onnx_file
    with pytest.raises(InputError, match="no model.onnx"):
        resolve_model(tmp_path / "base" / "cnn")
    with pytest.raises(InputError, match="no such file"):
        resolve_model(tmp_path / "missing.onnx")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"expected a \.onnx file"):
        resolve_model(tmp_path / "notes.txt")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="cannot load"):
        OnnxModel(tmp_path / "broken.onnx")


def test_wrong_image_shape_is_a_clear_error(tmp_path):
    model = OnnxModel(write_onnx(tmp_path / "m.onnx"))
    with pytest.raises(InputError, match=r"expects shape \['N', 16, 16, 1\]. Received: shape=\[2, 8, 8, 1\]"):
        model.predict(np.zeros((2, 8, 8, 1), np.float32))


def test_evaluation_modules_never_import_tensorflow():
    code = ("import medzoo.evaluation.runtime, medzoo.evaluation.metrics, medzoo.evaluation.stats, "
            "medzoo.evaluation.charts, medzoo.evaluation.evaluate, medzoo.evaluation.report; import sys; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_evaluate_and_report_run_with_tensorflow_unimportable(tmp_path):
    """A deployment box without TensorFlow: evaluate several pairs, chart and report them."""
    from .conftest import write_dataset

    ds, _, _ = write_dataset(tmp_path / "ds", patients=6)
    model = write_onnx(tmp_path / "m.onnx")
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "from medzoo.evaluation.evaluate import evaluate_many\n"
            "from medzoo.evaluation.report import write_report\n"
            f"r = evaluate_many([{str(model)!r}], [{str(ds)!r}, {str(ds)!r}], {str(tmp_path / 'e')!r}, n_boot=20)\n"
            "assert r['evaluated'] == 2, r\n"
            f"write_report({str(tmp_path / 'e')!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "e" / "report.html").exists() and (tmp_path / "e" / "m" / "ds" / "roc.png").exists()
