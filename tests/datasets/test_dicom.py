import numpy as np
import pydicom
import pytest
import tensorflow as tf

from medzoo.datasets.dicom import (DicomRejected, invert, read_dicom, read_modality_values,
                                   resize_bilinear, window_linear, window_min_max)


def test_window_linear_follows_c11_2_1_2():
    x = np.array([-1400.0, -600.5, -600.0, 149.0, 1000.0])
    y = window_linear(x, -600, 1500)
    expected = np.clip((x - (-600 - 0.5)) / (1500 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(y, expected, atol=1e-7)
    assert y[0] == 0.0 and y[-1] == 1.0
    np.testing.assert_array_equal(window_linear(np.array([9.0, 9.5, 10.0]), 10, 1), [0, 0, 1])
    with pytest.raises(ValueError, match="width=0"):
        window_linear(x, 0, 0)


def test_min_max_window_and_invert():
    x = np.array([3.0, 10.0, 17.0])
    c, w = window_min_max(x)
    np.testing.assert_allclose(window_linear(x, c, w), [0.0, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(invert(np.array([0.0, 0.25, 1.0])), [1.0, 0.75, 0.0])


@pytest.mark.parametrize("shape,size", [((48, 48), (32, 32)), ((32, 32), (64, 64)),
                                        ((37, 53, 3), (20, 31)), ((5, 7, 1), (12, 3)),
                                        ((64, 64), (64, 64))])
def test_numpy_resize_equals_tf_image_resize(shape, size):
    img = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    ours = resize_bilinear(img, size)
    ref = tf.image.resize(img if img.ndim == 3 else img[..., None], size, "bilinear").numpy()
    ref = ref if img.ndim == 3 else ref[..., 0]
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_read_dicom_uses_the_first_file_window(synth_ct):
    root, _ = synth_ct
    path = next(root.glob("*/IM0002.dcm"))
    img = read_dicom(path)
    assert (img.window_center, img.window_width) == (-600.0, 1500.0)  # first of [-600, 40]
    hu = read_modality_values(path)[0]
    np.testing.assert_allclose(img.frames[0], window_linear(hu, -600, 1500), atol=1e-6)
    soft = read_dicom(path, window=(40, 400))
    np.testing.assert_allclose(soft.frames[0], window_linear(hu, 40, 400), atol=1e-6)
    assert img.frames.dtype == np.float32 and img.frames.shape == (1, 48, 48)


def test_monochrome1_is_inverted(tmp_path):
    from medzoo.datasets.synth import write_synthetic

    write_synthetic(tmp_path, patients=2, modality="cr", size=32, slices=1)
    path = next(tmp_path.glob("*/IM0001.dcm"))
    img = read_dicom(path)
    stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
    np.testing.assert_allclose(img.frames[0], 1 - window_linear(stored, 2048, 4096), atol=1e-6)
    # displayed as MONOCHROME2 would be: lungs dark, mediastinum (soft tissue) brighter
    lung, tissue = img.frames[0][16, 10], img.frames[0][16, 16]
    assert abs(lung - 0.22) < 0.05 and abs(tissue - 0.586) < 0.05


def test_refuses_absurd_sizes_and_missing_pixels_before_decoding(tmp_path, synth_ct):
    root, _ = synth_ct
    ds = pydicom.dcmread(next(root.glob("*/IM0001.dcm")))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 100
    ds.save_as(tmp_path / "huge.dcm")
    with pytest.raises(DicomRejected, match="image too large"):
        read_dicom(tmp_path / "huge.dcm")
    ds = pydicom.dcmread(next(root.glob("*/IM0001.dcm")))
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(DicomRejected, match="no pixel data"):
        read_dicom(tmp_path / "nopix.dcm")
    (tmp_path / "text.dcm").write_text("not a dicom file\n" * 20)
    with pytest.raises(DicomRejected, match="not DICOM"):
        read_dicom(tmp_path / "text.dcm")


def _comparable(value):
    """A value with pydicom's types (MultiValue, DSfloat, IS, UID) reduced to plain ones."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return ["list", [_comparable(v) for v in value]]
    if isinstance(value, float) and value != value:
        return ["nan"]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return [kind.__name__, kind(value)]
    return ["other", value]


def test_header_values_equal_pydicom_for_every_corpus_element(synth_ct):
    """The pixel chain reads header values through a cache that converts plain numbers and
    ASCII strings itself: every top-level element of every file pydicom ships (and of a
    synthetic CT) must come out as pydicom's own value."""
    import warnings

    from pydicom.data import get_testdata_files

    from medzoo.datasets.dicom import _ABSENT, _element_key, _Header, _plain_value

    root, _ = synth_ct
    files = list(get_testdata_files()) + sorted(str(p) for p in root.glob("*/*.dcm"))[:4]
    compared = converted = 0
    differ = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            try:
                ours, theirs = (pydicom.dcmread(path, force=True) for _ in range(2))
            except Exception:  # the corpus holds deliberately broken files
                continue
            header = _Header(ours)
            for elem in theirs:
                keyword = elem.keyword
                try:
                    expected = theirs.get(keyword) if keyword else None
                except Exception:
                    continue
                if not keyword:
                    continue
                raw = ours.get_item(elem.tag, keep_deferred=True)
                converted += _plain_value(raw, _element_key(keyword)[1]) is not _ABSENT
                compared += 1
                if _comparable(header.get(keyword)) != _comparable(expected):
                    differ.append((path.rsplit("/", 1)[-1], keyword))
    assert compared > 5000 and converted > compared / 2  # most of them by the fast path
    assert differ == []
    header = _Header(pydicom.dcmread(files[-1]))
    assert "PixelData" in header and "VOILUTSequence" not in header
    assert header.get("VOILUTSequence", "none") == "none" and header.Rows == header.get("Rows")
    with pytest.raises(AttributeError):
        header.VOILUTSequence
