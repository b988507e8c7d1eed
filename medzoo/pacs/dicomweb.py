"""DICOMweb client: QIDO-RS, WADO-RS and STOW-RS through dicomweb-client.

See :mod:`medzoo.pacs.client` for the rules both clients keep.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings

from medzoo.pacs.client import (check_web_url, Credentials, DEFAULT_TIMEOUT, InstanceFailed,
                                InstanceRef, PacsError, quiet_libraries, safe_url, TransientError,
                                _as_int, _CREDENTIAL_HINT)

_QIDO_PAGE = 500  # results per QIDO-RS request
_SEARCH_ATTEMPTS, _SEARCH_BACKOFF = 3, 0.5  # searches: 3 tries, waits 0.5 s then 1 s


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
