"""Shared helpers for the reliability and security tests: the fuzz mutator (bench/fuzz.py),
a runner for ``python -m medzoo`` in a child process, and a tiny synthetic study set."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `from bench import fuzz`

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def child_env(**extra) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", RUST_BACKTRACE="0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def medzoo(*args, cwd=None, timeout=300, **env):
    """``python -m medzoo ARGS`` in a child process → CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "medzoo", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=child_env(**env))


def medzoo_popen(*args, cwd=None, **env):
    return subprocess.Popen([sys.executable, "-m", "medzoo", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=child_env(**env))


# TensorFlow's C++ start-up logging, printed before absl is initialised whatever
# TF_CPP_MIN_LOG_LEVEL says (test_bad_usage.py::test_stderr_is_one_line_even_when_tensorflow_loads)
TF_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} \d\d:"
                      r"|To enable the following instructions)")


def error_lines(stderr: str) -> list[str]:
    """Lines of ``stderr`` that medzoo (or Python) wrote, without TensorFlow's start-up noise."""
    return [line for line in stderr.splitlines() if line.strip() and not TF_NOISE.match(line)]


def tree_state(path: Path) -> dict:
    """{relative path: (size, mtime_ns)} of every file under ``path`` (empty if absent)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def rel_key(tmp_path_factory):
    return tmp_path_factory.mktemp("rel-key") / "pseudonym.key"


@pytest.fixture(scope="session")
def tiny_dicom(tmp_path_factory):
    """10 synthetic CT patients, 32 px, 2 slices each, with planted PHI (see synth)."""
    from medzoo.datasets.synth import write_synthetic

    out = tmp_path_factory.mktemp("rel-dicom") / "dicom"
    summary = write_synthetic(out, patients=10, size=32, slices=2, seed=7)
    return out, summary


@pytest.fixture(scope="session")
def tiny_ds(tiny_dicom, rel_key, tmp_path_factory):
    from medzoo.datasets.ingest import ingest

    src, _ = tiny_dicom
    out = tmp_path_factory.mktemp("rel-ds") / "ds"
    ingest(src, src / "labels.csv", out, size=32, folds=3, seed=0, key_file=rel_key,
           progress=False)
    return out


def wait_for(proc, predicate, what: str, timeout: float = 240.0, poll: float = 0.05):
    """Poll ``predicate()`` until true; fail if ``proc`` exits first or time runs out."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{what}: the process ended (rc={proc.returncode}) first\n"
                                 f"{out[-2000:]}\n{err[-4000:]}")
        time.sleep(poll)
    proc.kill()
    raise AssertionError(f"{what}: not reached in {timeout:g} s")


def kill9(proc) -> tuple[str, str]:
    import signal

    os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return out, err


def _history_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


CV_EPOCHS = 2


@pytest.fixture(scope="session")
def cv_chain(tiny_ds, tmp_path_factory):
    """``medzoo cv cnn --folds 3`` killed with SIGKILL three times, at three stages of fold 0
    (training after one logged epoch, export while its staging folder is being written, and
    right after fold 0 finished), then run to the end. Returns what was seen at each stage."""
    import json

    out = tmp_path_factory.mktemp("rel-cv") / "cv"
    fold0 = out / "cnn" / "fold-0"
    args = ("cv", "cnn", "--data", tiny_ds, "--folds", 3, "--out", out, "--epochs", CV_EPOCHS)
    seen = {"logs": []}

    proc = medzoo_popen(*args)  # 1: during training
    wait_for(proc, lambda: _history_rows(fold0 / "run" / "history.csv") >= 1,
             "fold 0 logged its first epoch")
    seen["logs"].append(kill9(proc))
    seen["after_train_kill"] = {"model": (fold0 / "run" / "model.keras").exists(),
                                "history_rows": _history_rows(fold0 / "run" / "history.csv")}

    proc = medzoo_popen(*args)  # 2: while the export's staging folder is being written
    staging = fold0 / "export" / "cnn"
    wait_for(proc, lambda: staging.is_dir() and any(p.name.startswith(".1.partial-")
                                                    for p in staging.iterdir()),
             "fold 0's export started")
    wait_for(proc, lambda: any(staging.glob(".1.partial-*/saved_model.pb")),
             "fold 0's SavedModel written")
    seen["logs"].append(kill9(proc))
    seen["after_export_kill"] = {
        "versions": sorted(p.name for p in staging.iterdir()),
        "config": json.loads((fold0 / "run" / "config.json").read_text()),
        "history": (fold0 / "run" / "history.csv").read_text()}

    proc = medzoo_popen(*args)  # 3: right after fold 0 finished
    wait_for(proc, lambda: (fold0 / "eval" / "metrics.json").exists(), "fold 0 finished")
    import time

    time.sleep(0.5)  # let evaluate finish its last files
    seen["logs"].append(kill9(proc))
    seen["fold0_state"] = tree_state(fold0)

    result = medzoo(*args, timeout=400)  # 4: to the end
    seen["final"] = result
    seen["out"] = out
    return seen
