"""Shared, session-scoped real artefacts: phantom DICOM → dataset → trained runs → exports.

Each is made once per test session by medzoo itself (no downloads) and treated as read-only by
the tests that use it; tests that change things work on their own copies.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZE = 32

# Native-volume fixtures (volumes-model): a contract dataset written directly, a 3D run, its export.
from volume_data import volume_ds, volume_export, volume_run  # noqa: E402,F401


@pytest.fixture(scope="session")
def phantom_dicom(tmp_path_factory):
    from medzoo.datasets.synth import write_synthetic

    out = tmp_path_factory.mktemp("phantoms") / "dicom"
    summary = write_synthetic(out, patients=15, size=SIZE, slices=2, seed=3)
    return out, summary


@pytest.fixture(scope="session")
def key_file(tmp_path_factory):
    return tmp_path_factory.mktemp("keys") / "pseudonym.key"


@pytest.fixture(scope="session")
def phantom_ds(phantom_dicom, key_file, tmp_path_factory):
    from medzoo.datasets.ingest import ingest

    dicom_dir, _ = phantom_dicom
    out = tmp_path_factory.mktemp("datasets") / "ds"
    ingest(dicom_dir, dicom_dir / "labels.csv", out, size=SIZE, folds=3, seed=0, key_file=key_file)
    return out


@pytest.fixture(scope="session")
def cnn_run(phantom_ds, tmp_path_factory):
    from medzoo.training.fit import train

    run = tmp_path_factory.mktemp("runs") / "cnn"
    train("cnn", phantom_ds, run, epochs=3, batch_size=8, seed=0, verbose=0)
    return run


@pytest.fixture(scope="session")
def unet_run(phantom_ds, tmp_path_factory):
    from medzoo.training.fit import train

    run = tmp_path_factory.mktemp("runs") / "unet"
    train("unet", phantom_ds, run, epochs=2, batch_size=8, seed=0, verbose=0,
          model_options={"base_width": 8})
    return run


@pytest.fixture(scope="session")
def cnn_export(cnn_run, tmp_path_factory):
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run

    base = tmp_path_factory.mktemp("models")
    return export_run(cnn_run, base, evaluator=evaluate)


@pytest.fixture(scope="session")
def unet_export(unet_run, tmp_path_factory):
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run

    base = tmp_path_factory.mktemp("models")
    return export_run(unet_run, base, evaluator=evaluate)


@pytest.fixture(scope="session")
def well_trained_cnn(tmp_path_factory):
    """A CNN trained to high accuracy on 24 phantom patients (32 px, 10 epochs): for checks that
    need a model that has learned the lesion (explanations, quantisation). Returns its folder
    holding ``dicom/``, ``ds/`` and ``run/``."""
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.training.fit import train

    root = tmp_path_factory.mktemp("well-trained")
    write_synthetic(root / "dicom", patients=24, size=SIZE, slices=2, seed=3)
    ingest(root / "dicom", root / "dicom" / "labels.csv", root / "ds", size=SIZE, folds=3, seed=0,
           key_file=root / "k.key")
    # the constant schedule the explanation figures were measured with (README)
    train("cnn", root / "ds", root / "run", epochs=10, batch_size=8, seed=0, verbose=0,
          schedule="constant")
    return root


@pytest.fixture(scope="session")
def dciodvfy():
    """dicom3tools' IOD validator as a function: ``check(path) -> (iod, errors, warnings)``.

    ``iod`` is the IOD dciodvfy recognised (e.g. "CTImage", "Segmentation"; None if it
    recognised none), ``errors`` and ``warnings`` its "Error -" / "Warning -" lines (an "Abort"
    counts as an error). Its exit status does not say whether it found errors, so its output is
    parsed. Skips where dicom3tools is not installed; with MEDZOO_REQUIRE_DCIODVFY=1 (CI, which
    installs it in .ci/run) fails instead.
    """
    import re
    import shutil
    import subprocess

    binary = shutil.which("dciodvfy")
    if binary is None:
        reason = "dciodvfy (apt-get install dicom3tools) is not installed"
        if os.environ.get("MEDZOO_REQUIRE_DCIODVFY") == "1":
            pytest.fail(f"MEDZOO_REQUIRE_DCIODVFY=1 but {reason}", pytrace=False)
        pytest.skip(reason)

    def check(path):
        done = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
        lines = (done.stdout + "\n" + done.stderr).splitlines()
        errors = [line for line in lines if re.search(r"(^|\s)(Error|Abort)\s+-", line)]
        warnings = [line for line in lines if re.search(r"(^|\s)Warning\s+-", line)]
        names = [line.strip() for line in lines if re.fullmatch(r"[A-Za-z0-9]+", line.strip())]
        return (names[0] if names else None), errors, warnings

    return check
