"""Patch sampling for 3D training: sizes, foreground oversampling share, padding, augmentation
that keeps image and labels aligned, and the tf.data pipeline over a native-volume dataset."""

import numpy as np
import pytest

from medzoo.datasets.patches import PatchSampler, load_volumes, make_patch_dataset
from volume_data import LABEL_CLASSES, write_volume_dataset


def labelled_volume(shape=(20, 40, 40)):
    labels = np.zeros(shape, np.uint8)
    labels[8:12, 18:22, 18:22] = 2  # one small "lesion": 64 voxels of 32000
    labels[2:5, 2:30, 2:30] = 1
    image = (labels.astype(np.float32) * 10 + 5)[..., None]
    return image, labels


def test_forced_share_is_exactly_a_third():
    sampler = PatchSampler([labelled_volume()], (8, 16, 16), 3)
    forced = [sampler.forced(i) for i in range(300)]
    assert sum(forced) == 100
    assert all(sum(forced[i:i + 3]) == 1 for i in range(0, 300, 3))


def test_oversampled_patches_hold_foreground_and_every_class_is_picked():
    image, labels = labelled_volume((40, 96, 96))
    sampler = PatchSampler([(image, labels)], (8, 16, 16), 3, foreground_oversample=1.0, seed=1)
    seen = [np.unique(sampler.sample()[1]) for _ in range(60)]
    assert all(len(s) > 1 for s in seen)  # every patch holds a foreground voxel
    with_lesion = sum(2 in s for s in seen)
    assert 20 <= with_lesion <= 45  # class picked uniformly: ~half, though 0.02 % of voxels
    random = PatchSampler([(image, labels)], (8, 16, 16), 3, foreground_oversample=0.0, seed=1)
    assert sum(2 in np.unique(random.sample()[1]) for _ in range(60)) < with_lesion / 2


def test_patch_shape_and_padding_of_a_small_volume():
    image, labels = labelled_volume((5, 12, 40))
    sampler = PatchSampler([(image, labels)], (8, 16, 16), 3, seed=0)
    for _ in range(10):
        x, y = sampler.sample()
        assert x.shape == (8, 16, 16, 1) and y.shape == (8, 16, 16)
        assert x.dtype == np.float32 and y.dtype == np.uint8
    # the padding is background with image 0
    assert sampler.volumes[0][1].shape == (8, 16, 40) and sampler.volumes[0][0][0].max() == 0


def test_augmentation_keeps_image_and_labels_aligned():
    image, labels = labelled_volume()
    sampler = PatchSampler([(image, labels)], (8, 16, 16), 3, augment=True, seed=3)
    agree = []
    for _ in range(40):
        x, y = sampler.sample()
        decoded = np.clip(np.rint((x[..., 0] - 5) / 10), 0, 2)  # intensity ±10 %, shift ~0.1
        agree.append(np.mean(decoded == y))
    assert np.mean(agree) > 0.97


def test_bad_arguments():
    with pytest.raises(ValueError, match="Label value 2 is outside the 2 classes"):
        PatchSampler([labelled_volume()], (8, 16, 16), 2)
    with pytest.raises(ValueError, match="3 positive sizes.*Received: patch_size=\\(8, 16\\)"):
        PatchSampler([labelled_volume()], (8, 16), 3)


def test_patch_dataset_over_a_volume_dataset(tmp_path):
    ds = write_volume_dataset(tmp_path / "ds", patients=4, folds=2)
    volumes = load_volumes(ds, ["r000", "r001"])
    assert volumes[0][0].ndim == 4 and volumes[0][1].max() == 2
    data = make_patch_dataset(ds, ["r000", "r001"], patch_size=(16, 32, 32), num_classes=3,
                              batch_size=2, patches_per_epoch=5, repeatable=True)
    batches = list(data)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    x, y = batches[0]
    assert x.shape == (2, 16, 32, 32, 1) and y.shape == (2, 16, 32, 32, len(LABEL_CLASSES))
    np.testing.assert_array_equal(np.asarray(y).sum(-1), 1.0)  # one-hot
    again = list(data)  # repeatable (validation): the same patches every pass
    np.testing.assert_array_equal(np.asarray(batches[1][0]), np.asarray(again[1][0]))
