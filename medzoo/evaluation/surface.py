"""Per-volume, per-class segmentation metrics in millimetres (numpy + scipy; no TensorFlow).

For one label map pair (prediction, reference) of class indices on the same grid and its voxel
``spacing`` (mm, array axis order), :func:`volume_metrics` gives per class:

* ``dice`` = 2|P∩R| / (|P| + |R|);
* ``hd95``: the larger of the two directed 95th percentiles of surface-to-surface distances (mm),
  MONAI's ``compute_hausdorff_distance(percentile=95)``;
* ``asd``: average symmetric surface distance (mm), the mean of all surface distances in both
  directions (MONAI's ``compute_average_surface_distance(symmetric=True)``);
* ``nsd``: normalised surface Dice at ``tolerance_mm``: the share of surface voxels of both
  masks lying within the tolerance of the other's surface (voxel-counted surfaces, not
  DeepMind's surfel areas);
* ``volume_pred_ml``, ``volume_ref_ml``, ``volume_diff_ml`` = |V_pred − V_ref| in mL.

Surfaces are the mask voxels with a 6-connected (face) neighbour outside the mask, the array
border counting as outside; distances come from ``scipy.ndimage.distance_transform_edt`` with
``sampling=spacing``, computed on the bounding box of both masks only (exact: every surface voxel
lies inside it).

Empty masks
-----------
* both empty: ``dice`` = 1, ``nsd`` = 1, ``hd95`` = ``asd`` = NaN (no surface to measure),
  ``volume_diff_ml`` = 0;
* exactly one empty: ``dice`` = 0, ``nsd`` = 0, ``hd95`` = ``asd`` = NaN.
NaN is skipped by :func:`summarize` means, which count the skipped volumes in ``n_undefined``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["surface_distances", "binary_metrics", "volume_metrics", "summarize", "METRICS"]

METRICS = ("dice", "hd95", "asd", "nsd", "volume_diff_ml")


def _spacing(spacing, ndim: int) -> tuple[float, ...]:
    sp = tuple(float(v) for v in np.broadcast_to(np.asarray(spacing, dtype=np.float64), (ndim,)))
    if any(not math.isfinite(v) or v <= 0 for v in sp):
        raise ValueError(f"Argument `spacing` must be positive finite mm per voxel along each axis. "
                         f"Received: spacing={tuple(spacing) if np.ndim(spacing) else spacing}")
    return sp


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(pred, ref, spacing) -> tuple[np.ndarray, np.ndarray] | None:
    """Distances (mm) from each surface voxel of ``pred`` to the nearest of ``ref``'s, and back.

    Parameters
    ----------
    pred, ref : array-like of bool, same shape (2-D or 3-D)
    spacing : float or sequence of float
        Voxel size in mm per axis (array axis order).

    Returns
    -------
    (pred_to_ref, ref_to_pred) float64 arrays, or None when either mask is empty.
    """
    a, b = np.asarray(pred, bool), np.asarray(ref, bool)
    if a.shape != b.shape:
        raise ValueError(f"`pred` and `ref` must have the same shape. Received: {a.shape} and {b.shape}")
    spacing = _spacing(spacing, a.ndim)
    if not a.any() or not b.any():
        return None
    # Crop to both masks' bounding box plus one voxel, so that erosion still sees the outside
    # (or the true array border) and the distance transforms stay small.
    nonzero = np.nonzero(a | b)
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in nonzero)
    a, b = a[box], b[box]
    sa, sb = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    return to_b[sa], to_a[sb]


def binary_metrics(pred, ref, spacing, *, tolerance_mm: float = 1.0) -> dict[str, float]:
    """Dice, HD95, ASD, NSD and volumes of one binary mask pair (see the module's conventions).

    Parameters
    ----------
    pred, ref : array-like of bool, same shape
    spacing : sequence of float
        Voxel size in mm per axis.
    tolerance_mm : float
        Normalised surface Dice tolerance.

    Returns
    -------
    dict with ``dice``, ``hd95``, ``asd``, ``nsd``, ``volume_pred_ml``, ``volume_ref_ml``,
    ``volume_diff_ml``.
    """
    a, b = np.asarray(pred, bool), np.asarray(ref, bool)
    spacing = _spacing(spacing, a.ndim)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    na, nb = int(a.sum()), int(b.sum())
    out = {"volume_pred_ml": na * voxel_ml, "volume_ref_ml": nb * voxel_ml,
           "volume_diff_ml": abs(na - nb) * voxel_ml}
    if na + nb == 0:
        return {"dice": 1.0, "hd95": math.nan, "asd": math.nan, "nsd": 1.0, **out}
    out["dice"] = 2.0 * int(np.count_nonzero(a & b)) / (na + nb)
    distances = surface_distances(a, b, spacing)
    if distances is None:
        return {**out, "hd95": math.nan, "asd": math.nan, "nsd": 0.0}
    d_ab, d_ba = distances
    out["hd95"] = float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
    out["asd"] = float((d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size))
    out["nsd"] = float((np.count_nonzero(d_ab <= tolerance_mm) + np.count_nonzero(d_ba <= tolerance_mm))
                       / (d_ab.size + d_ba.size))
    return {k: out[k] for k in ("dice", "hd95", "asd", "nsd", "volume_pred_ml", "volume_ref_ml",
                                "volume_diff_ml")}


def volume_metrics(pred_labels, ref_labels, spacing, classes: Sequence[str], *,
                   tolerance_mm: float = 1.0) -> dict[str, dict[str, float]]:
    """Metrics of every foreground class of one volume.

    Parameters
    ----------
    pred_labels, ref_labels : array-like of int, same shape
        Class index per voxel (0 background; value v ↔ ``classes[v]``).
    spacing : sequence of float
        Voxel size in mm per axis.
    classes : sequence of str
        ``classes[0]`` is the background (not scored).
    tolerance_mm : float
        Normalised surface Dice tolerance.

    Returns
    -------
    ``{class name: binary_metrics(...)}`` for ``classes[1:]``.

    Raises
    ------
    ValueError
        Shapes differ, or a label value has no class name.
    """
    p, r = np.asarray(pred_labels), np.asarray(ref_labels)
    if p.shape != r.shape:
        raise ValueError(f"`pred_labels` and `ref_labels` must have the same shape. "
                         f"Received: {p.shape} and {r.shape}")
    top = max(int(p.max(initial=0)), int(r.max(initial=0)))
    if top >= len(classes):
        raise ValueError(f"Label values must index `classes` (0..{len(classes) - 1}). "
                         f"Received: a label value {top}")
    return {name: binary_metrics(p == index, r == index, spacing, tolerance_mm=tolerance_mm)
            for index, name in enumerate(classes) if index > 0}


def summarize(per_volume: Sequence[dict[str, dict[str, float]]]) -> dict:
    """Per-class means over volumes and the mean over classes.

    Parameters
    ----------
    per_volume : sequence of :func:`volume_metrics` results

    Returns
    -------
    ``{"per_class": {class: {metric: mean, "n_undefined": {metric: count}}}, "mean": {metric:
    mean over classes of the per-class means}}``; NaN values are skipped and counted.
    """
    classes = list(per_volume[0]) if per_volume else []
    per_class = {}
    for name in classes:
        entry, undefined = {}, {}
        for metric in METRICS:
            values = np.array([v[name][metric] for v in per_volume], dtype=np.float64)
            finite = values[np.isfinite(values)]
            entry[metric] = float(finite.mean()) if finite.size else math.nan
            undefined[metric] = int(values.size - finite.size)
        entry["n_undefined"] = undefined
        per_class[name] = entry
    mean = {}
    for metric in METRICS:
        values = np.array([per_class[c][metric] for c in classes], dtype=np.float64)
        finite = values[np.isfinite(values)]
        mean[metric] = float(finite.mean()) if finite.size else math.nan
    return {"per_class": per_class, "mean": mean}
