import collections

import pytest

from medzoo.datasets.splits import check_grouped, fold_assignment, patient_folds
from medzoo.errors import InputError


def _records(n_patients, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    patients, labels = [], []
    for p in range(n_patients):
        n = int(rng.integers(1, 6))
        y = int(rng.integers(0, 3))
        patients += [f"p{p}"] * n
        labels += [y if rng.random() > 0.2 else (y + 1) % 3 for _ in range(n)]
    return patients, labels


@pytest.mark.parametrize("folds", [2, 3, 5])
@pytest.mark.parametrize("seed", range(6))
def test_no_patient_on_both_sides_of_any_split(folds, seed):
    patients, labels = _records(23, seed)
    assign = patient_folds(patients, labels, folds, seed)
    record_folds = [assign[p] for p in patients]
    check_grouped(patients, record_folds)
    assert set(assign.values()) == set(range(folds))
    for test in range(folds):  # every train/test split the folds give
        train_p = {p for p, f in zip(patients, record_folds) if f != test}
        test_p = {p for p, f in zip(patients, record_folds) if f == test}
        assert train_p and test_p and not train_p & test_p


def test_stratified_and_deterministic():
    patients = [f"p{i}" for i in range(40)]
    labels = [i % 2 for i in range(40)]
    a = patient_folds(patients, labels, 4, seed=1)
    assert a == patient_folds(patients, labels, 4, seed=1)
    assert a != patient_folds(patients, labels, 4, seed=2)
    per = collections.Counter((a[p], y) for p, y in zip(patients, labels))
    assert all(per[(f, y)] == 5 for f in range(4) for y in (0, 1))


def test_errors_say_what_was_received():
    with pytest.raises(InputError, match="at least 5 patients. Received: 3 patients"):
        patient_folds(["a", "b", "c"], [0, 1, 0], 5, 0)
    with pytest.raises(InputError, match="one class"):
        patient_folds(["a", "b", "c"], [1, 1, 1], 2, 0)


def test_fold_assignment_reuses_or_recomputes(dataset):
    from medzoo.datasets.manifest import read_index

    ds, _, _ = dataset
    index = read_index(ds)
    same = fold_assignment(ds, 4, 0)
    assert same == {r["record_id"]: r["fold"] for r in index}
    other = fold_assignment(ds, 2, 5)
    assert set(other) == set(same) and set(other.values()) == {0, 1}
    check_grouped([r["patient"] for r in index], [other[r["record_id"]] for r in index])
