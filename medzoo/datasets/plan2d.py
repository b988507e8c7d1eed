"""The 2D plan: the image size ``ingest --size auto`` stores, chosen from the data.

nnU-Net-style, but for slices: read the native grid (Rows/Columns, PixelSpacing) of a sample of
the inputs and, where labels.csv names masks, the sizes of the labelled findings (connected
components of each mask). The smallest findings (10th percentile of their equivalent diameters)
must span at least :data:`MIN_FINDING_PX` pixels after the resize; without masks the size is
the native one. Either way the size is

* never above the native size (resizing up adds no detail),
* never below :data:`MIN_SIZE` (or the native size when smaller),
* capped by the budget: ``records × size²`` at most ``budget_mpx`` million pixels per epoch,
  and at most :data:`MAX_SIZE`,
* a multiple of 16 (the zoo's U-Nets halve the image four times).

The plan is stored in dataset.json under ``plan`` as ``{"kind": "2d", "image_size", "reason",
...}`` beside the volumes' plan (``{"kind": "volume", ...}``) of ``medzoo data plan``.
"""

from __future__ import annotations

import math

import numpy as np

MIN_FINDING_PX = 6.0
MIN_SIZE = 64
MAX_SIZE = 256
DEFAULT_BUDGET_MPX = 16.0
_SAMPLE_HEADERS, _SAMPLE_MASKS = 64, 400


def _first_file(path):
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return files[0] if files else None
    return path


def _native(rows) -> tuple[list[int], list[float]]:
    """Native side lengths (max of Rows, Columns) and pixel spacings (mm) of a header sample."""
    import pydicom

    step = max(1, len(rows) // _SAMPLE_HEADERS)
    sides, spacings = [], []
    for row in rows[::step][:_SAMPLE_HEADERS]:
        path = _first_file(row.path)
        if path is None:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - unreadable inputs are ingest's to reject, not the plan's
            continue
        if "Rows" in ds and "Columns" in ds:
            sides.append(max(int(ds.Rows), int(ds.Columns)))
        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        if spacing:
            spacings.append(float(min(spacing)))
    return sides, spacings


def _finding_diameters(rows) -> list[float]:
    """Equivalent diameters (native pixels) of every mask component in a sample of the masks."""
    from scipy.ndimage import label

    masked = [r for r in rows if r.mask is not None and r.mask.is_file()]
    step = max(1, len(masked) // _SAMPLE_MASKS)
    diameters = []
    for row in masked[::step][:_SAMPLE_MASKS]:
        try:
            mask = np.load(row.mask, allow_pickle=False)
        except (OSError, ValueError):
            continue
        mask = np.squeeze(mask)
        if mask.ndim != 2 or not mask.any():
            continue
        regions, n = label(mask > 0)
        areas = np.bincount(regions.ravel())[1:]
        diameters.extend(2.0 * np.sqrt(areas[areas > 0] / math.pi))
    return [float(d) for d in diameters]


def _round16(value: float) -> int:
    return max(16, int(value) // 16 * 16)


def plan_size(rows, *, budget_mpx: float = DEFAULT_BUDGET_MPX) -> dict:
    """Choose the 2D image size for ``rows`` (labels.csv rows); return the plan with its reason.

    Parameters
    ----------
    rows : list of :class:`medzoo.datasets.manifest.LabelRow`
    budget_mpx : float
        Million pixels per epoch (``records × size²``) the size may cost at most.

    Returns
    -------
    dict
        ``kind`` ("2d"), ``image_size``, ``native_size``, ``pixel_spacing_mm`` (native, or None),
        ``smallest_finding_px`` / ``_mm`` (10th percentile diameter at native resolution, or
        None without masks), ``findings_measured``, ``needed_size`` (what the findings ask for),
        ``budget_size``, ``budget_mpx``, ``records`` and ``reason`` (one sentence).
    """
    sides, spacings = _native(rows)
    native = int(np.median(sides)) if sides else MIN_SIZE
    spacing = float(np.median(spacings)) if spacings else None
    diameters = _finding_diameters(rows)
    budget_size = min(MAX_SIZE, _round16(math.sqrt(budget_mpx * 1e6 / max(1, len(rows)))))
    floor = min(MIN_SIZE, _round16(native))
    ceiling = max(floor, min(_round16(native), budget_size))
    if diameters:
        smallest = float(np.percentile(diameters, 10))
        needed = native * MIN_FINDING_PX / max(smallest, 1e-6)
        size = min(ceiling, max(floor, int(math.ceil(needed / 16.0)) * 16))
        mm = f" ({smallest * spacing:.1f} mm)" if spacing else ""
        why = (f"smallest findings {smallest:.1f} px{mm} across at native {native} px need "
               f"{needed:.0f} px to span {MIN_FINDING_PX:g} px")
    else:
        smallest, needed = None, float(native)
        size = min(ceiling, max(floor, _round16(native)))
        why = f"no finding masks: native size {native} px"
    limits = []
    if needed > _round16(native) and size == _round16(native):
        limits.append("capped at the native size")
    if size == budget_size and needed > budget_size:
        limits.append(f"capped by the budget ({budget_mpx:g} Mpx per epoch over "
                      f"{len(rows)} records → {budget_size} px)")
    if size == floor and needed < floor:
        limits.append(f"raised to the floor {floor} px")
    reason = f"size {size}: {why}" + (f"; {', '.join(limits)}" if limits else "")
    return {"kind": "2d", "image_size": int(size), "native_size": native,
            "pixel_spacing_mm": spacing,
            "smallest_finding_px": None if smallest is None else round(smallest, 2),
            "smallest_finding_mm": None if smallest is None or spacing is None
            else round(smallest * spacing, 2),
            "findings_measured": len(diameters), "needed_size": round(needed, 1),
            "budget_size": budget_size, "budget_mpx": budget_mpx, "records": len(rows),
            "min_finding_px": MIN_FINDING_PX, "reason": reason}
