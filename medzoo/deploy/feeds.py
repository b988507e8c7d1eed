"""One DICOM file → what an export's raw serving signature takes (``model_raw.onnx`` /
``serving_default``): the stored pixels plus rescale slope/intercept, the window chosen exactly as
ingest chose it for the training images (:func:`medzoo.datasets.dicom.choose_window`: a fixed
training window wins, else the file's first VOI window, else the modality preset, else min–max of
the image) and a MONOCHROME1 flag; and back, one frame of those feeds → the grey image the model
saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medzoo.datasets import dicom

__all__ = ["raw_feeds", "read_raw_feeds", "display"]

_INT32_MAX = np.iinfo(np.int32).max
_INT32_MIN = np.iinfo(np.int32).min


def raw_feeds(path: Path, window, colour_as_grey: bool = False) -> dict:
    """What ``serving_default`` takes for every frame of one DICOM file.

    Returns
    -------
    dict
        ``pixels`` int32 (frames, rows, cols) — the stored values — and float32 (frames,)
        ``rescale_slope``, ``rescale_intercept``, ``window_center``, ``window_width``, ``invert``.

    Raises
    ------
    medzoo.datasets.dicom.DicomRejected
        Unreadable or undecodable files (as ingest), and what the raw signature cannot take:
        colour images (unless ``colour_as_grey``: their luma, in 1/256 steps, for series
        scored with ``--allow-out-of-domain``), float pixel data, a non-linear Modality LUT,
        values beyond int32.
    """
    with dicom.pydicom_quiet():
        ds = dicom.read_dataset(path)
        dicom.check_header(ds)
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1 and colour_as_grey:
            return _colour_as_grey(ds, path)
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise dicom.DicomRejected("colour image (the raw serving signature takes monochrome "
                                      "stored pixels)")
        if "PixelData" not in ds:
            raise dicom.DicomRejected("float pixel data (the raw serving signature takes integer "
                                      "stored pixels)")
        arr = dicom.decode_pixels(ds)
        source = dicom.rescale_source(ds)
        if "ModalityLUTSequence" in source:
            raise dicom.DicomRejected("non-linear Modality LUT (the raw serving signature takes "
                                      "rescale slope and intercept)")
        if "RescaleSlope" in source and "RescaleIntercept" in source:
            try:
                slope, intercept = float(source.RescaleSlope), float(source.RescaleIntercept)
            except (TypeError, ValueError):
                raise dicom.DicomRejected("invalid rescale slope or intercept")
        else:  # pydicom's apply_modality_lut (and so ingest) rescales only when both are present
            slope, intercept = 1.0, 0.0
        try:
            values = dicom.modality_values(ds, arr)
        except Exception:
            raise dicom.DicomRejected("cannot decode")
        center, width = dicom.choose_window(ds, values, window)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if not np.issubdtype(arr.dtype, np.integer):
        raise dicom.DicomRejected("float pixel data (the raw serving signature takes integer "
                                  "stored pixels)")
    pixels = arr.reshape(values.shape)  # (frames, rows, cols)
    if arr.size and (int(arr.max()) > _INT32_MAX or int(arr.min()) < _INT32_MIN):
        raise dicom.DicomRejected("stored values beyond the int32 range")
    n = pixels.shape[0]
    return {"pixels": pixels.astype(np.int32, copy=False),
            "rescale_slope": np.full(n, slope, np.float32),
            "rescale_intercept": np.full(n, intercept, np.float32),
            "window_center": np.full(n, center, np.float32),
            "window_width": np.full(n, width, np.float32),
            "invert": np.full(n, float(photometric == "MONOCHROME1"), np.float32)}


def read_raw_feeds(path: Path, window, colour_as_grey: bool = False) -> dict | str:
    """:func:`raw_feeds`, or the reason ``path`` cannot be used (``image too large to decode``,
    ``cannot decode``, or the reason the reader gives): one short, PHI-free line."""
    try:
        return raw_feeds(path, window, colour_as_grey=colour_as_grey)
    except dicom.DicomRejected as exc:
        return exc.reason
    except MemoryError:
        return "image too large to decode"
    except Exception:
        return "cannot decode"


def _colour_as_grey(ds, path: Path) -> dict:
    """A colour object's luma as the raw signature's inputs: stored values of 1/256 of a grey
    level (slope 1/256) and the full-range window ingest gives colour images."""
    rgb = dicom.read_modality_values(path)  # (frames, rows, cols, 3): no LUT for colour
    luma = np.rint(dicom.to_grey(rgb) * 256.0).astype(np.int32)
    center, width = dicom.choose_window(ds, rgb, "auto")
    n = luma.shape[0]
    return {"pixels": luma, "rescale_slope": np.full(n, 1.0 / 256.0, np.float32),
            "rescale_intercept": np.zeros(n, np.float32),
            "window_center": np.full(n, center, np.float32),
            "window_width": np.full(n, width, np.float32), "invert": np.zeros(n, np.float32)}


def display(frame: dict) -> np.ndarray:
    """One frame's stored pixels → the windowed grey image in [0, 1] that the model saw."""
    values = (frame["pixels"][0].astype(np.float64) * float(frame["rescale_slope"][0])
              + float(frame["rescale_intercept"][0]))
    grey = dicom.window_linear(values, float(frame["window_center"][0]),
                               max(float(frame["window_width"][0]), 1.0))
    return 1.0 - grey if float(frame["invert"][0]) else grey
