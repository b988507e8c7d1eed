"""The one splitter: patient-grouped, label-stratified K folds from a seed.

The promise (as scikit-learn's StratifiedGroupKFold makes it): no patient appears in two folds.
:func:`check_grouped` verifies it; ingest calls it on every split it writes.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from medzoo.errors import InputError


def patient_folds(patients, labels, folds: int, seed: int) -> dict:
    """Give every patient one fold in ``0..folds-1``.

    Parameters
    ----------
    patients : sequence of str
        Patient key per record (any order; first appearance fixes the patient order).
    labels : sequence of int
        Class index per record. A patient's label is its most common one (ties: lowest index).
    folds : int
        Number of folds (≥ 2).
    seed : int
        Same seed and inputs → same folds.

    Returns
    -------
    dict
        ``{patient: fold}``.

    Raises
    ------
    InputError
        When there are fewer patients than folds, or only one class.
    """
    folds = int(folds)
    if folds < 2:
        raise InputError(f"Folds must be >= 2. Received: folds={folds}")
    per_patient: dict[str, Counter] = {}
    for p, y in zip(patients, labels):
        per_patient.setdefault(p, Counter())[int(y)] += 1
    if len(per_patient) < folds:
        raise InputError(f"Splitting into {folds} patient-grouped folds needs at least {folds} "
                         f"patients. Received: {len(per_patient)} patients")
    patient_label = {p: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0]
                     for p, c in per_patient.items()}
    classes = sorted(set(patient_label.values()))
    if len(classes) < 2:
        raise InputError("Stratified folds need at least two classes among patients. "
                         f"Received: one class (index {classes[0]})")
    rng = np.random.default_rng(int(seed))
    size = {p: sum(c.values()) for p, c in per_patient.items()}
    fold_total = [0] * folds
    assignment = {}
    for y in classes:
        group = [p for p in per_patient if patient_label[p] == y]
        group = [group[i] for i in rng.permutation(len(group))]
        fold_class = [0] * folds
        for p in group:
            f = min(range(folds), key=lambda i: (fold_class[i], fold_total[i], i))
            assignment[p] = f
            fold_class[f] += size[p]
            fold_total[f] += size[p]
    return assignment


def check_grouped(patients, record_folds) -> None:
    """Raise AssertionError if a patient's records lie in more than one fold (the promise)."""
    seen: dict = {}
    for p, f in zip(patients, record_folds):
        if seen.setdefault(p, f) != f:
            raise AssertionError("patient-grouped split broken: one patient in two folds")


def fold_assignment(ds_dir, folds: int, seed: int) -> dict:
    """``{record_id: fold}`` for a dataset dir.

    index.csv's folds when ``(folds, seed)`` equal the dataset's; otherwise recomputed with the
    same splitter from index.csv's patient keys and labels.

    Raises
    ------
    InputError
        Not a dataset dir, fewer patients than folds, or one class.
    """
    from medzoo.datasets.manifest import read_dataset_info, read_index

    info = read_dataset_info(ds_dir)
    index = read_index(ds_dir)
    if int(info.get("folds", -1)) == int(folds) and int(info.get("seed", -1)) == int(seed):
        return {r["record_id"]: r["fold"] for r in index}
    pats = [r["patient"] for r in index]
    by_patient = patient_folds(pats, [r["label"] for r in index], folds, seed)
    result = {r["record_id"]: by_patient[r["patient"]] for r in index}
    check_grouped(pats, [result[r["record_id"]] for r in index])
    return result
