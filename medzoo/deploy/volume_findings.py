"""Volume predict's findings: per-structure volumes in mL, lesions as connected components with
their volume and longest diameter, and the study report ``findings/study-NNN.md``."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["LESION_WORDS", "is_lesion_class", "structure_findings", "render_volume_report"]

LESION_WORDS = ("lesion", "nodule", "tumor", "tumour", "metasta", "mass", "cyst")
"""A class whose name holds one of these is counted lesion by lesion (connected components)."""

REPORT_LESIONS = 20  # lesions listed in a study report; lesions.csv has every one


def is_lesion_class(name: str) -> bool:
    """True for a class counted lesion by lesion: its name holds one of :data:`LESION_WORDS`."""
    return any(word in name.lower() for word in LESION_WORDS)


def _longest_diameter(points_mm: np.ndarray, limit: int = 1500) -> float:
    """Largest distance between two voxel centres of a component (mm), on at most ``limit``
    points (its surface voxels, evenly subsampled)."""
    from scipy.spatial.distance import pdist

    if len(points_mm) < 2:
        return 0.0
    if len(points_mm) > limit:
        points_mm = points_mm[np.linspace(0, len(points_mm) - 1, limit).astype(int)]
    return float(pdist(points_mm).max())


def structure_findings(labels: np.ndarray, spacing, classes) -> dict:
    """Per-class volume (mL) and, for lesion-like classes, connected components (26-connected)
    with their volume and longest diameter (mm, between voxel centres).

    Parameters
    ----------
    labels : (D, H, W) class indices on the source grid
    spacing : (z, y, x) mm
    classes : names, ``classes[0]`` the background

    Returns
    -------
    ``{class: {"voxels", "volume_ml", "lesions": [{"lesion", "volume_ml", "diameter_mm",
    "first_slice", "last_slice"}] or None}}``
    """
    voxel_ml = float(np.prod(spacing)) / 1000.0
    structure = ndimage.generate_binary_structure(3, 3)
    out = {}
    for index, name in enumerate(classes):
        if index == 0:
            continue
        mask = labels == index
        entry = {"voxels": int(mask.sum()), "volume_ml": float(mask.sum()) * voxel_ml,
                 "lesions": None}
        if is_lesion_class(name):
            components, count = ndimage.label(mask, structure=structure)
            lesions = []
            for number, box in enumerate(ndimage.find_objects(components), start=1):
                part = components[box] == number
                surface = part & ~ndimage.binary_erosion(part, border_value=0)
                points = (np.argwhere(surface) + [b.start for b in box]) * np.asarray(spacing)
                lesions.append({"lesion": number, "volume_ml": float(part.sum()) * voxel_ml,
                                "diameter_mm": _longest_diameter(points),
                                "first_slice": int(box[0].start) + 1,
                                "last_slice": int(box[0].stop)})
            lesions.sort(key=lambda item: -item["volume_ml"])
            for rank, item in enumerate(lesions, start=1):
                item["lesion"] = rank
            entry["lesions"] = lesions
        out[name] = entry
    return out


def render_volume_report(study: dict, model: dict, disclaimer: str) -> str:
    """``findings/study-NNN.md``: per series, each structure's volume and the lesions found."""
    lines = [f"# Study {study['study']:03d}: findings", "",
             f"Model {model['name']} v{model['version']} ({model['architecture']}, 3D "
             f"segmentation of {', '.join(model['classes'][1:])}).", ""]
    for series in study["series"]:
        lines += [f"## Series {series['series']:03d} ({series['slices']} slices, spacing "
                  f"{series['spacing_mm']} mm)", ""]
        if series.get("out_of_domain"):
            lines += [f"**OUT OF DOMAIN ({'; '.join(series['out_of_domain'])}; segmented only "
                      "because of --allow-out-of-domain)**", ""]
        lines += ["| structure | volume (mL) | lesions | "
                  "largest diameter (mm) |", "|---|---:|---:|---:|"]
        for name, entry in series["structures"].items():
            lesions = entry["lesions"]
            count = "" if lesions is None else str(len(lesions))
            widest = "" if not lesions else f"{max(l['diameter_mm'] for l in lesions):.1f}"
            lines.append(f"| {name} | {entry['volume_ml']:.2f} | {count} | {widest} |")
        listed = [(name, item) for name, entry in series["structures"].items()
                  for item in entry["lesions"] or []]
        if listed:
            lines += ["", "Lesions (largest first):", ""]
            lines += [f"- {name} {item['lesion']}: {item['volume_ml']:.3f} mL, longest diameter "
                      f"{item['diameter_mm']:.1f} mm, slices {item['first_slice']}–"
                      f"{item['last_slice']}" for name, item in listed[:REPORT_LESIONS]]
            if len(listed) > REPORT_LESIONS:
                lines.append(f"- … and {len(listed) - REPORT_LESIONS} smaller (lesions.csv lists "
                             "all)")
        else:
            lines += ["", "No lesion found."]
        lines += ["", f"DICOM SEG: `{series['seg']}`", ""]
    if study.get("not_analysed"):
        from medzoo.deploy.findings import not_analysed_lines

        lines += [*not_analysed_lines(study["not_analysed"]), ""]
    lines += ["---", "", disclaimer, ""]
    return "\n".join(lines)
