"""Segmentation losses and metrics as serialisable Keras objects (soft Dice, Dice + BCE)."""

from __future__ import annotations

import keras
from keras import ops


def soft_dice(y_true, y_pred, smooth: float = 1.0):
    """Per-image soft Dice over all spatial positions: (2|A∩B| + s) / (|A| + |B| + s)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return (2.0 * intersection + smooth) / (total + smooth)


@keras.saving.register_keras_serializable(package="medzoo")
class DiceLoss(keras.losses.Loss):
    """1 − soft Dice, averaged over the batch."""

    def __init__(self, smooth: float = 1.0, name: str = "dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = smooth

    def call(self, y_true, y_pred):
        return 1.0 - soft_dice(y_true, y_pred, self.smooth)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="medzoo")
class DiceBCELoss(keras.losses.Loss):
    """Soft Dice loss plus binary cross-entropy: Dice handles imbalance, BCE gives smooth gradients."""

    def __init__(self, smooth: float = 1.0, bce_weight: float = 1.0, name: str = "dice_bce",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = smooth
        self.bce_weight = bce_weight

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred),
                       axis=tuple(range(1, len(y_pred.shape) - 1)))
        return 1.0 - soft_dice(y_true, y_pred, self.smooth) + self.bce_weight * bce

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth, "bce_weight": self.bce_weight}


@keras.saving.register_keras_serializable(package="medzoo")
class DiceScore(keras.metrics.MeanMetricWrapper):
    """Mean hard Dice (prediction thresholded at 0.5) over the images seen."""

    def __init__(self, threshold: float = 0.5, name: str = "dice", **kwargs):
        super().__init__(fn=self._dice, name=name, **kwargs)
        self.threshold = threshold

    def _dice(self, y_true, y_pred):
        return soft_dice(y_true, ops.cast(y_pred > self.threshold, y_pred.dtype), smooth=1e-6)

    def get_config(self):
        return {"threshold": self.threshold, "name": self.name, "dtype": self.dtype}
