"""A 2D model given a volume dataset: a clear error, not a traceback (issue 16)."""

import pytest

from medzoo.errors import InputError


def test_train_2d_model_on_fixed_grid_volumes_says_what_is_wrong(tmp_path):
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.training.fit import train

    write_synthetic(tmp_path / "dicom", patients=6, size=16, slices=4, seed=1)
    rows = (tmp_path / "dicom" / "labels.csv").read_text().splitlines()
    series = {}
    for line in rows[1:]:  # one row per series folder (masks are 2D only)
        path, label, _ = line.split(",")
        series.setdefault(path.split("/")[0], label)
    (tmp_path / "dicom" / "series.csv").write_text(
        "path,label\n" + "".join(f"{p},{lab}\n" for p, lab in series.items()))
    ingest(tmp_path / "dicom", tmp_path / "dicom" / "series.csv", tmp_path / "ds", size=16,
           volumes="4,16,16", folds=3, key_file=tmp_path / "key")
    with pytest.raises(InputError, match=r"a volume dataset \(image_size \[4, 16, 16\]"):
        train("cnn", tmp_path / "ds", tmp_path / "run", epochs=1, batch_size=2, verbose=0)
    assert not (tmp_path / "run" / "model.keras").exists()
