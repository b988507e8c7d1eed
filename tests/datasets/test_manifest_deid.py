import os
import stat

import pytest

from medzoo.datasets.deid import key_fingerprint, load_or_create_key, pseudonym
from medzoo.datasets.manifest import order_classes, read_dataset_info, read_index, read_labels
from medzoo.errors import InputError


def test_class_order_puts_negatives_first():
    assert order_classes(["lesion", "normal"]) == ["normal", "lesion"]
    assert order_classes(["Positive", "Negative"]) == ["Negative", "Positive"]
    assert order_classes(["1", "0"]) == ["0", "1"]
    assert order_classes(["cat", "bird", "ant"]) == ["ant", "bird", "cat"]


@pytest.mark.parametrize("content,match", [
    (None, "Received: no such file"),
    ("file,class\na.dcm,x\n", "expected columns path,label.*Received: columns file,class"),
    ("path,label\n", "expected at least one data row. Received: none"),
    ("", "Received: columns \\(none\\)"),
])
def test_bad_labels_file(tmp_path, content, match):
    path = tmp_path / "labels.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=match):
        read_labels(path)


def test_labels_paths_are_relative_to_the_csv(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "labels.csv"
    path.write_text("path,label,mask\na.dcm,lesion,a.npy\nb.dcm,,\n")
    rows = read_labels(path)
    assert [(r.row, r.path, r.label, r.mask) for r in rows] == [
        (1, tmp_path / "sub" / "a.dcm", "lesion", tmp_path / "sub" / "a.npy"),
        (2, tmp_path / "sub" / "b.dcm", "", None)]


def test_not_a_dataset_dir(tmp_path):
    with pytest.raises(InputError, match="expected a dataset dir"):
        read_dataset_info(tmp_path)
    with pytest.raises(InputError, match="expected a dataset dir"):
        read_index(tmp_path)


def test_key_is_created_private_and_stable(tmp_path, monkeypatch):
    key_path = tmp_path / "cfg" / "k.key"
    monkeypatch.setenv("MEDZOO_KEY_FILE", str(key_path))
    key = load_or_create_key()
    assert len(key) == 32 and stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert load_or_create_key() == key == load_or_create_key(key_path)
    assert len(key_fingerprint(key)) == 12
    p = pseudonym(key, "patient", "MZ-1")
    assert len(p) == 16 and p == pseudonym(key, "patient", "MZ-1")
    assert p != pseudonym(os.urandom(32), "patient", "MZ-1") and p != pseudonym(key, "study", "MZ-1")
    key_path.write_text("nope")
    with pytest.raises(InputError, match="64 hex characters"):
        load_or_create_key()
