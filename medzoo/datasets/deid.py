"""Pseudonyms and PHI rules.

Patients, studies and series are keyed by ``HMAC-SHA256(key, "<kind>:<identifier>")`` (first 16
hex). The key stays with the dataset owner (a file outside the dataset dir), so the pseudonyms in a
dataset cannot be reversed or recomputed by anyone who holds only the dataset.

Nothing medzoo writes holds PatientName, PatientID, PatientBirthDate, AccessionNumber,
InstitutionName, any UID, or the patient folder name.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from medzoo.errors import InputError

KEY_ENV = "MEDZOO_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/medzoo/pseudonym.key")


def default_key_file() -> Path:
    """``$MEDZOO_KEY_FILE`` if set, else ``~/.config/medzoo/pseudonym.key``."""
    env = os.environ.get(KEY_ENV)
    return Path(env).expanduser() if env else DEFAULT_KEY_FILE.expanduser()


def load_or_create_key(key_file=None) -> bytes:
    """Load the pseudonym key, creating it (32 random bytes, hex, mode 0600) on first use.

    Parameters
    ----------
    key_file : path-like, optional
        Defaults to :func:`default_key_file`.

    Returns
    -------
    bytes
        The 32-byte key.

    Raises
    ------
    InputError
        When the file exists but does not hold 64 hex characters.
    """
    path = Path(key_file).expanduser() if key_file else default_key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created concurrently: read it below
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise InputError(f"Pseudonym key file {path} must hold 64 hex characters. "
                         f"Received: {len(text)} characters")
    return key


def key_fingerprint(key: bytes) -> str:
    """First 12 hex of sha256(key): names the key that made a dataset's pseudonyms."""
    return hashlib.sha256(key).hexdigest()[:12]


def pseudonym(key: bytes, kind: str, identifier: str) -> str:
    """First 16 hex of ``HMAC-SHA256(key, kind + ":" + identifier)``."""
    return hmac.new(key, f"{kind}:{identifier}".encode("utf-8"), hashlib.sha256).hexdigest()[:16]
