"""Difficulty knobs for the synthetic chest phantoms (2D slices): presets and the pixel generator.

``easy`` is the seed's phantom (a large soft-tissue lesion, 840 HU above lung, σ 15 HU): it is
not generated here — :func:`resolve` returns ``None`` and :mod:`medzoo.datasets.synth` keeps its
own, byte-identical path. ``medium`` and ``hard`` (or any explicit knob) switch to this
generator, which adds what makes real nodules hard to find:

* ``lesion_contrast_hu`` — lesion minus lung, in HU (ground glass is a few hundred HU);
* ``lesion_radius_mm`` — (low, high) radius range, drawn per lesion;
* ``distractors`` / ``distractor_radius_mm`` — vessel-like bright dots (soft tissue, 840 HU
  above lung) in both lungs of every patient, normal or not: small look-alikes brighter than
  the lesion, so "the brightest spot" is not the answer;
* ``blur_mm`` — Gaussian blur (σ, mm) of the noise-free image: the scanner's point spread;
* ``noise_hu`` — Gaussian noise σ in HU, added after the blur;
* ``anatomy`` — relative jitter of body and lung shapes and positions per patient;
* ``scanner`` — relative per-patient variation of noise σ and lesion contrast, and an offset of
  ``scanner × 100`` HU (protocol and calibration differences);
* ``label_noise`` — fraction of patients whose label in labels.csv is flipped (the mask keeps
  the truth), as reading errors in real labels.

Values are CT Hounsfield units; other modalities map them linearly onto their own scale
(contrast × (tissue − lung) / 840 HU; noise × modality σ / 15 HU). Geometry assumes the
phantom's 350 mm field of view, so ``size`` sets the pixel spacing (350 / size mm).
"""

from __future__ import annotations

import numpy as np

FOV_MM = 350.0
# CT reference: soft tissue 40 HU, lung -800 HU, the seed's noise sigma 15 HU
_REF_CONTRAST_HU, _REF_NOISE_HU = 840.0, 15.0

KNOBS = ("lesion_contrast_hu", "lesion_radius_mm", "distractors", "distractor_radius_mm",
         "blur_mm", "noise_hu", "anatomy", "scanner", "label_noise")

PRESETS = {
    "easy": {},
    "medium": {"lesion_contrast_hu": 600.0, "lesion_radius_mm": (14.0, 20.0), "distractors": 3,
               "distractor_radius_mm": (1.5, 3.0), "blur_mm": 1.0, "noise_hu": 30.0,
               "anatomy": 0.08, "scanner": 0.05, "label_noise": 0.0},
    "hard": {"lesion_contrast_hu": 250.0, "lesion_radius_mm": (5.0, 9.0), "distractors": 12,
             "distractor_radius_mm": (1.5, 4.0), "blur_mm": 1.5, "noise_hu": 70.0,
             "anatomy": 0.12, "scanner": 0.10, "label_noise": 0.0},
}
# Knobs left unset in an explicit (non-preset) request take the seed's look.
_EASY_VALUES = {"lesion_contrast_hu": _REF_CONTRAST_HU, "lesion_radius_mm": None, "distractors": 0,
                "distractor_radius_mm": (1.5, 3.0), "blur_mm": 0.0, "noise_hu": _REF_NOISE_HU,
                "anatomy": 0.0, "scanner": 0.0, "label_noise": 0.0}
# Native size each level is written at when --size is not given (finer findings need pixels).
DEFAULT_SIZE = {"easy": 64, "medium": 64, "hard": 192}


