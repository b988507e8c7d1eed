"""Losses and metrics as serialisable Keras objects: Dice, Dice + BCE, focal, Tversky, IoU.

Each is a pure function of arrays (``soft_dice``, ``tversky_index``, ``binary_focal``,
``sparse_focal``, ``iou``) with a thin Keras wrapper, so values can be checked by hand.
"""

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


def tversky_index(y_true, y_pred, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0):
    """Per-image Tversky index (TP + s) / (TP + α·FP + β·FN + s); α = β = 0.5 is soft Dice.

    β > α penalises missed lesion pixels (FN) more than false alarms (FP).
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    true_pos = ops.sum(y_true * y_pred, axis=axes)
    false_pos = ops.sum((1.0 - y_true) * y_pred, axis=axes)
    false_neg = ops.sum(y_true * (1.0 - y_pred), axis=axes)
    return (true_pos + smooth) / (true_pos + alpha * false_pos + beta * false_neg + smooth)


def binary_focal(y_true, y_pred, gamma: float = 2.0, alpha: float | None = 0.25,
                 epsilon: float = 1e-7):
    """Per-image mean of −α_t (1 − p_t)^γ log p_t over every element (Lin et al. 2017).

    ``y_pred`` holds probabilities; p_t = p where the target is 1, 1 − p where it is 0;
    α_t = α for targets 1 and 1 − α for targets 0 (``alpha=None``: no weighting).
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    p = ops.clip(y_pred, epsilon, 1.0 - epsilon)
    p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
    loss = -ops.power(1.0 - p_t, gamma) * ops.log(p_t)
    if alpha is not None:
        loss = (y_true * alpha + (1.0 - y_true) * (1.0 - alpha)) * loss
    return ops.mean(loss, axis=tuple(range(1, len(y_pred.shape))))


def sparse_focal(y_true, y_pred, gamma: float = 2.0, alpha=None, epsilon: float = 1e-7):
    """Per-sample −α_y (1 − p_y)^γ log p_y for integer labels ``y_true`` (B,) and softmax (B, K).

    ``alpha``: None (no weighting) or one weight per class.
    """
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    one_hot = ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
    p_t = ops.clip(ops.sum(one_hot * y_pred, axis=-1), epsilon, 1.0)
    loss = -ops.power(1.0 - p_t, gamma) * ops.log(p_t)
    if alpha is not None:
        loss = ops.sum(one_hot * ops.convert_to_tensor(alpha, y_pred.dtype), axis=-1) * loss
    return loss


def iou(y_true, y_pred, smooth: float = 1e-6):
    """Per-image intersection over union |A∩B| / |A∪B| of (soft) masks; two empty masks → 1."""
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    union = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes) - intersection
    return (intersection + smooth) / (union + smooth)


@keras.saving.register_keras_serializable(package="medzoo")
class TverskyLoss(keras.losses.Loss):
    """1 − Tversky index, averaged over the batch (α weighs FP, β weighs FN)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0,
                 name: str = "tversky_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha, self.beta, self.smooth = float(alpha), float(beta), float(smooth)

    def call(self, y_true, y_pred):
        return 1.0 - tversky_index(y_true, y_pred, self.alpha, self.beta, self.smooth)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta,
                "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="medzoo")
class BinaryFocalLoss(keras.losses.Loss):
    """Focal loss on sigmoid outputs (masks, or binary scores): down-weights easy pixels."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25, name: str = "binary_focal",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def call(self, y_true, y_pred):
        return binary_focal(y_true, y_pred, self.gamma, self.alpha)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="medzoo")
class SparseFocalLoss(keras.losses.Loss):
    """Focal loss on softmax outputs with integer labels (classifiers' ``probabilities``)."""

    def __init__(self, gamma: float = 2.0, alpha=None, name: str = "sparse_focal", **kwargs):
        super().__init__(name=name, **kwargs)
        if alpha is not None and not isinstance(alpha, (list, tuple)):
            raise ValueError("Argument `alpha` must be None or one weight per class. "
                             f"Received: alpha={alpha!r}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else [float(a) for a in alpha]

    def call(self, y_true, y_pred):
        return sparse_focal(y_true, y_pred, self.gamma, self.alpha)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="medzoo")
class IoUScore(keras.metrics.MeanMetricWrapper):
    """Mean hard IoU (prediction thresholded at ``threshold``) over the images seen."""

    def __init__(self, threshold: float = 0.5, name: str = "iou", **kwargs):
        super().__init__(fn=self._iou, name=name, **kwargs)
        self.threshold = threshold

    def _iou(self, y_true, y_pred):
        return iou(y_true, ops.cast(y_pred > self.threshold, y_pred.dtype))

    def get_config(self):
        return {"threshold": self.threshold, "name": self.name, "dtype": self.dtype}


def multiclass_soft_dice(y_true, y_pred, smooth: float = 1e-5, *, over_batch: bool = False):
    """Per-sample, per-class soft Dice ``(B, K)`` of one-hot ``y_true`` and softmax ``y_pred``
    (both ``(B, *spatial, K)``); with ``over_batch``, per class over the whole batch ``(K,)``."""
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(0 if over_batch else 1, len(y_pred.shape) - 1))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return (2.0 * intersection + smooth) / (total + smooth)


@keras.saving.register_keras_serializable(package="medzoo")
class DiceCELoss(keras.losses.Loss):
    """Multi-class segmentation loss (nnU-Net's): categorical cross-entropy over voxels plus
    1 − mean soft Dice over the foreground classes (background excluded, as nnU-Net does).

    ``y_true``: one-hot ``(B, *spatial, K)``; ``y_pred``: softmax probabilities, same shape.
    ``batch_dice`` (nnU-Net's default for 3D): each class's Dice is computed over the whole
    batch of patches rather than per patch. Per patch, a class absent from the patch scores
    smooth / (its predicted mass + smooth) — near 0 for any prediction at all — so with small
    structures (a lesion is absent from most patches) the loss teaches the network never to
    predict them; over the batch, a lesion in any patch makes its Dice a real overlap measure.
    """

    def __init__(self, smooth: float = 1e-5, ce_weight: float = 1.0, batch_dice: bool = False,
                 name: str = "dice_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)
        self.ce_weight = float(ce_weight)
        self.batch_dice = bool(batch_dice)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        ce = ops.mean(keras.losses.categorical_crossentropy(y_true, y_pred),
                      axis=tuple(range(1, len(y_pred.shape) - 1)))
        dice = multiclass_soft_dice(y_true, y_pred, self.smooth, over_batch=self.batch_dice)
        # over the batch: one value, carried by every sample (the batch mean is unchanged)
        return 1.0 - ops.mean(dice[..., 1:], axis=-1) + self.ce_weight * ce

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth, "ce_weight": self.ce_weight,
                "batch_dice": self.batch_dice}


@keras.saving.register_keras_serializable(package="medzoo")
class ForegroundDice(keras.metrics.MeanMetricWrapper):
    """Mean hard Dice over the foreground classes of argmax predictions (one-hot targets);
    a class absent from both target and prediction of a sample counts as 1."""

    def __init__(self, name: str = "dice", **kwargs):
        super().__init__(fn=self._dice, name=name, **kwargs)

    @staticmethod
    def _dice(y_true, y_pred):
        hard = ops.one_hot(ops.argmax(y_pred, axis=-1), y_pred.shape[-1], dtype=y_pred.dtype)
        return ops.mean(multiclass_soft_dice(y_true, hard, smooth=1e-6)[:, 1:], axis=-1)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
