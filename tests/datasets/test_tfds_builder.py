"""The TFDS builder yields what ingest writes (same reading code)."""

import numpy as np
import pytest

from medzoo.datasets.ingest import ingest
from medzoo.datasets.records import read_records
from medzoo.datasets.synth import write_synthetic

tfds = pytest.importorskip("tensorflow_datasets",
                           reason="tensorflow-datasets is not installed (requirements.txt pins it)")


def test_tfds_build_equals_ingest(tmp_path, key_file):
    from medzoo.datasets.tfds_builder import MedzooDicom

    src = tmp_path / "src"
    write_synthetic(src, patients=4, size=32, slices=2, seed=6)
    (src / "bad.dcm").write_text("not DICOM")
    with open(src / "labels.csv", "a") as fh:
        fh.write("bad.dcm,normal,\n")
    result = ingest(src, src / "labels.csv", tmp_path / "DS", size=16, folds=2,
                    key_file=key_file, progress=False)
    assert result["records"] == 8 and result["rejected"] == 1
    builder = MedzooDicom(manual_dir=src, size=16, data_dir=tmp_path / "tfds")
    builder.download_and_prepare()
    assert builder.info.features["label"].names == ["normal", "lesion"]
    got = list(builder.as_dataset(split="train").as_numpy_iterator())
    expected = list(read_records(tmp_path / "DS"))
    assert [g["record_id"].decode() for g in got] == [e["record_id"] for e in expected]
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g["image"], e["image"])
        assert g["label"] == e["label"]
        np.testing.assert_array_equal(g["mask"], e["mask"])
