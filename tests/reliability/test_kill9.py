"""Crash safety: ``kill -9`` in the middle of ingest, training, export and cross-validation; the
same command run again completes, with the results of an uninterrupted run."""

import csv
import json

import pytest

from bench import fuzz
from medzoo.datasets.ingest import ingest

from conftest import CV_EPOCHS, error_lines, kill9, medzoo, medzoo_popen, tree_state, wait_for

pytestmark = pytest.mark.slow


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_ingest_killed_resumes_from_its_journal_and_gives_the_uninterrupted_bytes(
        tiny_dicom, rel_key, tmp_path):
    import re
    import shutil

    src, _ = tiny_dicom
    labels = tmp_path / "labels.csv"
    rows = (src / "labels.csv").read_text().splitlines()
    # a header of 300,000 elements takes pydicom a second or two to parse: time to kill it,
    # after the rows before it have filled and journalled shards of 4 records
    slow = src.parent / "slow-header-300k.dcm"
    if not slow.exists():
        first = src / rows[1].split(",")[0]
        slow.write_bytes(fuzz.many_elements(first.read_bytes(), 300_000))
    labels.write_text("\n".join(rows[:1] + [f"{src / r.split(',')[0]},{r.split(',')[1]}"
                                            for r in rows[1:]] + [f"{slow},normal"]) + "\n")
    n_inputs = len(rows)  # the synthetic rows plus the slow one
    reference = tmp_path / "reference"
    ingest(src, labels, reference, size=32, folds=2, seed=0, key_file=rel_key, progress=False,
           records_per_shard=4)

    out = tmp_path / "DS"
    args = ("data", "ingest", src, "--labels", labels, "--out", out, "--size", 32, "--folds", 2,
            "--key-file", rel_key, "--records-per-shard", 4)
    proc = medzoo_popen(*args)
    journal = lambda: [p for p in tmp_path.glob(".DS.ingest-*/journal.jsonl")  # noqa: E731
                       if p.read_text().count("\n") >= 2]
    wait_for(proc, lambda: journal(), "ingest journalled two shards")
    kill9(proc)
    assert not out.exists(), "a killed ingest left a visible, half-written dataset"
    work = journal()[0].parent
    kept = tmp_path / "kept"
    shutil.copytree(work, kept)

    result = medzoo(*args)
    assert result.returncode == 0, result.stderr
    resumed = re.search(r"resuming: (\d+) of (\d+) input files already ingested", result.stderr)
    assert resumed, result.stderr
    assert 8 <= int(resumed[1]) < n_inputs and int(resumed[2]) == n_inputs
    assert _files(out) == _files(reference)  # same names, same bytes
    assert not work.exists()

    # a work folder whose shards were damaged since is not trusted: the run starts again
    shutil.rmtree(out)
    shutil.copytree(kept, work)
    shard = work / "shards" / "shard-00000.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    result = medzoo(*args)
    assert result.returncode == 0, result.stderr
    assert "cannot be resumed" in result.stderr and "starting again" in result.stderr
    assert "resuming" not in result.stderr
    assert _files(out) == _files(reference)

    # the same OUT with other options: a new work folder; the stale one is removed, not reused
    shutil.rmtree(out)
    shutil.copytree(kept, work)
    result = medzoo(*args[:-1], 5)  # --records-per-shard 5
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stderr and not work.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_training_killed_after_an_epoch_resumes_to_the_requested_epochs(cv_chain):
    assert cv_chain["after_train_kill"]["model"] is False
    assert cv_chain["after_train_kill"]["history_rows"] >= 1
    config = cv_chain["after_export_kill"]["config"]  # the resumed run finished
    assert config["epochs_run"] == config["epochs"] == CV_EPOCHS
    epochs = [int(r["epoch"]) for r in csv.DictReader(
        cv_chain["after_export_kill"]["history"].splitlines())]
    assert epochs == list(range(CV_EPOCHS)), "history.csv must hold one row per epoch"


