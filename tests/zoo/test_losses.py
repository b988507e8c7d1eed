import math

import numpy as np
import pytest

from medzoo.zoo import losses

ALL = [losses.DiceLoss, losses.DiceBCELoss, losses.DiceScore, losses.TverskyLoss,
       losses.BinaryFocalLoss, losses.SparseFocalLoss, losses.IoUScore]


@pytest.mark.parametrize("cls", ALL)
def test_config_round_trip(cls):
    obj = cls()
    clone = cls.from_config(obj.get_config())
    assert clone.get_config() == obj.get_config()


@pytest.mark.parametrize("obj", [losses.TverskyLoss(alpha=0.2, beta=0.8, smooth=0.5),
                                 losses.BinaryFocalLoss(gamma=1.5, alpha=None),
                                 losses.SparseFocalLoss(gamma=3.0, alpha=[0.25, 0.75]),
                                 losses.IoUScore(threshold=0.3)])
def test_non_default_options_survive_the_round_trip(obj):
    import keras

    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(clone) is type(obj) and clone.get_config() == obj.get_config()


def _masks():
    true = np.zeros((1, 4, 4, 1), "float32")
    true[0, :2, :2] = 1  # 4 pixels
    pred = np.zeros_like(true)
    pred[0, :2, :1] = 1  # 2 pixels, both inside
    pred[0, 3, 3] = 1    # 1 pixel outside
    return true, pred


def test_dice_of_known_masks():
    true = np.zeros((1, 4, 4, 1), "float32")
    true[0, :2, :2] = 1  # 4 pixels
    pred = np.zeros_like(true)
    pred[0, :2, :1] = 1  # 2 pixels, all inside
    # Dice = 2*2 / (4 + 2) = 0.6667
    score = losses.DiceScore()
    score.update_state(true, pred)
    assert float(score.result()) == pytest.approx(2 / 3, abs=1e-5)
    assert float(losses.DiceLoss(smooth=0.0)(true, pred)) == pytest.approx(1 / 3, abs=1e-5)


def test_empty_masks_score_one():
    empty = np.zeros((2, 4, 4, 1), "float32")
    score = losses.DiceScore()
    score.update_state(empty, empty)
    assert float(score.result()) == pytest.approx(1.0)
    iou = losses.IoUScore()
    iou.update_state(empty, empty)
    assert float(iou.result()) == pytest.approx(1.0)


def test_tversky_of_known_masks():
    true, pred = _masks()  # TP = 2, FP = 1, FN = 2
    # 1 − 2 / (2 + 0.3·1 + 0.7·2) = 1 − 2 / 3.7
    assert float(losses.TverskyLoss(smooth=0.0)(true, pred)) == pytest.approx(1 - 2 / 3.7, abs=1e-5)
    # α = β = 0.5 is Dice: 2·2 / (4 + 3)
    assert float(losses.TverskyLoss(0.5, 0.5, smooth=0.0)(true, pred)) == pytest.approx(
        float(losses.DiceLoss(smooth=0.0)(true, pred)), abs=1e-6)


def test_iou_of_known_masks():
    true, pred = _masks()  # |A∩B| = 2, |A∪B| = 4 + 3 − 2 = 5
    score = losses.IoUScore()
    score.update_state(true, pred * 0.9)  # thresholded at 0.5: same masks
    assert float(score.result()) == pytest.approx(2 / 5, abs=1e-5)


def test_binary_focal_worked_example():
    true = np.array([[1.0, 0.0]], "float32")
    pred = np.array([[0.9, 0.2]], "float32")
    # target 1, p_t = 0.9: 0.25 · 0.1² · −ln 0.9 ;  target 0, p_t = 0.8: 0.75 · 0.2² · −ln 0.8
    expected = (0.25 * 0.01 * -math.log(0.9) + 0.75 * 0.04 * -math.log(0.8)) / 2
    assert float(losses.BinaryFocalLoss()(true, pred)) == pytest.approx(expected, rel=1e-5)
    # γ = 0 and no α: plain binary cross-entropy
    bce = -(math.log(0.9) + math.log(0.8)) / 2
    assert float(losses.BinaryFocalLoss(gamma=0.0, alpha=None)(true, pred)) == pytest.approx(
        bce, rel=1e-5)


def test_sparse_focal_worked_example():
    labels = np.array([0, 2], "int32")
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.3, 0.5]], "float32")
    # p_y = 0.9 and 0.5: mean of 0.1² · −ln 0.9 and 0.5² · −ln 0.5
    expected = (0.01 * -math.log(0.9) + 0.25 * -math.log(0.5)) / 2
    assert float(losses.SparseFocalLoss()(labels, probs)) == pytest.approx(expected, rel=1e-5)
    weighted = losses.SparseFocalLoss(alpha=[1.0, 1.0, 0.0])(labels, probs)
    assert float(weighted) == pytest.approx(0.01 * -math.log(0.9) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="one weight per class. Received: alpha=0.25"):
        losses.SparseFocalLoss(alpha=0.25)
