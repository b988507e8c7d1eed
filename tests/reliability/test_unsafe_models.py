"""Model files that could run code are refused; the package never deserialises unsafely."""

import json
import re
import tokenize
import zipfile
from pathlib import Path

import pytest

from medzoo.errors import InputError
from medzoo.zoo import saving

from conftest import ROOT, error_lines, medzoo


def _lambda_model(path: Path) -> Path:
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, outputs).save(path)
    return path


def _unknown_class_model(path: Path) -> Path:
    """A real .keras archive whose config names a class nobody registered."""
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))
    model.save(path.with_suffix(".tmp.keras"))
    with zipfile.ZipFile(path.with_suffix(".tmp.keras")) as src, \
            zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                layer = next(la for la in config["config"]["layers"] if la["name"] == "head")
                layer.update(class_name="EvilLayer", module="evil.payload",
                             registered_name="evil>EvilLayer")
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    path.with_suffix(".tmp.keras").unlink()
    return path


def test_a_lambda_layer_is_refused_with_a_clear_message(tmp_path):
    path = _lambda_model(tmp_path / "lambda.keras")
    with pytest.raises(InputError) as info:
        saving.load_model(path)
    message = str(info.value)
    assert str(path) in message and "refused to load" in message
    assert "lambda" in message.lower() and "\n" not in message


def test_an_unknown_class_is_refused_with_a_clear_message(tmp_path):
    path = _unknown_class_model(tmp_path / "unknown.keras")
    with pytest.raises(InputError) as info:
        saving.load_model(path)
    message = str(info.value)
    assert str(path) in message and "refused to load" in message
    assert "EvilLayer" in message and "\n" not in message


def test_export_of_a_run_holding_a_lambda_model_exits_2_with_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _lambda_model(run / "model.keras")
    (run / "config.json").write_text(json.dumps({
        "model": "cnn", "task": "classification", "input_shape": [4], "classes": ["a", "b"],
        "data": {"dir": str(tmp_path / "no-ds"), "fingerprint": "0"}, "folds": 2,
        "split_seed": 0, "test_fold": 0, "val_fold": 1}))
    result = medzoo("export", run, "--out", tmp_path / "models")
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("medzoo export: error:"), result.stderr
    assert "model.keras" in lines[0] and "lambda" in lines[0].lower()
    assert not (tmp_path / "models").exists()


_FORBIDDEN_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "joblib"}


def _code_tokens(path: Path):
    """Tokens of a Python file without comments and string literals (docstrings included)."""
    with open(path, "rb") as fh:
        return [t for t in tokenize.tokenize(fh.readline)
                if t.type in (tokenize.NAME, tokenize.OP)]


def test_the_package_never_deserialises_unsafely():
    offences = []
    files = sorted((ROOT / "medzoo").rglob("*.py"))
    assert len(files) > 20
    for path in files:
        toks = _code_tokens(path)
        for i, tok in enumerate(toks):
            prev = toks[i - 1].string if i else ""
            after = [t.string for t in toks[i + 1:i + 3]]
            where = f"{path.relative_to(ROOT)}:{tok.start[0]}"
            if tok.type == tokenize.NAME and tok.string in _FORBIDDEN_MODULES:
                offences.append(f"{where} uses {tok.string}")
            if tok.string in ("eval", "exec") and prev != "." and after[:1] == ["("]:
                offences.append(f"{where} calls {tok.string}()")
            if tok.string == "allow_pickle" and after == ["=", "True"]:
                offences.append(f"{where} allow_pickle=True")
            if tok.string == "safe_mode" and after == ["=", "False"]:
                offences.append(f"{where} safe_mode=False")
            if tok.string in ("enable_unsafe_deserialization", "unsafe_load", "full_load"):
                offences.append(f"{where} {tok.string}")
    assert offences == []
    # and the one place that loads .keras files asks for safe mode
    source = (ROOT / "medzoo" / "zoo" / "saving.py").read_text()
    assert re.search(r"load_model\([^)]*safe_mode=True", source)
