"""Connections to a PACS: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and DIMSE (C-FIND, C-GET, C-STORE).

This module holds what both protocols share (credentials, addresses, errors, quiet library
loggers) and :func:`connect`; the clients are :class:`medzoo.pacs.dicomweb.DicomWebClient` and
:class:`medzoo.pacs.dimse.DimseClient`.

Both clients offer the same four calls — ``check()``, ``find_instances(query, study_uids)``,
``fetch(ref) -> bytes`` (one instance as a DICOM file) and ``store(datasets)`` — so that
:mod:`medzoo.pacs.pull` and :mod:`medzoo.deploy.send` do not care which protocol is on the wire.

Rules kept here:

* Credentials come from the environment (``MEDZOO_PACS_TOKEN``, or ``MEDZOO_PACS_USER`` +
  ``MEDZOO_PACS_PASSWORD``) or from an auth file (JSON or INI), never from the command line; a URL
  with ``user:password@`` in it is refused.
* TLS certificates are verified unless the caller asks for ``insecure`` explicitly.
* No message, exception or log record names a patient or a UID: errors say what failed and where
  (the server address, which is not PHI). The libraries' own loggers, which do print UIDs at INFO
  level, are held at ERROR while medzoo talks to a server (:func:`quiet_libraries`).
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from medzoo.errors import InputError

__all__ = ["PacsError", "TransientError", "Credentials", "InstanceRef", "DimseAddress",
           "load_credentials", "parse_dimse_address", "parse_query", "parse_target", "connect",
           "quiet_libraries"]

ENV_USER, ENV_PASSWORD, ENV_TOKEN = "MEDZOO_PACS_USER", "MEDZOO_PACS_PASSWORD", "MEDZOO_PACS_TOKEN"
ENV_AUTH_FILE = "MEDZOO_PACS_AUTH_FILE"
DEFAULT_CALLING_AET = "MEDZOO"
DEFAULT_TIMEOUT = 30.0
_CREDENTIAL_HINT = (f"set {ENV_USER}/{ENV_PASSWORD} or {ENV_TOKEN}, or pass --auth-file")


class PacsError(InputError):
    """The server cannot be used at all: unreachable, credentials refused, not a PACS.

    The command line turns it into one line and exit status 2.
    """


class TransientError(Exception):
    """One request failed in a way that may pass (5xx, timeout, dropped connection): retry it."""

    def __init__(self, reason: str, *, connection: bool = False, refused: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.connection = connection  # the server itself went away, not just this request
        self.refused = refused  # no connection could be made at all (nothing listens there)


class InstanceFailed(Exception):
    """One instance cannot be fetched (not found, refused); retrying will not help."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- credentials


@dataclasses.dataclass(frozen=True)
class Credentials:
    """HTTP credentials: a bearer token, or user + password (basic auth), or nothing."""

    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)

    def __bool__(self) -> bool:
        return bool(self.token or self.user)

    def apply(self, session) -> None:
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        elif self.user:
            session.auth = (self.user, self.password or "")


def load_credentials(auth_file=None, environ=None) -> Credentials:
    """Credentials from ``auth_file`` if given, else from the environment.

    Parameters
    ----------
    auth_file : path-like, optional
        Default: ``$MEDZOO_PACS_AUTH_FILE`` when set. JSON (``{"user": …, "password": …}``
        or ``{"token": …}``) or INI (those keys in a
        ``[pacs]`` section, or at the top). Keep it readable by its owner only.
    environ : mapping, optional
        Defaults to ``os.environ``: ``MEDZOO_PACS_TOKEN``, or ``MEDZOO_PACS_USER`` and
        ``MEDZOO_PACS_PASSWORD``.

    Raises
    ------
    InputError
        Missing or unreadable auth file, no usable key in it, a user without a password.
    """
    env = os.environ if environ is None else environ
    if auth_file is None and env.get(ENV_AUTH_FILE):
        auth_file = env[ENV_AUTH_FILE]
    if auth_file is not None:
        values = _read_auth_file(Path(auth_file).expanduser())
        where = f"auth file {auth_file}"
    else:
        values = {"user": env.get(ENV_USER), "password": env.get(ENV_PASSWORD),
                  "token": env.get(ENV_TOKEN)}
        where = f"environment ({ENV_USER}/{ENV_PASSWORD}, {ENV_TOKEN})"
    token = (values.get("token") or "").strip() or None
    user = (values.get("user") or values.get("username") or "").strip() or None
    password = values.get("password")
    if token:
        return Credentials(token=token)
    if user and password is None:
        raise InputError(f"PACS credentials from the {where}: expected a password with the user "
                         "name. Received: a user name only")
    if auth_file is not None and not user:
        raise InputError(f"Auth file {auth_file}: expected `user` and `password`, or `token`. "
                         "Received: neither")
    return Credentials(user=user, password=password)


