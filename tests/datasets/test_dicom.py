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
