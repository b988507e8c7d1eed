"""The zoo's registry: ``@register("name", task=...)`` on a builder function.

A builder takes ``input_shape`` (H, W, C) or (D, H, W, C), ``num_classes`` and keyword options,
and returns an uncompiled ``keras.Model`` whose input is named ``image`` and whose output is
``probabilities`` (classification) or ``mask`` (segmentation). Tests are parametrised over
:func:`names`, so a newly registered model is tested with no new test code.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

TASKS = ("classification", "segmentation")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    builder: Callable
    description: str
    default_channels: int = 1  # channels it is described and tested with (fusion: one per modality)


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, *, task: str, default_channels: int = 1) -> Callable:
    """Register ``builder`` under ``name``; raises ``ValueError`` on a duplicate name or bad task.

    ``default_channels``: the channel count the model is described and tested with (fusion models
    take one channel per modality); builders still accept any count they support.
    """
    if task not in TASKS:
        raise ValueError(f"Argument `task` must be one of {TASKS}. Received: task={task!r}")
    if int(default_channels) < 1:
        raise ValueError("Argument `default_channels` must be >= 1. "
                         f"Received: default_channels={default_channels}")

    def decorate(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"A model named {name!r} is already registered.")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelEntry(name, task, builder, doc[0] if doc else "",
                                     int(default_channels))
        return builder

    return decorate


def _load_families() -> None:
    # Importing a family module registers its models; done lazily so `import registry` stays cheap.
    from medzoo.zoo import applications, classifiers, fusion, unet, unetr_pp  # noqa: F401


def names() -> list[str]:
    """Names of every registered model, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def get(name: str) -> ModelEntry:
    """The entry registered as ``name``; ``KeyError`` lists the names that exist."""
    _load_families()
    if name not in _REGISTRY:
        raise KeyError(f"Unknown model {name!r}. Expected one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build(name: str, input_shape, num_classes: int, **options):
    """Build model ``name`` for ``input_shape`` and ``num_classes`` with builder ``options``."""
    return get(name).builder(tuple(input_shape), int(num_classes), **options)
