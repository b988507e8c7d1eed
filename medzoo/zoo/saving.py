"""Load ``.keras`` files safely: ``safe_mode=True`` always, medzoo's custom objects registered."""

from __future__ import annotations

from pathlib import Path

from medzoo.errors import InputError


def register_custom_objects() -> None:
    """Import every module that registers medzoo's serialisable layers, losses and metrics."""
    from medzoo.zoo import losses, registry  # noqa: F401

    registry.names()  # imports every family, registering its custom layers


def load_model(path, *, compile: bool = False):
    """Load a ``.keras`` model with ``safe_mode=True``.

    Parameters
    ----------
    path : str or Path
        A ``.keras`` file written by medzoo (or any Keras 3 file without unsafe parts).
    compile : bool
        Restore the optimizer and loss too (needed only to continue training).

    Raises
    ------
    InputError
        The file is missing, not a ``.keras`` archive, or holds a Lambda layer or an unknown class
        (which ``safe_mode`` refuses: such a file could run arbitrary code).
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected a .keras model file; it does not exist")
    register_custom_objects()
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # keras raises ValueError/TypeError/zipfile errors alike
        raise InputError(f"{path}: refused to load the model ({_reason(exc)})") from exc


def _reason(exc: Exception) -> str:
    """One short line saying why Keras refused a file (its own messages run over many lines)."""
    import re

    text = str(exc)
    unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if "Lambda" in text and ("arbitrary code" in text or "safe_mode" in text):
        return ("it holds a Lambda layer, i.e. Python code; medzoo loads models in safe mode "
                "only and never runs code from a model file")
    if unknown:
        return (f"it names an unknown class {unknown.group(1)!r}, which is neither Keras' nor "
                "medzoo's; safe mode loads registered classes only")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]
