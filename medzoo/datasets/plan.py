"""The plan of a volume dataset, derived from its fingerprint (nnU-Net's idea; pure functions).

A *fingerprint* is what ingest measures once over every series (spacings, shapes, modality and
a sample of foreground intensities); a *plan* is every decision derived from it — target
spacing, intensity normalisation, patch size, batch size — written to ``DS/plan.json`` and
``dataset.json["plan"]`` and read by training, export, evaluation and predict instead of
deciding again (docs/internals.md, "Native-spacing volumes").

Rules (each overridable):

* **Target spacing**: the median spacing per axis. When the coarsest axis' median is at least
  :data:`ANISOTROPY_RATIO` (3) times the finest axis' median, the volume is *anisotropic*: the
  coarse axis keeps (about) its own resolution instead of being interpolated up — its target is
  the 10th percentile of the spacings along it (as nnU-Net), but never finer than the in-plane
  target — and the fine axes take their medians.
* **Normalisation**: CT — clip to the 0.5 and 99.5 percentiles of the foreground intensities
  (voxels of the label maps' classes > 0, else the whole volume), then z-score with the mean and
  standard deviation of the clipped foreground sample (``{"scheme": "ct", "clip": [lo, hi],
  "mean": m, "std": s}``). MR and anything else: z-score each volume with its own mean and
  standard deviation (``{"scheme": "zscore"}``).
* **Patch and batch size**: the patch starts at the median shape (after resampling), rounded
  down to a multiple of ``2**depth`` per axis (``depth`` = the U-Net's poolings, lowered for a
  thin median shape); while two patches do not fit ``memory_gb`` (estimate:
  :func:`estimate_memory_bytes`), the axis longest in millimetres loses ``2**depth`` voxels. The
  batch is as many patches as fit (at least 2), and no more than cover 5 % of the dataset's
  voxels (as nnU-Net).
"""

from __future__ import annotations

import math

import numpy as np

SCHEMA_VERSION = 1
ANISOTROPY_RATIO = 3.0
"""The coarse axis counts as anisotropic when its median spacing is ≥ this × the finest."""
DEFAULT_MEMORY_GB = 8.0
DEFAULT_DEPTH = 4
DEFAULT_BASE_WIDTH = 32
MAX_WIDTH = 320
MEMORY_SHARE = 0.75
"""Share of ``memory_gb`` the activations may take (the rest: weights, optimiser, framework)."""
TENSORS_PER_LEVEL = 15
"""Feature maps stored per voxel per channel of a level: encoder 2 × (conv, norm, activation),
decoder upsampled + concatenation (2) + 2 × (conv, norm, activation)."""
BATCH_DATASET_SHARE = 0.05
FOREGROUND_OVERSAMPLE = 1.0 / 3.0
SAMPLE_VALUES = 100_000
"""Foreground intensities kept for the whole fingerprint (shared out over the series)."""


def foreground_sample(volume, labels=None, n: int = 10_000, seed: int = 0) -> np.ndarray:
    """Up to ``n`` intensities of one volume's foreground (labels > 0, else every voxel).

    Parameters
    ----------
    volume : ndarray
        Modality values (HU for CT).
    labels : ndarray, optional
        Label map of the same shape; its non-zero voxels are the foreground.
    n : int
    seed : int

    Returns
    -------
    numpy.ndarray
        float32, 1-D; values drawn without replacement, deterministic for ``seed``.
    """
    volume = np.asarray(volume)
    if labels is not None and np.any(labels):
        values = volume[np.asarray(labels) > 0]
    else:
        values = volume.ravel()
    values = values[np.isfinite(values)]
    if values.size > n:
        values = values[np.random.default_rng(seed).choice(values.size, n, replace=False)]
    return values.astype(np.float32)


