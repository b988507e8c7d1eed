import numpy as np
import pytest

from medzoo.datasets.info import describe
from medzoo.datasets.manifest import read_index
from medzoo.datasets.pipeline import make_dataset
from medzoo.datasets.records import read_records
from medzoo.errors import InputError


def test_label_batches_of_one_fold(dataset):
    ds, _, _ = dataset
    index = read_index(ds)
    ids = [r["record_id"] for r in index if r["fold"] == 1]
    data = make_dataset(ds, ids, target="label", batch_size=4, shuffle=False)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in data])
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert images.shape == (len(ids), 32, 32, 1) and images.dtype == np.float32
    assert labels.dtype == np.int32
    expected = {r["record_id"]: r for r in read_records(ds, ids)}
    np.testing.assert_array_equal(images, np.stack([expected[i]["image"] for i in ids]))
    np.testing.assert_array_equal(labels, [expected[i]["label"] for i in ids])


def test_shuffle_is_seeded(dataset):
    ds, _, _ = dataset

    def order(seed):
        return np.concatenate([y.numpy().ravel() for _, y in
                               make_dataset(ds, None, target="label", batch_size=24, seed=seed)])

    firsts = [x.numpy() for x, _ in make_dataset(ds, None, target="label", batch_size=24, seed=3)]
    again = [x.numpy() for x, _ in make_dataset(ds, None, target="label", batch_size=24, seed=3)]
    np.testing.assert_array_equal(firsts[0], again[0])
    assert sorted(order(1)) == sorted(order(2))


def test_augment_moves_image_and_mask_together(dataset):
    ds, _, _ = dataset
    lesion_ids = [r["record_id"] for r in read_index(ds) if r["label"] == 1]
    plain = make_dataset(ds, lesion_ids, target="mask", batch_size=64, shuffle=False)
    aug = make_dataset(ds, lesion_ids, target="mask", batch_size=64, shuffle=False, augment=True,
                       seed=4)
    (x0, m0), = [(x.numpy(), m.numpy()) for x, m in plain]
    (x1, m1), = [(x.numpy(), m.numpy()) for x, m in aug]
    assert m1.dtype == np.float32 and set(np.unique(m1)) <= {0.0, 1.0}
    assert not np.array_equal(x0, x1)
    assert m1.sum() > 0.8 * m0.sum()
    # after the same flip/shift the mask still covers bright lesion pixels
    assert x1[m1 == 1].mean() > 0.8 and x1[m1 == 1].mean() > x1[m1 == 0].mean() + 0.2


def test_bad_target(dataset):
    ds, _, _ = dataset
    with pytest.raises(InputError, match="Received: target='box'"):
        make_dataset(ds, None, target="box")


def test_describe(dataset):
    ds, _, _ = dataset
    text = describe(ds)
    assert "per class: normal 12, lesion 12" in text
    assert "per modality: CT 24" in text and "rejected by reason: none" in text
    assert "per fold (4 folds, seed 0)" in text
