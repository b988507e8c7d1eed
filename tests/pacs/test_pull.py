"""`medzoo data pull` against a real Orthanc: DICOMweb and DIMSE, resume, bad servers, no PHI."""

import csv
import logging
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import certifi
import pydicom
import pytest

from medzoo import cli
from medzoo.datasets.deid import load_or_create_key, pseudonym
from medzoo.pacs import client as pacs
from medzoo.pacs.pull import pull

from .conftest import CALLING_AET, PASSWORD, USER, FlakyProxy


def _by_sop(paths) -> dict:
    out = {}
    for path in paths:
        ds = pydicom.dcmread(str(path))
        out[str(ds.SOPInstanceUID)] = (str(ds.StudyInstanceUID), ds.PixelData)
    return out


def _pulled(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("IM*.dcm"))


def _run_cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "medzoo", *args], capture_output=True, text=True,
                          timeout=180, env=env, cwd=cwd)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_pull_copies_every_instance_unchanged(protocol, orthanc, pacs_studies, pacs_env, tmp_path,
                                              capsys, caplog):
    dicom_dir, summary, originals = pacs_studies
    out = tmp_path / "pulled"
    where = ["--dicomweb", orthanc.dicomweb] if protocol == "dicomweb" else [
        "--dimse", orthanc.dimse, "--calling-aet", CALLING_AET]
    caplog.set_level(logging.DEBUG)  # as if the user logged everything to a file
    assert cli.main(["data", "pull", *where, "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr()
    uids = {str(getattr(pydicom.dcmread(str(p), stop_before_pixels=True), k)) for p in originals
            for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
    logged = caplog.text + printed.out + printed.err
    assert not [u for u in uids | set(summary["phi"]) if u in logged]  # no UID or PHI logged
    assert "found 6 instances, fetched 6, skipped 0 already on disk, failed 0" in printed.out

    assert _by_sop(_pulled(out)) == _by_sop(originals)  # same SOP UIDs, same pixel bytes
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "study-0001", "study-0002", "study-0003"]
    # no identifier in any name, in what was printed, or in the files medzoo wrote beside them
    names = " ".join(str(p.relative_to(out)) for p in out.rglob("*"))
    written = (out / "series.csv").read_text() + (out / "pull.json").read_text()
    for phi in uids | set(summary["phi"]):
        assert phi not in names and phi not in written and phi not in printed.out + printed.err

    # a second run skips everything; labels filled into series.csv survive it
    rows = list(csv.DictReader(open(out / "series.csv")))
    assert [int(r["instances"]) for r in rows] == [2, 2, 2]
    with open(out / "series.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "label": "normal" if i % 2 == 0 else "lesion"}
                         for i, r in enumerate(rows))
    assert cli.main(["data", "pull", *where, "--out", str(out)]) == 0
    assert "fetched 0, skipped 6" in capsys.readouterr().out
    assert [r["label"] for r in csv.DictReader(open(out / "series.csv"))] == [
        "normal", "lesion", "normal"]

    # ... and ingest reads the folder with it as labels file
    assert cli.main(["data", "ingest", str(out), "--labels", str(out / "series.csv"),
                     "--out", str(tmp_path / "ds"), "--size", "32", "--folds", "2"]) == 0
    assert "ingested 6 of 6 inputs (6 images), rejected 0" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_pull_resumes_after_the_server_dies(protocol, orthanc, pacs_studies, pacs_env, tmp_path):
    _, _, originals = pacs_studies
    out = tmp_path / "pulled"
    target = orthanc.dicomweb if protocol == "dicomweb" else f"dimse://{orthanc.dimse}"

    killed = []

    def kill_after_two(summary):  # the real server process, SIGKILLed while the pull goes on
        if summary.fetched == 2 and not killed:
            killed.append(summary.fetched + summary.failed)
            orthanc.stop(kill=True)

    try:
        first = pull(pacs.connect(target, credentials=pacs.load_credentials()), out, workers=1,
                     retries=2, backoff=0.05, progress=False, on_fetched=kill_after_two)
    finally:
        if orthanc.process is None:
            orthanc.start()
    assert killed == [2]
    # the fetch under way when the server died may still have got its answer: 2 or 3 on disk
    assert first["found"] == 6 and first["fetched"] in (2, 3), first
    assert first["fetched"] + first["failed"] == 6 and first["skipped"] == 0
    reasons = first["failed_by_reason"]  # the server went away; no instance was refused
    assert reasons and all(any(w in r for w in ("connection", "association", "unreachable"))
                           for r in reasons), reasons
    assert len(_pulled(out)) == first["fetched"]  # only complete files under final names
    assert not [p for p in out.rglob(".*") if p.is_file()]

    # a file cut inside its pixel data (pydicom reads it without complaint) is fetched again
    damaged = _pulled(out)[0]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    second = pull(pacs.connect(target, credentials=pacs.load_credentials()), out, workers=2,
                  retries=2, backoff=0.05, progress=False)
    assert (second["found"], second["skipped"], second["replaced"]) == (6, first["fetched"] - 1, 1)
    assert (second["fetched"], second["failed"]) == (6 - second["skipped"], 0)
    assert _by_sop(_pulled(out)) == _by_sop(originals)
    assert len(_pulled(out)) == 6


def test_retries_with_backoff_on_5xx_and_timeouts_in_parallel(orthanc, pacs_studies, pacs_env,
                                                              tmp_path):
    _, _, originals = pacs_studies

    def plan(order, attempt):
        if order == 5:
            return "404"  # not transient: never retried
        if order == 0:
            return "stall" if attempt == 0 else "pass"  # longer than the client's timeout
        return "503" if attempt < 2 else "pass"

    backoff = 0.1
    with FlakyProxy(orthanc.http_port, plan, stall=1.5) as proxy:
        client = pacs.connect(f"http://127.0.0.1:{proxy.port}/dicom-web",
                              credentials=pacs.load_credentials(), timeout=0.75)
        result = pull(client, tmp_path / "pulled", workers=3, retries=3, backoff=backoff,
                      progress=False)
    assert (result["found"], result["fetched"], result["failed"]) == (6, 5, 1)
    assert result["failed_by_reason"] == {"HTTP 404": 1}
    attempts = sorted(len(t) for t in proxy.times.values())
    assert attempts == [1, 2, 3, 3, 3, 3]  # 404 once; timeout once then ok; 503 twice then ok
    for times in proxy.times.values():
        gaps = [b - a for a, b in zip(times, times[1:])]
        if len(times) == 3:  # exponential backoff: backoff, then 2 × backoff
            assert gaps[0] >= backoff and gaps[1] >= 2 * backoff, gaps
    assert proxy.max_in_flight >= 2  # fetched in parallel
    pulled = _by_sop(_pulled(tmp_path / "pulled"))
    expected = _by_sop(originals)
    assert len(pulled) == 5 and all(expected[uid] == value for uid, value in pulled.items())


def test_tls_certificates_are_verified_unless_insecure(orthanc, pacs_env, tmp_path, capsys,
                                                        monkeypatch):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (needed to make a self-signed test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    # a CA bundle in the environment must not switch verification back on or off
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with FlakyProxy(orthanc.http_port, lambda order, attempt: "pass", tls=tls) as proxy:
        assert cli.main(["data", "pull", "--dicomweb", proxy.url("https"),
                         "--out", str(tmp_path / "refused")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("medzoo data: error: DICOMweb server https://127.0.0.1:")
        assert "TLS certificate verification failed" in err and len(err.splitlines()) == 1
        assert cli.main(["data", "pull", "--dicomweb", proxy.url("https"), "--insecure",
                         "--out", str(tmp_path / "insecure")]) == 0
        assert "fetched 6" in capsys.readouterr().out


def test_pull_by_query_and_study(orthanc, pacs_studies, pacs_env, tmp_path):
    _, _, originals = pacs_studies
    study = str(pydicom.dcmread(str(originals[0])).StudyInstanceUID)
    for target in (orthanc.dicomweb, f"dimse://{orthanc.dimse}"):
        client = pacs.connect(target, credentials=pacs.load_credentials())
        out = tmp_path / client.kind
        result = pull(client, out, query={"ModalitiesInStudy": "CT"}, study_uids=[study],
                      progress=False)
        assert (result["studies"], result["found"], result["fetched"]) == (1, 2, 2)
        assert {v[0] for v in _by_sop(_pulled(out)).values()} == {study}
        none = pull(pacs.connect(target, credentials=pacs.load_credentials()), tmp_path / "none",
                    query={"ModalitiesInStudy": "MR"}, progress=False)
        assert none["found"] == 0

    # with ingest's key file, folders carry the keyed pseudonyms that ingest writes to index.csv
    key_file = tmp_path / "pseudonym.key"
    pull(pacs.connect(orthanc.dicomweb, credentials=pacs.load_credentials()), tmp_path / "keyed",
         study_uids=[study], key_file=key_file, progress=False)
    key = load_or_create_key(key_file)
    assert [p.name for p in (tmp_path / "keyed").iterdir() if p.is_dir()] == [
        f"study-{pseudonym(key, 'study', study)}"]


def _one_error_line(result, fragment):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medzoo data: error:"), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_wrong_credentials_give_one_line_and_exit_2(orthanc, tmp_path):
    env = {**os.environ, "MEDZOO_PACS_USER": USER, "MEDZOO_PACS_PASSWORD": "wrong",
           "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("MEDZOO_PACS_TOKEN", None)
    result = _run_cli("data", "pull", "--dicomweb", orthanc.dicomweb, "--out", "pulled",
                      env=env, cwd=tmp_path)
    _one_error_line(result, "credentials refused (HTTP 401)")
    assert "wrong" not in result.stderr and PASSWORD not in result.stderr
    assert not (tmp_path / "pulled").exists()

    auth = tmp_path / "auth.json"
    auth.write_text('{"user": "%s", "password": "%s"}' % (USER, PASSWORD))
    env["MEDZOO_PACS_PASSWORD"] = "wrong"
    ok = _run_cli("data", "pull", "--dicomweb", orthanc.dicomweb, "--auth-file", str(auth),
                  "--out", "pulled", env=env, cwd=tmp_path)
    assert ok.returncode == 0 and "fetched 6" in ok.stdout, ok.stderr


@pytest.mark.parametrize("where", ["--dicomweb", "--dimse"])
def test_unreachable_server_gives_one_line_and_exit_2(where, orthanc_binary, tmp_path):
    from .conftest import _free_port

    port = _free_port()  # nothing listens there
    target = f"http://127.0.0.1:{port}/dicom-web" if where == "--dicomweb" else (
        f"ORTHANC@127.0.0.1:{port}")
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    result = _run_cli("data", "pull", where, target, "--out", "pulled", "--timeout", "5",
                      env=env, cwd=tmp_path)
    _one_error_line(result, "cannot reach")
    assert not (tmp_path / "pulled").exists()


def test_dimse_ae_titles_unknown_to_the_pacs_give_one_line_and_exit_2(orthanc, tmp_path):
    """DIMSE has no password: the PACS admits known AE titles only (ours from the host we call
    from, and its own as the called AET). --called-aet overrides the one in AET@HOST:PORT."""
    port = orthanc.dimse.rpartition(":")[2]
    unknown_us = _run_cli("data", "pull", "--dimse", orthanc.dimse, "--calling-aet", "STRANGER",
                          "--out", "pulled", cwd=tmp_path)
    _one_error_line(unknown_us, "rejected the association for C-FIND")
    assert "calling AET STRANGER" in unknown_us.stderr
    wrong_them = _run_cli("data", "pull", "--dimse", f"NOT_ORTHANC@127.0.0.1:{port}",
                          "--calling-aet", CALLING_AET, "--out", "pulled", cwd=tmp_path)
    _one_error_line(wrong_them, "rejected the association for C-FIND")
    assert not (tmp_path / "pulled").exists()
    fixed = _run_cli("data", "pull", "--dimse", f"NOT_ORTHANC@127.0.0.1:{port}",
                     "--called-aet", "ORTHANC", "--calling-aet", CALLING_AET, "--out", "pulled",
                     cwd=tmp_path)
    assert fixed.returncode == 0 and "fetched 6, skipped 0" in fixed.stdout, fixed.stderr


def test_credentials_never_on_the_command_line(tmp_path):
    result = _run_cli("data", "pull", "--dicomweb", "http://user:pw@127.0.0.1:1/dicom-web",
                      "--out", "pulled", cwd=tmp_path)
    _one_error_line(result, "must not hold credentials")
    assert "pw" not in result.stderr.replace("pull", "")


def test_credentials_from_files_and_environment(tmp_path):
    ini = tmp_path / "auth.ini"
    ini.write_text("[pacs]\nuser = alice\npassword = s3cret\n")
    assert pacs.load_credentials(ini, environ={}) == pacs.Credentials("alice", "s3cret")
    token = tmp_path / "token.json"
    token.write_text('{"token": "abc"}')
    assert pacs.load_credentials(token, environ={}).token == "abc"
    assert pacs.load_credentials(environ={"MEDZOO_PACS_TOKEN": "t"}).token == "t"
    assert not pacs.load_credentials(environ={})
    with pytest.raises(pacs.InputError, match="password"):
        pacs.load_credentials(environ={"MEDZOO_PACS_USER": "alice"})
    assert "s3cret" not in repr(pacs.load_credentials(ini, environ={}))
    with pytest.raises(pacs.InputError, match="DICOM keyword"):
        pacs.parse_query(["NotAKeyword=1"])
    with pytest.raises(pacs.InputError, match="AET@HOST:PORT"):
        pacs.parse_dimse_address("pacs:4242")