def intensity_stats(values) -> dict:
    """Percentiles 0.5/99.5 and mean/std of the clipped values (what CT normalisation uses)."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"n": 0, "percentile_00_5": 0.0, "percentile_99_5": 0.0, "mean": 0.0, "std": 1.0}
    lo, hi = np.percentile(values, [0.5, 99.5])
    clipped = np.clip(values, lo, hi)
    return {"n": int(values.size), "percentile_00_5": float(lo), "percentile_99_5": float(hi),
            "mean": float(clipped.mean()), "std": float(clipped.std()),
            "min": float(values.min()), "max": float(values.max())}


def make_fingerprint(spacings, shapes, modality: str, samples) -> dict:
    """The fingerprint of a dataset (JSON-able; no identifiers).

    Parameters
    ----------
    spacings, shapes : sequences of 3-sequences
        Per series, source spacing (mm) and shape, z y x.
    modality : str
        The dataset's modality (``CT``, ``MR``…), the most common one.
    samples : iterable of ndarray
        Foreground intensity samples (see :func:`foreground_sample`).
    """
    pooled = [np.asarray(s, np.float32).ravel() for s in samples]
    pooled = np.concatenate(pooled) if pooled else np.zeros(0, np.float32)
    return {"schema_version": SCHEMA_VERSION, "modality": str(modality).upper(),
            "spacings": [[float(v) for v in s] for s in spacings],
            "shapes": [[int(v) for v in s] for s in shapes],
            "foreground": intensity_stats(pooled)}


def plan_target_spacing(spacings) -> tuple[list[float], bool]:
    """Target spacing (z, y, x) from per-series spacings and whether it is anisotropic.

    Examples
    --------
    >>> plan_target_spacing([[1.0, 0.8, 0.8], [2.0, 0.7, 0.7], [1.5, 0.9, 0.9]])
    ([1.5, 0.8, 0.8], False)
    >>> plan_target_spacing([[5.0, 0.7, 0.7], [5.0, 0.8, 0.8], [3.0, 0.75, 0.75]])[1]
    True
    """
    spacings = np.asarray(spacings, np.float64).reshape(-1, 3)
    if spacings.size == 0 or not np.all(np.isfinite(spacings)) or np.any(spacings <= 0):
        raise ValueError("Argument `spacings` must be one or more positive (z, y, x) spacings. "
                         f"Received: {spacings.tolist()}")
    target = np.median(spacings, axis=0)
    coarse = int(np.argmax(target))
    fine = [a for a in range(3) if a != coarse]
    anisotropic = bool(target[coarse] >= ANISOTROPY_RATIO * target.min())
    if anisotropic:
        # keep the coarse axis near its own resolution (nnU-Net: 10th percentile), never finer
        # than the in-plane target
        target[coarse] = max(float(np.percentile(spacings[:, coarse], 10)), target[fine].max())
    return [round(float(v), 6) for v in target], anisotropic


def network_widths(depth: int = DEFAULT_DEPTH, base_width: int = DEFAULT_BASE_WIDTH) -> list[int]:
    """Feature widths per level of the U-Net the memory estimate assumes (doubling, ≤ 320)."""
    return [min(MAX_WIDTH, base_width * 2**level) for level in range(depth + 1)]


def estimate_memory_bytes(patch, batch: int, widths, channels: int = 1) -> int:
    """Training memory of a 3D U-Net's activations for ``batch`` patches (bytes, float32).

    Per level ``l`` (voxels ``prod(patch) / 8**l``, width ``widths[l]``) the network keeps about
    :data:`TENSORS_PER_LEVEL` feature maps; the backward pass holds as much again in gradients.
    A rough, conservative figure: nnU-Net's defaults (128³, widths 32…320) come out at ~10 GB
    per patch, about twice what mixed-precision training needs.
    """
    voxels = float(np.prod([int(v) for v in patch]))
    per_voxel = sum(TENSORS_PER_LEVEL * w / 8.0**level for level, w in enumerate(widths))
    per_voxel += channels
    return int(2 * 4 * batch * voxels * per_voxel)


def _depth_for(shape, depth: int) -> int:
    smallest = max(1, int(min(shape)))
    return max(0, min(int(depth), int(math.floor(math.log2(smallest)))))


def plan_patch(median_shape, spacing, memory_gb: float, widths, channels: int = 1,
               depth: int = DEFAULT_DEPTH) -> tuple[list[int], int]:
    """Patch size (multiples of ``2**depth``, ≤ the median shape) fitting two patches in memory.

    Returns
    -------
    (patch, depth) : the patch (z, y, x) and the depth used (lowered for thin volumes).
    """
    depth = _depth_for(median_shape, depth)
    step = 2**depth
    patch = [max(step, (int(n) // step) * step) for n in median_shape]
    budget = MEMORY_SHARE * float(memory_gb) * 1024**3
    while estimate_memory_bytes(patch, 2, widths[:depth + 1], channels) > budget:
        shrinkable = [a for a in range(3) if patch[a] > step]
        if not shrinkable:
            break
        axis = max(shrinkable, key=lambda a: (patch[a] * spacing[a], patch[a]))
        patch[axis] -= step
    return patch, depth


def plan_batch(patch, memory_gb: float, widths, dataset_voxels: float, channels: int = 1) -> int:
    """Patches per batch: as many as fit the budget, ≤ 5 % of the dataset's voxels, ≥ 2."""
    budget = MEMORY_SHARE * float(memory_gb) * 1024**3
    fit = int(budget // max(1, estimate_memory_bytes(patch, 1, widths, channels)))
    cover = int(BATCH_DATASET_SHARE * dataset_voxels // max(1, int(np.prod(patch))))
    return max(2, min(fit, cover))


def positive_triple(values, kind=float) -> list | None:
    """``values`` as three positive finite ``kind`` numbers (z, y, x); None when they are not.

    Callers raise their own error (an argument's name, a CLI option's), saying what was received.
    """
    try:
        out = [kind(v) for v in values]
        valid = len(out) == 3 and all(v > 0 and math.isfinite(v) for v in out)
    except (TypeError, ValueError, OverflowError):  # int(inf), isfinite of a 400-digit int
        return None
    return out if valid else None


def _triple(value, name, kind=float):
    out = positive_triple(value, kind)
    if out is None:
        raise ValueError(f"Argument `{name}` must be 3 positive numbers (z, y, x). "
                         f"Received: {name}={value!r}")
    return out


def make_plan(fingerprint: dict, *, memory_gb: float = DEFAULT_MEMORY_GB, target_spacing=None,
              patch_size=None, batch_size=None, normalization=None, depth: int = DEFAULT_DEPTH,
              base_width: int = DEFAULT_BASE_WIDTH, label_classes=None, channels: int = 1,
              foreground_oversample: float = FOREGROUND_OVERSAMPLE) -> dict:
    """Every decision for a volume dataset from its fingerprint (see the module docstring).

    Parameters
    ----------
    fingerprint : dict
        From :func:`make_fingerprint`.
    memory_gb : float
        Memory budget for training (accelerator or RAM), GiB.
    target_spacing, patch_size : 3-sequences, optional
        Overrides (mm, z y x; voxels). A patch is used as given.
    batch_size : int, optional
        Override.
    normalization : {"ct", "zscore"}, optional
        Override of the modality's scheme.
    depth, base_width : int
        The U-Net the memory estimate assumes.
    label_classes : list of str, optional
        Voxel classes (``classes[0] == "background"``).
    channels : int
    foreground_oversample : float
        Share of training patches centred on a labelled voxel (read by the patch sampler).

    Returns
    -------
    dict
        plan.json (docs/internals.md).

    Raises
    ------
    ValueError
        Bad overrides or an empty fingerprint.
    """
    if not float(memory_gb) > 0:
        raise ValueError(f"Argument `memory_gb` must be positive. Received: memory_gb={memory_gb}")
    overrides = {}
    spacings = fingerprint["spacings"]
    median_spacing = [round(float(v), 6) for v in np.median(np.asarray(spacings, float), axis=0)]
    if target_spacing is not None:
        target = _triple(target_spacing, "target_spacing")
        anisotropic = bool(max(target) >= ANISOTROPY_RATIO * min(target))
        overrides["target_spacing"] = target
    else:
        target, anisotropic = plan_target_spacing(spacings)
    resampled = [[max(1, int(round(n * s / t))) for n, s, t in zip(shape, sp, target)]
                 for shape, sp in zip(fingerprint["shapes"], spacings)]
    median_shape = [int(v) for v in np.median(np.asarray(resampled, float), axis=0)]
    widths = network_widths(depth, base_width)
    if patch_size is not None:
        patch = [int(v) for v in _triple(patch_size, "patch_size", int)]
        used_depth = _depth_for(patch, depth)
        overrides["patch_size"] = patch
    else:
        patch, used_depth = plan_patch(median_shape, target, memory_gb, widths, channels, depth)
    widths = widths[:used_depth + 1]
    dataset_voxels = float(sum(np.prod(s) for s in resampled))
    if batch_size is not None:
        if int(batch_size) < 1:
            raise ValueError(f"Argument `batch_size` must be a positive integer. "
                             f"Received: batch_size={batch_size}")
        batch = int(batch_size)
        overrides["batch_size"] = batch
    else:
        batch = plan_batch(patch, memory_gb, widths, dataset_voxels, channels)
    modality = fingerprint.get("modality", "OT")
    scheme = normalization or ("ct" if modality == "CT" else "zscore")
    if scheme not in ("ct", "zscore"):
        raise ValueError(f"Argument `normalization` must be 'ct' or 'zscore'. "
                         f"Received: normalization={normalization!r}")
    if normalization is not None:
        overrides["normalization"] = scheme
    if scheme == "ct":
        fg = fingerprint["foreground"]
        norm = {"scheme": "ct", "clip": [round(fg["percentile_00_5"], 4),
                                         round(fg["percentile_99_5"], 4)],
                "mean": round(fg["mean"], 4), "std": round(max(fg["std"], 1e-6), 4)}
    else:
        norm = {"scheme": "zscore"}
    return {
        "schema_version": SCHEMA_VERSION,
        "modality": modality,
        "median_spacing": median_spacing,
        "target_spacing": [round(float(v), 6) for v in target],
        "anisotropic": anisotropic,
        "median_shape": median_shape,
        "normalization": norm,
        "patch_size": patch,
        "batch_size": batch,
        "memory_gb": float(memory_gb),
        "network": {"depth": used_depth, "widths": widths,
                    "estimated_gb": round(estimate_memory_bytes(patch, batch, widths, channels)
                                          / 1024**3, 3)},
        "label_classes": list(label_classes) if label_classes else ["background"],
        "foreground_oversample": float(foreground_oversample),
        # how ingest put the records on the target grid (medzoo.datasets.resample): map
        # predictions back the same way
        "resampling": {"image": "cubic", "labels": "label-wise linear",
                       "grid": "origin kept, voxel n at n * spacing"},
        "overrides": overrides,
    }


def normalize(volume, normalization: dict, *, copy: bool = True) -> np.ndarray:
    """Apply a plan's intensity normalisation to one volume of modality values.

    Parameters
    ----------
    volume : ndarray
        Modality values (HU for CT), any shape.
    normalization : dict
        ``plan["normalization"]``.
    copy : bool
        False: a float32 ``volume`` is normalised in place (and returned).

    Returns
    -------
    numpy.ndarray
        float32.
    """
    out = np.array(volume, dtype=np.float32, copy=copy or None)
    scheme = normalization.get("scheme")
    if scheme == "ct":
        lo, hi = normalization["clip"]
        np.clip(out, lo, hi, out=out)
        out -= np.float32(normalization["mean"])
        out /= np.float32(max(float(normalization["std"]), 1e-6))
        return out
    if scheme == "zscore":  # statistics slice by slice: no float64 copy of the volume
        blocks = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(1, -1)
        total = sum(float(b.sum(dtype=np.float64)) for b in blocks)
        mean = total / max(1, out.size)
        sq = sum(float(np.square(b - mean, dtype=np.float64).sum()) for b in blocks)
        std = math.sqrt(sq / max(1, out.size))
        out -= np.float32(mean)
        out /= np.float32(max(std, 1e-6))
        return out
    raise ValueError(f"Unknown normalisation scheme. Expected 'ct' or 'zscore'. "
                     f"Received: {scheme!r}")


def describe(plan: dict) -> str:
    """The plan as a few lines for the terminal."""
    def mm(v):
        return " x ".join(f"{x:.3g}" for x in v)

    norm = plan["normalization"]
    if norm["scheme"] == "ct":
        how = (f"CT: clip to [{norm['clip'][0]:.4g}, {norm['clip'][1]:.4g}], z-score with "
               f"mean {norm['mean']:.4g}, std {norm['std']:.4g}")
    else:
        how = "z-score per volume"
    over = ", ".join(sorted(plan.get("overrides", {}))) or "none"
    return "\n".join([
        f"modality          {plan['modality']}",
        f"median spacing    {mm(plan['median_spacing'])} mm (z, y, x)",
        f"target spacing    {mm(plan['target_spacing'])} mm"
        + (" (anisotropic: coarse axis kept)" if plan["anisotropic"] else ""),
        f"median shape      {' x '.join(map(str, plan['median_shape']))} voxels at target spacing",
        f"normalisation     {how}",
        f"patch size        {' x '.join(map(str, plan['patch_size']))} "
        f"(U-Net depth {plan['network']['depth']})",
        f"batch size        {plan['batch_size']} (estimated {plan['network']['estimated_gb']:.3g}"
        f" GiB of {plan['memory_gb']:g} GiB)",
        f"label classes     {', '.join(plan['label_classes'])}",
        f"overrides         {over}",
    ])