def resolve(difficulty: str = "easy", **overrides) -> dict | None:
    """The knobs of a level with explicit overrides (``None`` values ignored).

    Returns ``None`` for ``easy`` without overrides: the seed's generator, byte-identical.

    Raises
    ------
    ValueError
        An unknown level or knob, or a value out of range.
    """
    if difficulty not in PRESETS:
        raise ValueError(f"Unknown difficulty. Expected one of {tuple(PRESETS)}. "
                         f"Received: difficulty={difficulty!r}")
    unknown = set(overrides) - set(KNOBS)
    if unknown:
        raise ValueError(f"Unknown difficulty knob(s) {sorted(unknown)}. Expected some of {KNOBS}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if difficulty == "easy" and not given:
        return None
    knobs = {**_EASY_VALUES, **PRESETS[difficulty], **given}
    for name in ("lesion_radius_mm", "distractor_radius_mm"):
        if knobs[name] is not None:
            low, high = (float(v) for v in knobs[name])
            if not 0.0 < low <= high:
                raise ValueError(f"Argument `{name}` must be 0 < low <= high (mm). "
                                 f"Received: {name}={knobs[name]}")
            knobs[name] = (low, high)
    for name in ("lesion_contrast_hu", "blur_mm", "noise_hu", "anatomy", "scanner"):
        knobs[name] = float(knobs[name])
        if knobs[name] < 0:
            raise ValueError(f"Argument `{name}` must be >= 0. Received: {name}={knobs[name]}")
    knobs["distractors"] = int(knobs["distractors"])
    if not 0.0 <= float(knobs["label_noise"]) < 0.5:
        raise ValueError("Argument `label_noise` must be in [0, 0.5). "
                         f"Received: label_noise={knobs['label_noise']}")
    knobs["label_noise"] = float(knobs["label_noise"])
    if knobs["anatomy"] > 0.3 or knobs["scanner"] > 0.5:
        raise ValueError("Arguments `anatomy` <= 0.3 and `scanner` <= 0.5 keep the phantom a "
                         f"chest. Received: anatomy={knobs['anatomy']}, scanner={knobs['scanner']}")
    knobs["difficulty"] = difficulty
    return knobs


def patient(rng, knobs: dict, size: int, slices: int, findings: list[str],
            densities: dict) -> dict:
    """One patient's anatomy, scanner and lesions/distractors (pixel units), drawn from ``rng``."""
    a, s = knobs["anatomy"], knobs["scanner"]
    jitter = lambda: 1.0 + rng.uniform(-a, a)  # noqa: E731
    body = (0.85 * jitter(), 0.65 * jitter(), rng.uniform(-a, a) * 0.2)
    lungs = [(side * 0.38 * jitter(), -0.02 + rng.uniform(-a, a) * 0.2, 0.28 * jitter(),
              0.45 * jitter()) for side in (-1.0, 1.0)]
    spacing = FOV_MM / size
    lesions, used = [], set()
    for finding in findings:
        side = int(rng.integers(0, 2)) if not used else 1 - used.pop()
        used.add(side)
        lesions.append(_blob(rng, lungs[side], knobs["lesion_radius_mm"], spacing, size, slices,
                             densities.get(finding, 1.0)))
    distractors = []
    for _ in range(knobs["distractors"]):
        blob = _blob(rng, lungs[int(rng.integers(0, 2))], knobs["distractor_radius_mm"], spacing,
                     size, slices, _REF_CONTRAST_HU / max(knobs["lesion_contrast_hu"], 1e-6))
        blob["drift"] = rng.uniform(-1.0, 1.0, size=2)  # vessels run obliquely through slices
        distractors.append(blob)
    return {"body": body, "lungs": lungs, "lesions": lesions, "distractors": distractors,
            "gain": 1.0 + rng.uniform(-s, s), "noise_gain": 1.0 + rng.uniform(-s, s),
            "offset_hu": rng.uniform(-s, s) * 100.0, "spacing_mm": spacing}


def _blob(rng, lung, radius_mm, spacing, size, slices, density):
    lx, ly, ax, ay = lung
    if radius_mm is None:  # the seed's size: 9% of the image
        r0 = max(3.5, 0.09 * size)
    else:
        r0 = rng.uniform(*radius_mm) / spacing
    # centre well inside the lung so the blob is surrounded by lung, not pleura
    cx = (lx + rng.uniform(-0.45, 0.45) * ax + 1.0) / 2.0 * size
    cy = (ly + rng.uniform(-0.55, 0.55) * ay + 1.0) / 2.0 * size
    return {"cx": cx, "cy": cy, "r0": r0, "aspect": rng.uniform(0.85, 1.15),
            "zc": (slices - 1) / 2.0 + rng.uniform(-0.5, 0.5), "rz": 0.9 * slices + 1.0,
            "density": density}


def phantom_slice(rng, size: int, params: dict, k: int, modality: str, knobs: dict,
                  tissue_values) -> tuple[np.ndarray, np.ndarray]:
    """One slice in modality units and its lesion mask (pure; no I/O).

    ``tissue_values`` is the modality's (air, tissue, lung, bone, sigma) as synth defines them.
    """
    from scipy.ndimage import gaussian_filter

    air, tissue, lung, bone, sigma = tissue_values
    per_hu = (tissue - lung) / _REF_CONTRAST_HU  # modality units per HU of contrast
    u = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(u, u, indexing="ij")
    bx, by, shift = params["body"]
    img = np.full((size, size), air, dtype=np.float64)
    img[((x - shift) / bx) ** 2 + (y / by) ** 2 <= 1.0] = tissue
    for lx, ly, ax, ay in params["lungs"]:
        img[((x - lx) / ax) ** 2 + ((y - ly) / ay) ** 2 <= 1.0] = lung
    img[(x**2 + (y - 0.5) ** 2) <= 0.08**2] = bone
    py, px = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    contrast = knobs["lesion_contrast_hu"] * params["gain"] * per_hu
    for blob in params["distractors"]:
        dx, dy = blob["drift"] * (k - blob["zc"])
        inside = _ellipse(px, py, {**blob, "cx": blob["cx"] + dx, "cy": blob["cy"] + dy}, k)
        img[inside] = np.maximum(img[inside], lung + blob["density"] * contrast)
    mask = np.zeros((size, size), np.uint8)
    for blob in params["lesions"]:
        inside = _ellipse(px, py, blob, k)
        img[inside] = lung + blob["density"] * contrast
        mask[inside] = 1
    if knobs["blur_mm"] > 0:
        img = gaussian_filter(img, knobs["blur_mm"] / params["spacing_mm"], mode="nearest")
    noise = knobs["noise_hu"] * params["noise_gain"] * sigma / _REF_NOISE_HU
    img = img + params["offset_hu"] * per_hu + rng.normal(0.0, noise, size=img.shape)
    return img, mask


def _ellipse(px, py, blob, k):
    ratio = (k - blob["zc"]) / blob["rz"]
    r = blob["r0"] * np.sqrt(max(0.0, 1.0 - ratio**2))
    rx, ry = r * blob["aspect"], r / blob["aspect"]
    return ((px - blob["cx"]) / rx) ** 2 + ((py - blob["cy"]) / ry) ** 2 <= 1.0


def flipped(label: str, names: list[str]) -> str:
    """The other label of a two-class task (label noise)."""
    return names[1] if label == names[0] else names[0]
