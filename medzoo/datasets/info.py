"""`medzoo data info`: a dataset dir described in a few lines."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

from medzoo.datasets.domain import describe as describe_domain
from medzoo.datasets.manifest import read_dataset_info, read_index


def describe(ds_dir) -> str:
    """Counts per class, fold and modality, and rejects by reason, as printable text.

    Raises
    ------
    InputError
        When ``ds_dir`` is not a dataset dir.
    """
    info = read_dataset_info(ds_dir)
    index = read_index(ds_dir)
    classes = info["classes"]
    counts = info.get("counts", {})
    size = "x".join(str(v) for v in info["image_size"])  # H, W or, for volumes, D, H, W
    lines = [
        f"dataset {ds_dir}",
        f"  images {size}x{info.get('channels', 1)}, window {info.get('window')}, "
        f"masks {'yes' if info.get('has_mask') else 'no'}, key {info.get('key_fingerprint')}",
        f"  inputs {counts.get('inputs')}: loaded {counts.get('loaded')}, "
        f"rejected {counts.get('rejected')}; records {len(index)}, "
        f"patients {len({r['patient'] for r in index})}",
    ]
    if info.get("spacing_mode") == "native":
        plan = info.get("plan", {})
        lines.append(f"  volumes at {' x '.join(f'{v:g}' for v in plan.get('target_spacing', []))}"
                     f" mm (median shape above), voxel classes "
                     f"{', '.join(info.get('label_classes', []))}")
    per_class = collections.Counter(classes[r["label"]] for r in index)
    lines.append("  per class: " + ", ".join(f"{c} {per_class.get(c, 0)}" for c in classes))
    per_fold = collections.Counter(r["fold"] for r in index)
    lines.append(f"  per fold ({info.get('folds')} folds, seed {info.get('seed')}): "
                 + ", ".join(f"{f}: {per_fold.get(f, 0)}" for f in range(int(info.get("folds", 0)))))
    per_mod = collections.Counter(r["modality"] for r in index)
    lines.append("  per modality: " + ", ".join(f"{m} {n}" for m, n in sorted(per_mod.items())))
    lines.append(f"  domain: {describe_domain(info.get('domain'))}")
    rejected = Path(ds_dir) / "rejected.csv"
    reasons = collections.Counter()
    if rejected.is_file():
        with open(rejected, newline="") as fh:
            reasons.update(r["reason"] for r in csv.DictReader(fh))
    if reasons:
        lines.append("  rejected by reason: " + ", ".join(
            f"{reason} {n}" for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))))
    else:
        lines.append("  rejected by reason: none")
    return "\n".join(lines)
