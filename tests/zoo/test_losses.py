import numpy as np
import pytest

from medzoo.zoo import losses


@pytest.mark.parametrize("cls", [losses.DiceLoss, losses.DiceBCELoss, losses.DiceScore])
def test_config_round_trip(cls):
    obj = cls()
    clone = cls.from_config(obj.get_config())
    assert clone.get_config() == obj.get_config()


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
