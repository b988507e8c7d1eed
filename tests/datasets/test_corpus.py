"""pydicom's own test files: every one ingested or rejected with a reason."""

import csv
import os

import numpy as np
import pydicom
from pydicom.data import get_testdata_files

from pydicom.pixels import apply_modality_lut

from medzoo.datasets.dicom import (choose_window, invert, read_dicom, read_modality_values,
                                   window_linear)
from medzoo.datasets.ingest import ingest
from medzoo.datasets.manifest import expand_path, read_index


def test_pydicom_corpus_is_fully_accounted_for(tmp_path, key_file):
    root = tmp_path / "corpus"
    root.mkdir()
    rows = []
    for i, f in enumerate(get_testdata_files()):  # no pattern: never the network
        name = f"{i:03d}_{os.path.basename(f)}"
        os.symlink(f, root / name)
        rows.append((name, "b" if i % 2 else "a"))
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    n_files = sum(len(expand_path(root / name)) for name, _ in rows)
    result = ingest(root, root / "labels.csv", tmp_path / "DS", size=32, folds=2,
                    key_file=key_file, progress=False)
    assert result["inputs"] == n_files
    assert result["loaded"] + result["rejected"] == result["inputs"]
    assert result["loaded"] > 30
    with open(tmp_path / "DS" / "rejected.csv") as fh:
        rejected = list(csv.DictReader(fh))
    assert len(rejected) == result["rejected"] and all(r["reason"] for r in rejected)
    index = read_index(tmp_path / "DS")
    loaded_rows = {r["row"] for r in index}
    assert len(index) == result["records"] >= result["loaded"]
    reasons = {r["reason"].split(" 1.2")[0] for r in rejected}
    assert "not DICOM" in reasons and "no pixel data" in reasons

    # before windowing/resizing the values are pydicom's modality LUT output
    checked = 0
    for row, (name, _) in enumerate(rows, start=1):
        path = root / name
        if path.is_dir() or row not in loaded_rows:
            continue
        ds = pydicom.dcmread(path, force=True)
        if ds.get("SamplesPerPixel", 1) != 1 or int(ds.get("NumberOfFrames", 1) or 1) != 1:
            continue
        ref = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        ours = read_modality_values(path)[0]
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-4, err_msg=name)
        c, w = choose_window(ds, ours)
        y = window_linear(ref, c, w)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            y = invert(y)
        np.testing.assert_allclose(read_dicom(path).frames[0], y, atol=1e-6, err_msg=name)
        checked += 1
    assert checked >= 10
