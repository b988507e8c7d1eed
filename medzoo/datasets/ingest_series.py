"""Series folders in ingest: group files into series, check each, stack one into a volume.

A labels.csv row may name a series folder. Its decoded files are grouped by SeriesInstanceUID
and sorted along the slice normal (:func:`series_groups`); :func:`series_issues` says what is
wrong with a series (inconsistent geometry, duplicate positions, missing slices), which 2D
ingest warns about or rejects and ``--volumes`` always rejects; :func:`series_volume` stacks a
sound series (or one multi-frame object) into the fixed ``D × H × W`` grid of ``--volumes``.
Runs in the ingest worker processes (no TensorFlow).
"""

from __future__ import annotations

import numpy as np

from medzoo.datasets import dicom

DUPLICATE_POSITION_MM = 1e-3
"""Consecutive slices closer than this (mm) along the normal are at the same position."""
MISSING_SLICE_FACTOR = 1.5
"""A step larger than this times the median spacing is a gap (missing slices)."""


def series_groups(items):
    """Items grouped by SeriesInstanceUID (first appearance), each sorted along the normal.

    Parameters
    ----------
    items : list
        Decoded files (``.img`` a :class:`~medzoo.datasets.dicom.DicomImage`, ``.order`` the
        file's place in its folder).

    Returns
    -------
    list of list
        One list per series, sorted by slice position, then instance number, then order.
    """
    groups: dict = {}
    for it in items:
        groups.setdefault(it.img.series_uid, []).append(it)
    out = []
    for group in groups.values():
        group.sort(key=lambda it: (it.img.slice_position is None, it.img.slice_position or 0.0,
                                   it.img.instance_number if it.img.instance_number is not None
                                   else 0, it.order))
        out.append(group)
    return out


def series_issues(items, need_positions=False) -> list[str]:
    """What is wrong with one sorted series: inconsistent geometry, duplicate positions, gaps.

    Parameters
    ----------
    items : list
        Decoded files of one series, sorted along the slice normal.
    need_positions : bool
        Report missing positions (volumes need them; 2D slices do not).

    Returns
    -------
    list of str
        Short reasons, e.g. ``missing slices (gap of 15 mm, more than 1.5 x the median spacing
        of 5 mm)``; empty when the series is sound.
    """
    issues = []
    if len(items) < 2 or any(it.img.frames.shape[0] != 1 for it in items):
        return issues

    def rounded(v):
        return None if v is None else tuple(round(x, 4) for x in v)

    fields = {
        "ImageOrientationPatient": {rounded(it.img.geometry.orientation) for it in items},
        "Rows": {it.img.rows for it in items},
        "Columns": {it.img.columns for it in items},
        "PixelSpacing": {rounded(it.img.geometry.pixel_spacing) for it in items},
    }
    differ = [name for name, values in fields.items() if len(values) > 1]
    if differ:
        issues.append(f"inconsistent geometry in series ({', '.join(differ)} differ)")
    positions = [it.img.slice_position for it in items]
    if any(p is None for p in positions):
        if need_positions:
            issues.append("slice positions missing (ImagePositionPatient or "
                          "ImageOrientationPatient)")
        return issues
    steps = np.diff(np.asarray(positions, dtype=np.float64))
    dups = int(np.sum(steps <= DUPLICATE_POSITION_MM))
    if dups:
        issues.append(f"duplicate slice positions ({dups} slice{'s' if dups > 1 else ''} at "
                      "the position of another)")
    real = steps[steps > DUPLICATE_POSITION_MM]
    if real.size:
        median = float(np.median(real))
        gaps = real[real > MISSING_SLICE_FACTOR * median]
        if gaps.size:
            issues.append(f"missing slices (gap of {float(gaps.max()):.4g} mm, more than "
                          f"{MISSING_SLICE_FACTOR:g} x the median spacing of {median:.4g} mm)")
    return issues


def _resample_depth(stack: np.ndarray, depth: int) -> np.ndarray:
    """Linear resample along axis 0 (half-pixel centres, as the in-plane resize)."""
    if stack.shape[0] == depth:
        return stack
    lo, hi, lerp = dicom._interp_weights(stack.shape[0], depth)
    lerp = lerp.reshape(-1, *([1] * (stack.ndim - 1)))
    a, b = stack[lo], stack[hi]
    return (a + (b - a) * lerp).astype(np.float32)


def series_volume(group, depth: int, size) -> tuple[np.ndarray, tuple, int]:
    """One sorted series (or one multi-frame object) → ``(D, H, W, C)`` volume, spacing, slices.

    Parameters
    ----------
    group : list
        Decoded files of one series, as :func:`series_groups` sorts them (frames already
        resized in-plane to ``size``).
    depth : int
        D: slices of the volume, resampled linearly along the normal.
    size : tuple
        (H, W) the frames were resized to.

    Returns
    -------
    tuple
        ``(volume, spacing, slices)``: the float32 volume, its ``(z, y, x)`` voxel spacing in
        mm, and the number of slices it was made from.

    Raises
    ------
    DicomRejected
        Fewer than 2 slices.
    """
    first = group[0].img
    geo = first.geometry
    if len(group) == 1:
        frames = first.frames
        positions = geo.frame_positions
        if positions is not None:
            order = np.argsort(positions, kind="stable")
            frames = frames[order]
            positions = [positions[i] for i in order]
    else:
        frames = np.concatenate([it.img.frames for it in group])
        positions = [it.img.slice_position for it in group]
    n = frames.shape[0]
    if n < 2:
        raise dicom.DicomRejected("volume needs at least 2 slices (received 1)")
    if positions is not None and None not in positions:
        steps = np.diff(np.asarray(positions, dtype=np.float64))
        step = float(np.median(steps)) if steps.size else 1.0
    else:
        step = geo.slice_spacing or 1.0
    ps = geo.pixel_spacing or (1.0, 1.0)
    spacing = (abs(step) * n / depth, ps[0] * first.rows / size[0], ps[1] * first.columns / size[1])
    return _resample_depth(frames, depth), spacing, n
