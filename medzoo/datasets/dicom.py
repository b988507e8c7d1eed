"""Read one DICOM object and run the pixel chain (docs/internals.md).

decode → Modality LUT (rescale slope/intercept) → VOI window (linear, DICOM C.11.2.1.2)
→ MONOCHROME1 inverted (1 − y) → resize (bilinear, half-pixel centres, no antialias).

The pure steps (:func:`window_linear`, :func:`invert`, :func:`to_grey`, :func:`resize_bilinear`)
take and return numpy arrays and are separate from the I/O in :func:`read_dicom`. Nothing here
imports TensorFlow: this module runs in the ingest worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np

MAX_PIXEL_BYTES = 512 * 1024 * 1024
"""Refuse an object whose header promises more decoded pixel bytes than this."""

DEFER_BYTES = 1 << 20
"""Elements larger than this are read from disk only when used (after the size check)."""

WINDOW_PRESETS = {"CT": (40.0, 400.0)}
"""VOI windows used when a file has none (center, width); other modalities fall back to min–max."""


class DicomRejected(Exception):
    """A file that cannot enter a dataset; ``reason`` is a short phrase written to rejected.csv.

    The reason never holds PHI: it is built from fixed words and numbers only.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- pure functions


def window_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear VOI transform of DICOM PS3.3 C.11.2.1.2, output in [0, 1].

    Parameters
    ----------
    values : ndarray
        Modality values (after the Modality LUT).
    center, width : float
        Window center and width; ``width`` must be ≥ 1.

    Returns
    -------
    ndarray of float32
        ``clip((x − (c − 0.5)) / (w − 1) + 0.5, 0, 1)``; for ``w == 1`` a threshold at ``c − 0.5``.

    Raises
    ------
    ValueError
        When ``width < 1``.
    """
    if not width >= 1:
        raise ValueError(f"Window width must be >= 1. Received: width={width}")
    x = np.asarray(values)
    if width == 1:
        return (x > center - 0.5).astype(np.float32)
    # float32 throughout (the images are float32 anyway); float64 inputs keep their precision
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    y = np.subtract(x, dtype(center - 0.5), dtype=dtype)
    y /= dtype(width - 1)
    y += dtype(0.5)
    np.clip(y, 0.0, 1.0, out=y)
    return y.astype(np.float32, copy=False)


def window_min_max(values: np.ndarray) -> tuple[float, float]:
    """The (center, width) that maps the minimum of ``values`` to 0 and the maximum to 1."""
    lo = float(np.min(values))
    hi = float(np.max(values))
    return (lo + hi) / 2.0 + 0.5, (hi - lo) + 1.0


def invert(y: np.ndarray) -> np.ndarray:
    """MONOCHROME1 display: ``1 − y`` for an image windowed to [0, 1]."""
    return (1.0 - np.asarray(y, dtype=np.float32)).astype(np.float32)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601) of an ``(..., 3)`` RGB array, as float32 with the channel axis dropped."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)


def _interp_weights(in_size: int, out_size: int):
    scale = in_size / out_size
    centre = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    floor = np.floor(centre)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(centre), in_size - 1).astype(np.int64)
    lerp = (centre - floor).astype(np.float32)
    return lower, upper, lerp


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres and no antialiasing.

    Equal to ``tf.image.resize(image, size, "bilinear")`` (TensorFlow 2), in pure numpy.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, C)``.
    size : (int, int)
        Output ``(height, width)``.

    Returns
    -------
    ndarray of float32 with shape ``size`` (+ ``(C,)`` when the input had channels).
    """
    img = np.asarray(image, dtype=np.float32)
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"Resize size must be positive. Received: size={size}")
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    top, bottom, ylerp = _interp_weights(img.shape[0], out_h)
    left, right, xlerp = _interp_weights(img.shape[1], out_w)
    ylerp = ylerp[:, None, None]
    xlerp = xlerp[None, :, None]
    tl = img[top][:, left]
    tr = img[top][:, right]
    bl = img[bottom][:, left]
    br = img[bottom][:, right]
    top_row = tl + (tr - tl) * xlerp
    bottom_row = bl + (br - bl) * xlerp
    out = top_row + (bottom_row - top_row) * ylerp
    return out[:, :, 0] if squeeze else out


