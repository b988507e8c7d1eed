"""The zoo's registry: ``@register("name", task=...)`` on a builder function.

A builder takes ``input_shape`` (H, W, C) or (D, H, W, C), ``num_classes`` and keyword options,
and returns an uncompiled ``keras.Model`` whose input is named ``image`` and whose output is
``probabilities`` (classification) or ``mask`` (segmentation). An ``augmentation`` builder (the
GAN) returns a model whose ``generator`` makes training images instead; ``medzoo train`` takes
only the :data:`PREDICTOR_TASKS`. Tests are parametrised over :func:`names`, so a newly
registered model is tested with no new test code.

A builder's keyword options (``medzoo models NAME``, ``train --option``) are read from its
signature, or from ``options_from`` for a thin variant that forwards ``**options`` to a shared
builder (less the ``fixed`` ones it sets itself); ``presets`` name sets of them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

PREDICTOR_TASKS = ("classification", "segmentation")  # what `medzoo train` fits and exports
TASKS = PREDICTOR_TASKS + ("augmentation",)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    builder: Callable
    description: str
    default_channels: int = 1  # channels it is described and tested with (fusion: one per modality)
    options_from: Callable | None = None  # where its options are declared, if not the builder
    fixed: tuple[str, ...] = ()  # options of `options_from` that the builder sets itself
    presets: Mapping[str, Mapping] = dataclasses.field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, *, task: str, default_channels: int = 1,
             options_from: Callable | None = None, fixed: tuple[str, ...] = (),
             presets: Mapping[str, Mapping] | None = None) -> Callable:
    """Register ``builder`` under ``name``; raises ``ValueError`` on a duplicate name or bad task.

    Parameters
    ----------
    task : one of :data:`TASKS`
    default_channels : int
        The channel count the model is described and tested with (fusion models take one
        channel per modality); builders still accept any count they support.
    options_from : callable, optional
        The shared builder whose keyword-only parameters are this model's options, for a thin
        variant that forwards ``**options`` to it (default: the registered builder itself).
    fixed : tuple of str
        Parameters of ``options_from`` that the variant sets itself (not user options).
    presets : {preset name: {option: value}}, optional
        Named option sets (``--option preset=NAME``), e.g. sizes ``small``/``base``/``large``.
    """
    if task not in TASKS:
        raise ValueError(f"Argument `task` must be one of {TASKS}. Received: task={task!r}")
    if int(default_channels) < 1:
        raise ValueError("Argument `default_channels` must be >= 1. "
                         f"Received: default_channels={default_channels}")

    def decorate(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"A model named {name!r} is already registered.")
        summary = " ".join((builder.__doc__ or "").strip().split("\n\n")[0].split())
        _REGISTRY[name] = ModelEntry(name, task, builder, summary,
                                     int(default_channels), options_from, tuple(fixed),
                                     dict(presets or {}))
        return builder

    return decorate


def _load_families() -> None:
    # Importing a family module registers its models; done lazily so `import registry` stays cheap.
    from medzoo.zoo import applications, classifiers, fusion, gan, unet, unetr_pp  # noqa: F401


def names(tasks: tuple[str, ...] = TASKS) -> list[str]:
    """Names of the registered models of ``tasks`` (default: all), sorted."""
    _load_families()
    return sorted(name for name, entry in _REGISTRY.items() if entry.task in tasks)


def get(name: str) -> ModelEntry:
    """The entry registered as ``name``; ``KeyError`` lists the names that exist."""
    _load_families()
    if name not in _REGISTRY:
        raise KeyError(f"Unknown model {name!r}. Expected one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build(name: str, input_shape, num_classes: int, **options):
    """Build model ``name`` for ``input_shape`` and ``num_classes`` with builder ``options``."""
    return get(name).builder(tuple(input_shape), int(num_classes), **options)