def _read_auth_file(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"Auth file {path}: expected a JSON or INI file. Received: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise InputError(f"Auth file {path}: expected UTF-8 text. Received: unreadable") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise InputError(f"Auth file {path}: expected JSON. Received: invalid JSON") from None
        return {str(k).lower(): (None if v is None else str(v)) for k, v in data.items()}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text if text.lstrip().startswith("[") else "[pacs]\n" + text)
    except configparser.Error:
        raise InputError(f"Auth file {path}: expected JSON or INI (user=, password= or token=). "
                         "Received: neither") from None
    section = parser["pacs"] if parser.has_section("pacs") else (
        parser[parser.sections()[0]] if parser.sections() else {})
    return {k.lower(): v for k, v in dict(section).items()}


# --------------------------------------------------------------------------- addresses, queries


@dataclasses.dataclass(frozen=True)
class DimseAddress:
    called_aet: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}"


def parse_dimse_address(text: str) -> DimseAddress:
    """``AET@HOST:PORT`` (``dimse://`` prefix allowed) → :class:`DimseAddress`.

    Raises
    ------
    InputError
        On anything else (an AE title of 1–16 characters, a port in 1..65535).
    """
    raw = str(text)
    body = raw[len("dimse://"):] if raw.lower().startswith("dimse://") else raw
    aet, at, hostport = body.rpartition("@")
    host, colon, port = hostport.rpartition(":")
    ok = at and colon and host and aet and len(aet) <= 16 and port.isdigit()
    if not ok or not 0 < int(port) < 65536:
        raise InputError(f"DIMSE address must look like AET@HOST:PORT (e.g. ORTHANC@pacs:4242). "
                         f"Received: {raw!r}")
    return DimseAddress(called_aet=aet, host=host.strip("[]"), port=int(port))


def parse_target(url: str):
    """``--send``/pull target: ``("dicomweb", url)`` or ``("dimse", DimseAddress)``."""
    if str(url).lower().startswith("dimse://"):
        return "dimse", parse_dimse_address(url)
    return "dicomweb", check_web_url(url)


def check_web_url(url: str) -> str:
    """A DICOMweb base URL, without trailing slash; refuses credentials inside it."""
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("DICOMweb URL must start with http:// or https:// and name a host "
                         f"(e.g. https://pacs.example.org/dicom-web). Received: {safe_url(url)!r}")
    if parts.username or parts.password:
        raise InputError("DICOMweb URL must not hold credentials (they would show in the process "
                         f"list and shell history): {_CREDENTIAL_HINT}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))


def safe_url(url: str) -> str:
    """The URL as it may appear in a message: no user info, no query string."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_query(items) -> dict:
    """``["ModalitiesInStudy=CT", "StudyDate=20240101-20240131"]`` → dict of DICOM keywords.

    Raises
    ------
    InputError
        An item without ``=`` or a key that is not a DICOM keyword.
    """
    from pydicom.datadict import tag_for_keyword

    query = {}
    for item in items or ():
        key, eq, value = str(item).partition("=")
        key = key.strip()
        if not eq or not key:
            raise InputError(f"--query expects KEY=VALUE (e.g. ModalitiesInStudy=CT). "
                             f"Received: {item!r}")
        if tag_for_keyword(key) is None:
            raise InputError(f"--query key must be a DICOM keyword such as StudyDate, "
                             f"ModalitiesInStudy, StudyDescription. Received: {key!r}")
        query[key] = value.strip()
    return query


@dataclasses.dataclass(frozen=True)
class InstanceRef:
    """One instance on the server. Holds UIDs in memory only."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str = ""
    number: int | None = None
    modality: str = ""


_QUIET_LOCK = threading.Lock()
_QUIET = {"depth": 0, "saved": {}}


@contextlib.contextmanager
def quiet_libraries():
    """Hold dicomweb-client's, pynetdicom's and urllib3's loggers at CRITICAL (they log UIDs).

    Counted, so that concurrent fetch threads share one quiet period: the levels come back only
    when the last thread leaves, never while another one is still talking to the server.
    """
    names = ("dicomweb_client", "pynetdicom", "urllib3")
    with _QUIET_LOCK:
        if _QUIET["depth"] == 0:
            _QUIET["saved"] = {n: logging.getLogger(n).level for n in names}
            for n in names:
                logging.getLogger(n).setLevel(logging.CRITICAL)
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0:
                for n, level in _QUIET["saved"].items():
                    logging.getLogger(n).setLevel(level)


def connect(target, *, credentials: Credentials | None = None, insecure: bool = False,
            calling_aet: str = DEFAULT_CALLING_AET, called_aet: str | None = None,
            timeout: float = DEFAULT_TIMEOUT):
    """A client for ``target``: an ``http(s)://`` DICOMweb URL or ``dimse://AET@HOST:PORT``
    (or a :class:`DimseAddress`). ``called_aet`` overrides the AET in the address."""
    if isinstance(target, DimseAddress):
        kind, where = "dimse", target
    else:
        kind, where = parse_target(target)
    if kind == "dimse":
        if called_aet:
            where = dataclasses.replace(where, called_aet=called_aet)
        from medzoo.pacs.dimse import DimseClient

        return DimseClient(where, calling_aet=calling_aet, timeout=timeout)
    from medzoo.pacs.dicomweb import DicomWebClient

    return DicomWebClient(where, credentials or Credentials(), insecure=insecure, timeout=timeout)


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