# --------------------------------------------------------------------------- I/O


@contextlib.contextmanager
def _quiet():
    """Silence pydicom's warnings: they quote element values, which may be PHI (UIDs, names)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclasses.dataclass
class DicomImage:
    """One decoded object: windowed frames in [0, 1] plus the metadata the index needs.

    Attributes hold identifiers (UIDs, PatientID) only in memory; callers pseudonymise them.
    """

    frames: np.ndarray  # (frames, rows, cols) float32 in [0, 1]
    modality: str
    photometric: str
    window_center: float
    window_width: float
    rows: int
    columns: int
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    slice_position: float | None
    instance_number: int | None


def _first(value):
    if value is None:
        return None
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        return value[0]
    except (TypeError, IndexError):
        return value


def _read_dataset(path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        size = Path(path).stat().st_size
    except OSError:
        raise DicomRejected("file not found")
    if size > 2 * MAX_PIXEL_BYTES:
        raise DicomRejected(f"file too large (expected at most {2 * MAX_PIXEL_BYTES} bytes, "
                            f"received {size} bytes)")
    try:
        # large values (the pixel data) stay on disk until check_header has passed
        return pydicom.dcmread(path, defer_size=DEFER_BYTES)
    except InvalidDicomError:
        pass
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        raise DicomRejected("truncated or unreadable")
    # No preamble: accept only what parses as an image dataset.
    try:
        ds = pydicom.dcmread(path, force=True, defer_size=DEFER_BYTES)
        ok = ("PixelData" in ds and "Rows" in ds) or ("SOPClassUID" in ds and "SOPInstanceUID" in ds)
    except Exception:
        ok = False
    if not ok:
        raise DicomRejected("not DICOM")
    return ds


def check_header(ds) -> None:
    """Refuse, before decoding, an object without pixels or one whose size is absurd.

    Raises
    ------
    DicomRejected
        ``no pixel data`` or ``image too large (…)``.
    """
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DicomRejected("no pixel data")
    try:
        rows = int(ds.Rows)
        cols = int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        raise DicomRejected("no pixel data (missing Rows, Columns or BitsAllocated)")
    nbytes = rows * cols * frames * samples * max(1, math.ceil(bits / 8))
    if rows < 1 or cols < 1 or frames < 1:
        raise DicomRejected(f"empty image (rows={rows}, columns={cols}, frames={frames})")
    if nbytes > MAX_PIXEL_BYTES:
        raise DicomRejected(
            f"image too large (expected at most {MAX_PIXEL_BYTES} decoded bytes, "
            f"received {rows}x{cols}x{frames} frames = {nbytes} bytes)"
        )


def _decode(ds) -> np.ndarray:
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    try:
        return ds.pixel_array
    except NotImplementedError:
        raise DicomRejected(f"unsupported transfer syntax {ts}".strip())
    except (RuntimeError, ValueError, AttributeError) as exc:
        msg = str(exc).lower()
        if "less than expected" in msg or "truncat" in msg or "length of the pixel data" in msg:
            raise DicomRejected("truncated pixel data")
        if "transfer syntax uid" in msg or "no pixel data decoders" in msg or "plugin" in msg \
                and "unable to decode" not in msg:
            raise DicomRejected(f"unsupported transfer syntax {ts}".strip())
        raise DicomRejected(f"cannot decode pixel data {ts}".strip())
    except Exception:
        raise DicomRejected(f"cannot decode pixel data {ts}".strip())


def _rescale_source(ds):
    """Dataset holding rescale values: the top level, else the shared functional groups."""
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        return ds
    try:
        item = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    except (AttributeError, IndexError, KeyError):
        return ds
    import pydicom

    src = pydicom.Dataset()
    for key in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        if key in item:
            setattr(src, key, item.get(key))
    return src


def modality_values(ds, arr: np.ndarray) -> np.ndarray:
    """Modality LUT of decoded pixels; ``(frames, rows, cols[, 3])`` float32 (no LUT for colour)."""
    from pydicom.pixels import apply_modality_lut

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 1:
        arr = apply_modality_lut(arr, _rescale_source(ds))
        if frames == 1 and arr.ndim == 2:
            arr = arr[None]
    elif frames == 1 and arr.ndim == 3:
        arr = arr[None]
    return np.asarray(arr, dtype=np.float32)


def read_modality_values(path) -> np.ndarray:
    """Decoded pixels after the Modality LUT, ``(frames, rows, cols[, 3])`` float32 (no VOI)."""
    with _quiet():
        ds = _read_dataset(path)
        check_header(ds)
        return modality_values(ds, _decode(ds))


def choose_window(ds, values: np.ndarray, window="auto") -> tuple[float, float]:
    """The VOI window to apply: the user's, else the file's first, else a preset, else min–max.

    Parameters
    ----------
    ds : pydicom.Dataset
    values : ndarray
        Modality values (used only for the min–max fallback).
    window : "auto" or (center, width)
    """
    if window != "auto" and window is not None:
        c, w = window
        return float(c), float(w)
    if int(ds.get("SamplesPerPixel", 1) or 1) == 3:
        bits = int(ds.get("BitsStored", 8) or 8)
        full = float(2**bits)
        return full / 2.0, full
    c = _first(ds.get("WindowCenter"))
    w = _first(ds.get("WindowWidth"))
    try:
        c, w = float(c), float(w)
        if w >= 1 and math.isfinite(c) and math.isfinite(w):
            return c, w
    except (TypeError, ValueError):
        pass
    preset = WINDOW_PRESETS.get(str(ds.get("Modality", "")).upper())
    if preset:
        return preset
    return window_min_max(values)


def _slice_position(ds) -> float | None:
    try:
        iop = [float(v) for v in ds.ImageOrientationPatient]
        ipp = [float(v) for v in ds.ImagePositionPatient]
    except (AttributeError, TypeError, ValueError):
        return None
    if len(iop) != 6 or len(ipp) != 3:
        return None
    normal = np.cross(iop[:3], iop[3:])
    return float(np.dot(normal, ipp))


def read_header(path):
    """Header only (no pixels): ``(series_uid, slice_position, instance_number)`` for sorting."""
    import pydicom

    with _quiet():
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        inst = ds.get("InstanceNumber")
        try:
            inst = int(inst)
        except (TypeError, ValueError):
            inst = None
        return str(ds.get("SeriesInstanceUID", "")), _slice_position(ds), inst


def read_dicom(path, window="auto") -> DicomImage:
    """Read one DICOM file through the pixel chain up to (not including) the resize.

    Parameters
    ----------
    path : path-like
        A DICOM file.
    window : "auto" or (center, width)
        "auto": the file's first WindowCenter/Width, else a modality preset, else min–max.

    Returns
    -------
    DicomImage
        ``frames`` is ``(n_frames, rows, cols)`` float32 in [0, 1] (RGB reduced to luma).

    Raises
    ------
    DicomRejected
        With a short reason: not DICOM, no pixel data, image too large, unsupported transfer
        syntax, truncated pixel data, cannot decode.
    """
    with _quiet():
        return _read_dicom(Path(path), window)


def _read_dicom(path: Path, window) -> DicomImage:
    ds = _read_dataset(path)
    check_header(ds)
    values = modality_values(ds, _decode(ds))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    center, width = choose_window(ds, values, window)
    if values.ndim == 4:
        values = to_grey(values)
    frames = window_linear(values, center, width)
    if photometric == "MONOCHROME1":
        frames = invert(frames)
    inst = ds.get("InstanceNumber")
    try:
        inst = int(inst)
    except (TypeError, ValueError):
        inst = None
    patient = str(ds.get("PatientID", "") or "") or str(ds.get("PatientName", "") or "")
    return DicomImage(
        frames=frames,
        modality=str(ds.get("Modality", "") or "OT"),
        photometric=photometric,
        window_center=center,
        window_width=width,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        patient_id=patient,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
        slice_position=_slice_position(ds),
        instance_number=inst,
    )
