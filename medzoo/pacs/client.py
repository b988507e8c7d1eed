"""Connections to a PACS: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and DIMSE (C-FIND, C-GET, C-STORE).

Both clients offer the same four calls — ``check()``, ``find_instances(query, study_uids)``,
``fetch(ref) -> bytes`` (one instance as a DICOM file) and ``store(datasets)`` — so that
:mod:`medzoo.pacs.pull` and :mod:`medzoo.export.send` do not care which protocol is on the wire.

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
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from medzoo.errors import InputError

__all__ = ["PacsError", "TransientError", "Credentials", "InstanceRef", "DimseAddress",
           "load_credentials", "parse_dimse_address", "parse_query", "parse_target", "connect",
           "DicomWebClient", "DimseClient", "quiet_libraries"]

ENV_USER, ENV_PASSWORD, ENV_TOKEN = "MEDZOO_PACS_USER", "MEDZOO_PACS_PASSWORD", "MEDZOO_PACS_TOKEN"
ENV_AUTH_FILE = "MEDZOO_PACS_AUTH_FILE"
DEFAULT_CALLING_AET = "MEDZOO"
DEFAULT_TIMEOUT = 30.0
_QIDO_PAGE = 500  # results per QIDO-RS request
_SEARCH_ATTEMPTS, _SEARCH_BACKOFF = 3, 0.5  # searches: 3 tries, waits 0.5 s then 1 s
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
        return DimseClient(where, calling_aet=calling_aet, timeout=timeout)
    return DicomWebClient(where, credentials or Credentials(), insecure=insecure, timeout=timeout)


# --------------------------------------------------------------------------- DICOMweb


def _tag_value(item: dict, tag: str):
    values = (item.get(tag) or {}).get("Value") or [None]
    return values[0]


class DicomWebClient:
    """QIDO-RS / WADO-RS / STOW-RS through dicomweb-client; one HTTP session per thread."""

    kind = "dicomweb"

    def __init__(self, url: str, credentials: Credentials, *, insecure: bool = False,
                 timeout: float = DEFAULT_TIMEOUT):
        self.url = check_web_url(url)
        self.where = f"DICOMweb server {safe_url(self.url)}"
        self.credentials, self.insecure, self.timeout = credentials, insecure, timeout
        self._local = threading.local()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            import requests
            from dicomweb_client.api import DICOMwebClient

            session = requests.Session()
            if self.insecure:
                _skip_tls_verification(session)
            self.credentials.apply(session)
            client = DICOMwebClient(self.url, session=session, timeout=self.timeout)
            client.set_http_retry_params(retry=False)  # medzoo retries, bounded, in pull
            self._local.client = client
        return client

    @contextlib.contextmanager
    def _calls(self):
        if self.insecure:  # asked for explicitly: no warning per request
            from urllib3.exceptions import InsecureRequestWarning

            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        with quiet_libraries():
            yield

    def _error(self, exc, during: str) -> Exception:
        """A library exception → PacsError (whole run), TransientError or InstanceFailed."""
        import requests

        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(exc, requests.exceptions.SSLError):
            return PacsError(f"{self.where}: TLS certificate verification failed during {during} "
                             "(use --insecure only for a test server you trust)")
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return TransientError(f"no connection within {self.timeout:g} s", connection=True)
        if isinstance(exc, requests.exceptions.Timeout):  # this request only: slow, not gone
            return TransientError(f"no answer within {self.timeout:g} s")
        if isinstance(exc, requests.exceptions.ConnectionError):
            refused = _connection_refused(exc)
            return TransientError("connection refused" if refused else "connection dropped",
                                  connection=True, refused=refused)
        if status in (401, 403):
            return PacsError(f"{self.where}: credentials refused (HTTP {status}) during {during}; "
                             f"{_CREDENTIAL_HINT}")
        if status is not None and (status >= 500 or status in (408, 429)):
            return TransientError(f"HTTP {status}")
        if status is not None:
            return InstanceFailed(f"HTTP {status}")
        return InstanceFailed(f"{type(exc).__name__}")

    def _run_whole(self, during: str, call):
        """A call whose failure stops the run: every error becomes one PacsError line.

        A transient failure (5xx, timeout, a dropped keep-alive connection) is retried twice
        with backoff first; a refused connection is not (nothing listens there).
        """
        with self._calls():
            for attempt in range(_SEARCH_ATTEMPTS):
                try:
                    return call()
                except Exception as exc:
                    err = self._error(exc, during)
                if (isinstance(err, TransientError) and not err.refused
                        and attempt + 1 < _SEARCH_ATTEMPTS):
                    time.sleep(_SEARCH_BACKOFF * 2 ** attempt)
                    continue
                if isinstance(err, PacsError):
                    raise err from None
                if isinstance(err, TransientError) and err.connection:
                    raise PacsError(f"cannot reach {self.where} ({err.reason})") from None
                raise PacsError(f"{self.where}: {during} failed ({err.reason}); is this the "
                                "DICOMweb root (e.g. …/dicom-web)?") from None

    def check(self) -> None:
        """One QIDO-RS request: raises PacsError when the server cannot be used."""
        self._run_whole("a study search", lambda: self._client().search_for_studies(limit=1))

    def _search_all(self, during: str, search, uid_tag: str, **kwargs) -> list[dict]:
        """Every page of one QIDO-RS search, one item per UID.

        Pages by ``limit``/``offset`` and stops at a short page or at a page with nothing new:
        some servers ignore ``offset`` for some filters, and dicomweb-client's own
        ``get_remaining`` then loops for ever.
        """
        items: dict[str, dict] = {}
        offset = 0
        while True:
            page = self._run_whole(during, lambda: search(limit=_QIDO_PAGE, offset=offset,
                                                          **kwargs))
            fresh = {u: i for i in page if (u := _tag_value(i, uid_tag)) and u not in items}
            items.update(fresh)
            if len(page) < _QIDO_PAGE or not fresh:
                return list(items.values())
            offset += len(page)

    def find_instances(self, query: dict | None = None, study_uids=()) -> list[InstanceRef]:
        """QIDO-RS: studies matching ``query`` (and ``study_uids`` if given) → their instances."""
        client = self._client()
        query = dict(query or {})
        studies: list[str] = []
        for uid in (list(study_uids) or [None]):
            filters = dict(query, **({"StudyInstanceUID": uid} if uid else {}))
            found = self._search_all("the study search (QIDO-RS)", client.search_for_studies,
                                     "0020000D", search_filters=filters,
                                     fields=["StudyInstanceUID"])
            studies.extend(_tag_value(i, "0020000D") for i in found)
        refs = []
        for study in dict.fromkeys(studies):
            found = self._search_all(
                "the instance search (QIDO-RS)", client.search_for_instances, "00080018",
                study_instance_uid=study,
                fields=["SOPClassUID", "InstanceNumber", "Modality", "SeriesInstanceUID"])
            for item in found:
                series, sop = _tag_value(item, "0020000E"), _tag_value(item, "00080018")
                if series and sop:
                    refs.append(InstanceRef(study, series, sop, _tag_value(item, "00080016") or "",
                                            _as_int(_tag_value(item, "00200013")),
                                            _tag_value(item, "00080060") or ""))
        return refs

    def fetch(self, ref: InstanceRef) -> bytes:
        """WADO-RS one instance in its stored transfer syntax → the bytes of a DICOM file."""
        import io

        with self._calls():
            try:
                ds = self._client().retrieve_instance(ref.study_uid, ref.series_uid, ref.sop_uid,
                                                      media_types=(("application/dicom", "*"),))
            except Exception as exc:
                raise self._error(exc, "a retrieve") from None
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    def store(self, datasets) -> None:
        """STOW-RS ``datasets`` (pydicom Datasets); PacsError/TransientError/InstanceFailed."""
        with self._calls():
            try:
                self._client().store_instances(list(datasets))
            except Exception as exc:
                err = self._error(exc, "a store (STOW-RS)")
                if isinstance(err, TransientError) and err.connection:
                    raise PacsError(f"cannot reach {self.where} ({err.reason})") from None
                raise err from None


def _skip_tls_verification(session) -> None:
    """``--insecure``: HTTPS without certificate checks, forced on every request of ``session``
    (requests lets ``REQUESTS_CA_BUNDLE`` override ``session.verify = False``)."""
    from requests.adapters import HTTPAdapter

    class UnverifiedAdapter(HTTPAdapter):
        def send(self, request, **kwargs):
            kwargs["verify"] = False
            return super().send(request, **kwargs)

    session.mount("https://", UnverifiedAdapter())


def _connection_refused(exc) -> bool:
    """Whether a requests ConnectionError means no connection was made (refused, no such host)."""
    from urllib3.exceptions import NewConnectionError

    seen, todo = set(), [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (NewConnectionError, ConnectionRefusedError)):
            return True
        todo.extend([getattr(item, "reason", None), item.__cause__, item.__context__,
                     *[a for a in getattr(item, "args", ()) if isinstance(a, BaseException)]])
    return False


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- DIMSE

# Storage classes offered for C-GET when C-FIND did not say which classes the instances have.
_COMMON_STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1",  # CT, enhanced CT
    "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1",  # MR, enhanced MR
    "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",  # CR, DX (presentation)
    "1.2.840.10008.5.1.4.1.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.2",  # DX processing, mammo
    "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1",  # US, US multi-frame
    "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.128",  # secondary capture, PET
    "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.66.4",  # NM, SEG
    "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.34",  # comprehensive (3D) SR
)


class DimseClient:
    """C-ECHO / C-FIND / C-GET / C-STORE through pynetdicom; one C-GET association per thread."""

    kind = "dimse"

    def __init__(self, address: DimseAddress, *, calling_aet: str = DEFAULT_CALLING_AET,
                 timeout: float = DEFAULT_TIMEOUT):
        if not calling_aet or len(calling_aet) > 16:
            raise InputError(f"--calling-aet must be 1 to 16 characters. Received: {calling_aet!r}")
        self.address, self.calling_aet, self.timeout = address, calling_aet, timeout
        self.where = f"DICOM node {address}"
        self.sop_classes: set[str] = set()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list = []

    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        return ae

    def _associate(self, ae, during: str, **kwargs):
        a = self.address
        with quiet_libraries():
            assoc = ae.associate(a.host, a.port, ae_title=a.called_aet, **kwargs)
        if assoc.is_established:
            return assoc
        if assoc.is_rejected:
            raise PacsError(f"{self.where} rejected the association for {during} (does it know "
                            f"calling AET {self.calling_aet}? see --calling-aet/--called-aet)")
        raise TransientError("no association (connection refused, dropped or timed out)",
                             connection=True)

    def _run_whole(self, during: str, call):
        try:
            return call()
        except TransientError as err:
            raise PacsError(f"cannot reach {self.where} ({err.reason})") from None

    def check(self) -> None:
        """C-ECHO: raises PacsError when the node cannot be used."""
        from pynetdicom.sop_class import Verification

        def echo():
            ae = self._ae()
            ae.add_requested_context(Verification)
            assoc = self._associate(ae, "C-ECHO")
            try:
                with quiet_libraries():
                    status = assoc.send_c_echo()
            finally:
                assoc.release()
            if not status or status.Status != 0:
                raise PacsError(f"{self.where} did not answer C-ECHO with success")
        self._run_whole("C-ECHO", echo)

    def _find(self, assoc, level: str, **keys) -> list:
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

        ident = Dataset()
        ident.QueryRetrieveLevel = level
        for key, value in keys.items():
            setattr(ident, key, value)
        found = []
        with quiet_libraries():
            responses = list(assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind))
        for status, identifier in responses:
            code = getattr(status, "Status", None)
            if code is None:
                raise TransientError("C-FIND got no answer (association dropped or timed out)",
                                     connection=True)
            if code in (0xFF00, 0xFF01) and identifier is not None:
                found.append(identifier)
            elif code != 0x0000:
                raise PacsError(f"{self.where} refused C-FIND (status 0x{code:04X}); is calling "
                                f"AET {self.calling_aet} allowed to query?")
        return found

    def find_instances(self, query: dict | None = None, study_uids=()) -> list[InstanceRef]:
        """C-FIND (Study Root): studies, then their series, then their instances."""
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

        def run():
            ae = self._ae()
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            assoc = self._associate(ae, "C-FIND")
            try:
                studies = []
                for uid in (list(study_uids) or [None]):
                    keys = dict(query or {})
                    keys["StudyInstanceUID"] = uid or ""
                    found = self._find(assoc, "STUDY", **keys)
                    studies.extend(str(i.StudyInstanceUID) for i in found
                                   if i.get("StudyInstanceUID"))
                refs = []
                for study in dict.fromkeys(studies):
                    for series in self._find(assoc, "SERIES", StudyInstanceUID=study,
                                             SeriesInstanceUID="", Modality=""):
                        se = str(series.get("SeriesInstanceUID", "") or "")
                        if not se:
                            continue
                        for inst in self._find(assoc, "IMAGE", StudyInstanceUID=study,
                                               SeriesInstanceUID=se, SOPInstanceUID="",
                                               SOPClassUID="", InstanceNumber=""):
                            sop = str(inst.get("SOPInstanceUID", "") or "")
                            if sop:
                                refs.append(InstanceRef(study, se, sop,
                                                        str(inst.get("SOPClassUID", "") or ""),
                                                        _as_int(inst.get("InstanceNumber")),
                                                        str(series.get("Modality", "") or "")))
                return refs
            finally:
                with quiet_libraries():
                    assoc.release()
        refs = self._run_whole("C-FIND", run)
        self.sop_classes.update(r.sop_class for r in refs if r.sop_class)
        return refs

    def _get_association(self):
        assoc = getattr(self._local, "assoc", None)
        if assoc is not None and assoc.is_established:
            return assoc
        from pynetdicom import ALL_TRANSFER_SYNTAXES, build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        classes = sorted(self.sop_classes) or list(_COMMON_STORAGE_CLASSES)
        roles = []
        for sop_class in classes[:120]:  # 128 presentation contexts at most
            ae.add_requested_context(sop_class, ALL_TRANSFER_SYNTAXES)
            roles.append(build_role(sop_class, scp_role=True))
        received: dict[str, bytes] = {}

        def on_store(event):
            received[str(event.request.AffectedSOPInstanceUID)] = event.encoded_dataset()
            return 0x0000

        assoc = self._associate(ae, "C-GET", ext_neg=roles,
                                evt_handlers=[(evt.EVT_C_STORE, on_store)])
        assoc.medzoo_received = received
        assoc.medzoo_classes = set(classes[:120])
        self._local.assoc = assoc
        with self._lock:
            self._open.append(assoc)
        return assoc

    def fetch(self, ref: InstanceRef) -> bytes:
        """C-GET one instance (IMAGE level) on this thread's association → DICOM file bytes."""
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

        if ref.sop_class and ref.sop_class not in self.sop_classes:
            with self._lock:
                self.sop_classes.add(ref.sop_class)
        assoc = self._get_association()
        if ref.sop_class and ref.sop_class not in assoc.medzoo_classes:
            self._drop_association()  # this association cannot receive that class: a new one
            assoc = self._get_association()
        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE"
        ident.StudyInstanceUID, ident.SeriesInstanceUID = ref.study_uid, ref.series_uid
        ident.SOPInstanceUID = ref.sop_uid
        assoc.medzoo_received.clear()
        last = None
        with quiet_libraries():
            for status, _ in assoc.send_c_get(ident, StudyRootQueryRetrieveInformationModelGet):
                last = getattr(status, "Status", None)
        data = assoc.medzoo_received.pop(ref.sop_uid, None)
        if last is None or not assoc.is_established:
            self._drop_association()
            raise TransientError("C-GET got no answer (association dropped or timed out)",
                                 connection=True)
        if data is None:
            if last in (0xA701, 0xA702):
                raise TransientError(f"C-GET status 0x{last:04X}")
            raise InstanceFailed(f"C-GET status 0x{last:04X}, no instance received")
        return data

    def _drop_association(self):
        assoc = getattr(self._local, "assoc", None)
        self._local.assoc = None
        if assoc is not None:
            with quiet_libraries():
                assoc.abort()

    def close(self):
        with self._lock, quiet_libraries():
            for assoc in self._open:
                if assoc.is_established:
                    assoc.release()
            self._open.clear()

    def store(self, datasets) -> None:
        """C-STORE ``datasets`` on one association."""
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        datasets = list(datasets)

        def run():
            ae = self._ae()
            for sop_class in sorted({str(d.SOPClassUID) for d in datasets}):
                syntaxes = {str(d.file_meta.TransferSyntaxUID) for d in datasets
                            if str(d.SOPClassUID) == sop_class
                            and "TransferSyntaxUID" in d.file_meta}
                ae.add_requested_context(sop_class, sorted(syntaxes | {ExplicitVRLittleEndian,
                                                                        ImplicitVRLittleEndian}))
            assoc = self._associate(ae, "C-STORE")
            try:
                for ds in datasets:
                    with quiet_libraries():
                        status = assoc.send_c_store(ds)
                    code = getattr(status, "Status", None)
                    if code is None:
                        raise TransientError("C-STORE got no answer", connection=True)
                    if code not in (0x0000, 0xB000, 0xB006, 0xB007):
                        raise InstanceFailed(f"C-STORE status 0x{code:04X}")
            finally:
                with quiet_libraries():
                    if assoc.is_established:
                        assoc.release()
        self._run_whole("C-STORE", run)
