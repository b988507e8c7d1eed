"""A real Orthanc on 127.0.0.1 for the PACS tests, loaded with a few `medzoo data synth` studies.

Skips (with the reason) when the `Orthanc` binary or its DICOMweb plugin is missing
(`apt-get install orthanc orthanc-dicomweb`); with MEDZOO_REQUIRE_ORTHANC set (CI) it fails
instead, so that CI can never pass with these tests silently skipped.

Orthanc (1.10) has no setting for the address it listens on: it opens its ports on every
interface, refuses remote HTTP (``RemoteAccessAllowed: false``) and admits only the
127.0.0.1 modality below. CI runs the tests in a network namespace holding only the loopback
interface (.ci/run), where every interface is 127.0.0.1.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

USER, PASSWORD = "medzoo-test", "s3cret-for-tests"
CALLING_AET = "MEDZOO"
PLUGIN_PATHS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                "/usr/lib/orthanc/libOrthancDicomWeb.so")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY")
# the test's own REST calls to Orthanc: never through a proxy the environment names
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process; `stop()` + `start()` restart it on the same storage."""

    def __init__(self, root: Path, binary: str, plugin: str):
        self.root, self.binary = root, binary
        self.http_port, self.dicom_port = _free_port(), _free_port()
        storage = root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "medzoo-test", "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC", "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD}, "StorageDirectory": str(storage),
            "IndexDirectory": str(storage), "Plugins": [plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                         "Host": "127.0.0.1", "Ssl": False},
            "DicomAlwaysAllowEcho": False, "DicomAlwaysAllowStore": False,
            "DicomCheckModalityHost": True, "DicomCheckCalledAet": True,
            "DicomModalities": {"medzoo": {"AET": CALLING_AET, "Host": "127.0.0.1",
                                           "Port": _free_port(), "AllowEcho": True,
                                           "AllowFind": True, "AllowGet": True,
                                           "AllowStore": True, "AllowMove": False}},
            "HttpThreadsCount": 8, "DicomThreadsCount": 4, "ConcurrentJobs": 1,
            "DicomAssociationCloseDelay": 0, "HttpTimeout": 10, "DicomScpTimeout": 10,
        }
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=2))
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"ORTHANC@127.0.0.1:{self.dicom_port}"

    def start(self, timeout: float = 60.0):
        log = open(self.root / "orthanc.log", "ab")
        self.process = subprocess.Popen([self.binary, str(self.config)], stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.root)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see "
                                   f"{self.root / 'orthanc.log'}")
            try:
                self.rest("/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer /system within {timeout:g} s")

    def stop(self, kill: bool = False):
        if self.process is not None and self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def rest(self, path: str, data: bytes | None = None, method: str | None = None):
        request = urllib.request.Request(self.url + path, data=data, method=method)
        token = b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        if data is not None:
            request.add_header("Content-Type", "application/dicom")
        with _DIRECT.open(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def upload(self, paths) -> int:
        for path in paths:
            self.rest("/instances", data=Path(path).read_bytes(), method="POST")
        return len(paths)

    def study_files(self, study_uid: str) -> list:
        """The DICOM objects Orthanc lists under the study with this UID (its REST API)."""
        import io

        import pydicom

        found = self.rest("/tools/lookup", data=study_uid.encode(), method="POST")
        (study,) = [f["ID"] for f in found if f["Type"] == "Study"]
        datasets = []
        for instance in self.rest(f"/studies/{study}/instances"):
            request = urllib.request.Request(f"{self.url}/instances/{instance['ID']}/file")
            request.add_header("Authorization", "Basic " + b64encode(
                f"{USER}:{PASSWORD}".encode()).decode())
            with _DIRECT.open(request, timeout=10) as response:
                datasets.append(pydicom.dcmread(io.BytesIO(response.read())))
        return datasets

    def delete(self, sop_uid: str) -> None:
        """Remove one instance (by SOP Instance UID) through Orthanc's REST API."""
        found = self.rest("/tools/lookup", data=sop_uid.encode(), method="POST")
        (instance,) = [f["ID"] for f in found if f["Type"] == "Instance"]
        self.rest(f"/instances/{instance}", method="DELETE")


def _missing(reason: str):
    """Skip where Orthanc is absent locally; fail in CI, which installs it (.ci/run)."""
    if os.environ.get("MEDZOO_REQUIRE_ORTHANC"):
        pytest.fail(f"MEDZOO_REQUIRE_ORTHANC is set but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def orthanc_binary():
    binary = shutil.which("Orthanc") or next(
        (b for b in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.access(b, os.X_OK)), None)
    if binary is None:
        _missing("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    candidates = list(PLUGIN_PATHS) + sorted(glob.glob("/usr/lib/orthanc/libOrthancDicomWeb.so*"))
    plugin = next((p for p in candidates if os.path.exists(p)), None)
    if plugin is None:
        _missing("the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    for module in ("dicomweb_client", "pynetdicom"):
        try:
            __import__(module)
        except ImportError:
            _missing(f"{module} is not installed (pip install -r requirements.txt)")
    return binary, plugin


@pytest.fixture(scope="session")
def pacs_studies(tmp_path_factory):
    """Three tiny synthetic studies (32 px, 2 slices each) as DICOM files."""
    from medzoo.datasets.synth import write_synthetic

    out = tmp_path_factory.mktemp("pacs-studies") / "dicom"
    summary = write_synthetic(out, patients=3, size=32, slices=2, seed=11)
    return out, summary, sorted(out.rglob("*.dcm"))


def running_orthanc(root, binary_and_plugin, files):
    """Start an Orthanc in `root`, upload `files`; a generator for fixtures (killed at the end:
    its storage is a temporary folder)."""
    server = Orthanc(root, *binary_and_plugin)
    try:
        server.start()
        server.upload(files)
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture(scope="session")
def orthanc(orthanc_binary, pacs_studies, tmp_path_factory):
    """A running Orthanc holding `pacs_studies` (read-only for the tests that use it)."""
    yield from running_orthanc(tmp_path_factory.mktemp("orthanc"), orthanc_binary, pacs_studies[2])


class FlakyProxy:
    """A real HTTP relay on 127.0.0.1 in front of Orthanc that fails some WADO-RS retrieves.

    `plan(order, n)` says what the n-th request (0-based) for the order-th instance URL (in the
    order first asked for) gets: "pass" (relayed to Orthanc), "503", "404", or "stall" (no
    answer for `stall` seconds, then a 503). Every request is timed per instance, so a test can
    check what was retried, after how long, and what was not.
    """

    def __init__(self, upstream_port: int, plan, stall: float = 2.0, tls=None):
        import http.server

        self.upstream_port, self.plan, self.stall = upstream_port, plan, stall
        self.times: dict[str, list[float]] = {}  # instance URL → monotonic time of each request
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # no request lines (they hold UIDs) on stderr
                pass

            def do_GET(self):
                relay.handle(self)

            do_POST = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:  # an ssl.SSLContext: serve HTTPS with its certificate
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, request):
        import http.client

        action = "pass"
        if "/instances/" in request.path:
            with self.lock:
                order = list(self.times).index(request.path) if request.path in self.times \
                    else len(self.times)
                times = self.times.setdefault(request.path, [])
                times.append(time.monotonic())
                action = self.plan(order, len(times) - 1)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if action == "stall":
                time.sleep(self.stall)
            if action != "pass":
                request.send_error(404 if action == "404" else 503)
                return
            length = int(request.headers.get("Content-Length") or 0)
            body = request.rfile.read(length) if length else None
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in ("host", "connection")}
            upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=10)
            upstream.request(request.command, request.path, body, headers)
            answer = upstream.getresponse()
            data = answer.read()
            upstream.close()
            request.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "keep-alive",
                                       "content-length"):  # hop-by-hop: this relay closes
                    request.send_header(key, value)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): that is the point of "stall"
        finally:
            if "/instances/" in request.path:
                with self.lock:
                    self.in_flight -= 1

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/dicom-web"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _only_127_0_0_1(monkeypatch):
    """No proxy from the environment may carry a test's traffic off this machine: medzoo (and
    the medzoo processes the tests start) talk to 127.0.0.1 directly."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def pacs_env(monkeypatch):
    """Good credentials in the environment, nothing else that could redirect traffic."""
    for name in ("MEDZOO_PACS_TOKEN", "MEDZOO_PACS_AUTH_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEDZOO_PACS_USER", USER)
    monkeypatch.setenv("MEDZOO_PACS_PASSWORD", PASSWORD)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return {k: os.environ[k] for k in ("MEDZOO_PACS_USER", "MEDZOO_PACS_PASSWORD")}