def test_export_killed_leaves_no_visible_version_and_the_next_export_is_version_1(cv_chain):
    assert cv_chain["after_export_kill"]["versions"] != []
    assert all(v.startswith(".1.partial-") for v in cv_chain["after_export_kill"]["versions"]), \
        "a killed export left a visible version"
    export = cv_chain["out"] / "cnn" / "fold-0" / "export" / "cnn"
    assert sorted(p.name for p in export.iterdir() if not p.name.startswith(".")) == ["1"]
    version = export / "1"
    for name in ("saved_model.pb", "model.onnx", "model_card.json", "parity.json"):
        assert (version / name).is_file(), name
    assert (version / "BLESSED").exists() or (version / "NOT_BLESSED").exists()
    assert json.loads((version / "model_card.json").read_text())["model"]["version"] == 1


def test_cv_killed_after_a_fold_skips_the_finished_fold_on_rerun(cv_chain):
    final = cv_chain["final"]
    assert final.returncode == 0, final.stderr
    out = cv_chain["out"]
    fold0 = out / "cnn" / "fold-0"
    before = cv_chain["fold0_state"]
    assert "eval/metrics.json" in before and "run/model.keras" in before
    after = tree_state(fold0)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert changed == [], f"the finished fold was redone: {changed}"
    with open(out / "folds.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["fold"]) for r in rows] == [("cnn", "0"), ("cnn", "1"), ("cnn", "2")]
    for name in ("summary.csv", "stats.json", "comparison.png", "report.html"):
        assert (out / name).is_file(), name
    config = json.loads((out / "cnn" / "fold-1" / "run" / "config.json").read_text())
    assert config["epochs_run"] == CV_EPOCHS


_DISK_FULL = """
import os, resource, signal, sys
sys.path.insert(0, {root!r})
from medzoo import fsio
target = {target!r}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of death
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the disk is full past 4 KiB
failed = []
for write in (lambda: fsio.write_text(target, "new " * 5000),
              lambda: fsio.write_json(target, {{"new": "x" * 8000}}),
              lambda: fsio.write_csv(target, [{{"a": "x" * 8000}}], ["a"])):
    try:
        write()
    except OSError as exc:
        failed.append(exc.errno)
print(failed)
"""


def test_a_full_disk_during_a_write_leaves_the_previous_file_intact(tmp_path):
    import errno
    import subprocess
    import sys

    from conftest import ROOT, child_env

    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')
    res = subprocess.run([sys.executable, "-c", _DISK_FULL.format(root=str(ROOT),
                                                                  target=str(target))],
                         capture_output=True, text=True, timeout=60, env=child_env())
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str([errno.EFBIG] * 3)
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"], "temp files left"


def _ingest_on_a_full_disk(src, out, rel_key):
    # RLIMIT_FSIZE for the child only (preexec_fn runs in it, after fork)
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))

    import subprocess
    import sys

    from conftest import child_env

    return subprocess.run([sys.executable, "-m", "medzoo", "data", "ingest", str(src),
                           "--labels", str(src / "labels.csv"), "--out", str(out), "--size",
                           "32", "--key-file", str(rel_key)], capture_output=True, text=True,
                          timeout=120, env=child_env(), preexec_fn=limit)


def test_a_full_disk_during_ingest_leaves_nothing_behind(tiny_dicom, rel_key, tmp_path):
    src, _ = tiny_dicom
    out = tmp_path / "DS"
    res = _ingest_on_a_full_disk(src, out, rel_key)
    assert res.returncode != 0
    assert not out.exists(), "a failed ingest left a visible dataset"
    assert list(tmp_path.iterdir()) == [], "a failed ingest left its temporary folder"


def test_a_full_disk_is_reported_in_one_line(tiny_dicom, rel_key, tmp_path):
    src, _ = tiny_dicom
    res = _ingest_on_a_full_disk(src, tmp_path / "DS", rel_key)
    assert "Traceback" not in res.stderr
    assert len(error_lines(res.stderr)) == 1, res.stderr
