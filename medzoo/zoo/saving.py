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
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: refused to load the model ({reason[:300]})") from exc
