"""The domain of an MSD / nnU-Net dataset, from what NIfTI files and their dataset.json know.

Ingest writes it into ``dataset.json`` ``domain`` in the schema DICOM volume ingest writes
(:mod:`medzoo.datasets.domain`), so export copies it into the model card and ``medzoo predict``
checks DICOM series against it. Every slice of every channel of every written case is one image:

* **modality** — from the channel's name in dataset.json (``modality`` / ``channel_names``),
  mapped to a DICOM modality code where the name says which (:func:`channel_modality`: ``CT``;
  ``MRI``, ``MR`` and MR sequence or map names such as ``T2``, ``FLAIR``, ``ADC`` → ``MR``;
  ``PET`` → ``PT``). Any other name (``noNorm``, ``zscore``: nnU-Net normalisation schemes, not
  modalities) leaves that channel's modality unknown: not counted in ``modalities``; ingest
  says so on stderr, and ``channels`` lists each channel's name and code (``"unknown"``);
* **pixel spacing**, **slice spacing** — the grid's in-plane (y, x) and slice (z) steps in mm
  (the array axes are the NIfTI voxel axes reversed, slice axis first);
* **rows**, **columns** — the case's y and x sizes;
* **intensity** — a grid sample of up to :data:`medzoo.datasets.volumes.SAMPLE_SLICES` slices of
  each channel, as stored in the NIfTI (HU for CT, scanner units for MR: the modality values a
  DICOM series of the same scan would hold), on the asinh bins of DICOM ingest;
* **photometric interpretation** ``MONOCHROME2`` and 1 sample per pixel: a NIfTI channel is a
  greyscale scalar volume. A NIfTI holds no SOP class, body part, bits stored or slice
  thickness: those stay empty, and predict does not check them.
"""

from __future__ import annotations

import re
import sys

import numpy as np

from medzoo.datasets.domain import UNKNOWN, intensity_facts, sample_grid
from medzoo.datasets.volumes import sample_slices

_MR_NAMES = {"mr", "mri", "cinemri", "t1", "t1w", "t1c", "t1ce", "t1gd", "t1wce", "t1post",
             "t2", "t2w", "t2flair", "flair", "pd", "pdw", "adc", "dwi", "hbv", "swi"}
MODALITY_CODES = {"ct": "CT", "pet": "PT", "pt": "PT", **{n: "MR" for n in _MR_NAMES}}
"""Channel names (lower case, without spaces, ``-`` and ``_``) that say a DICOM modality."""
NIFTI_UNIT = "value as stored in the NIfTI (after scl_slope / scl_inter)"


def channel_modality(name) -> str | None:
    """The DICOM modality code a dataset.json channel name says (``"T2"`` → ``"MR"``), or None.

    Examples
    --------
    >>> [channel_modality(n) for n in ("CT", "MRI", "t1gd", "ADC", "T2 FLAIR", "noNorm")]
    ['CT', 'MR', 'MR', 'MR', 'MR', None]
    """
    return MODALITY_CODES.get(re.sub(r"[\s_-]+", "", str(name)).lower())


def channel_modalities(channel_names) -> list:
    """Each channel's code (:func:`channel_modality`), naming on stderr those it cannot map."""
    codes = [channel_modality(n) for n in channel_names]
    unknown = [n for n, c in zip(channel_names, codes) if c is None]
    if unknown:
        print(f"medzoo ingest: domain: modality unknown for channel(s) "
              f"{', '.join(map(repr, unknown))} (expected a dataset.json channel name saying CT, "
              "MR / MRI, an MR sequence such as T2 or ADC, or PET); predict cannot check the "
              "modality", file=sys.stderr)
    return codes


def case_facts(image: np.ndarray, spacing, codes) -> list[dict]:
    """Facts of every slice of every channel of one case, for
    :meth:`medzoo.datasets.domain.DomainAccumulator.add`.

    Parameters
    ----------
    image : ndarray (D, H, W, C)
        The case as loaded (values as stored in the NIfTI, before normalisation).
    spacing : 3 floats
        The case's grid spacing, mm (z, y, x).
    codes : list
        Per channel, its modality code or None (:func:`channel_modalities`).
    """
    depth, rows, columns = image.shape[:3]
    header = {"photometric": "MONOCHROME2", "samples": 1, "rows": int(rows),
              "columns": int(columns), "pixel_spacing": [float(spacing[1]), float(spacing[2])],
              "slice_spacing": float(spacing[0])}
    picks = set(sample_slices(depth).tolist())
    facts = []
    for c, code in enumerate(codes):
        for k in range(depth):
            fact = dict(header, modality=code)
            if k in picks:
                fact.update(intensity_facts(sample_grid(image[k:k + 1, :, :, c])))
            facts.append(fact)
    return facts


def summary(accumulator, channel_names, codes) -> dict:
    """The ``domain`` section: ``accumulator.summary()`` (:class:`medzoo.datasets.domain.
    DomainAccumulator` of :func:`case_facts`), the intensity unit a NIfTI has, and
    ``channels``: ``[{"name", "modality"}]``, ``"unknown"`` where the name says no modality."""
    out = accumulator.summary()
    if out.get("intensity"):
        out["intensity"]["unit"] = NIFTI_UNIT
    out["channels"] = [{"name": str(n), "modality": c or UNKNOWN}
                       for n, c in zip(channel_names, codes)]
    return out
