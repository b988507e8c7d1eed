"""What an export's outputs mean for ``predict``: one score per image (and a lesion mask for
segmenters) from a batch of raw-signature outputs, and the class a score predicts at the model's
threshold.
"""

from __future__ import annotations

import numpy as np

from medzoo.datasets import dicom

__all__ = ["scores", "full_size_mask", "predicted_class"]


def scores(model, outputs: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores (batch,) and, for segmenters, the model-size masks (batch, rows, cols) of a batch.

    Parameters
    ----------
    model : medzoo.deploy.exported.ExportedModel
    outputs : dict
        The runtime's outputs: ``mask`` (and ``score``) of segmenters, ``probabilities`` of
        classifiers.

    Returns
    -------
    tuple
        A segmenter's score is its ``score`` output, else the mask's maximum. A classifier's is
        the most probable declared finding (multi-label), p(positive class) (two classes), or
        1 − p(first class) (several classes: "anything but the first, negative, class").
        Masks are None for classifiers.
    """
    if model.task == "segmentation":
        mask = np.asarray(outputs["mask"], np.float32)
        score = outputs.get("score")
        score = (np.asarray(score, np.float32).reshape(-1) if score is not None
                 else mask.reshape(len(mask), -1).max(1))
        return score, mask[..., 0]
    probabilities = np.asarray(outputs["probabilities"], np.float32)
    if model.multi_label and model.findings:  # the most probable finding
        return probabilities[:, [int(r["index"]) for r in model.findings]].max(1), None
    if probabilities.shape[1] == 2:
        return probabilities[:, 1], None
    return 1.0 - probabilities[:, 0], None  # "anything but the first (negative) class"


def full_size_mask(model, mask: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """A model-size probability mask → the boolean lesion mask on the source image's grid."""
    full = dicom.resize_bilinear(mask, (rows, columns))
    return full >= model.threshold


def predicted_class(model, score: float) -> str:
    """The class ``score`` predicts at the model's threshold (``lesion`` / ``no lesion`` for
    segmenters and one-class models)."""
    classes, threshold = model.classes, model.threshold
    if model.task == "segmentation" or len(classes) < 2:
        return "lesion" if score >= threshold else "no lesion"
    return classes[1] if score >= threshold else classes[0]
