"""Bad usage: exit 2, one line on stderr naming the file and the reason, no traceback, and nothing
half-written (the output absent, the inputs unchanged). tests/test_cli.py covers paths that do
not exist at all; these are the subtler cases."""

import pytest

from medzoo.datasets.ingest import ingest
from medzoo.datasets.synth import write_synthetic

from conftest import error_lines, medzoo, tree_state


@pytest.fixture(scope="module")
def work(tmp_path_factory, rel_key):
    """6 patients of 32 px; a 32 px and a 36 px dataset dir; bad labels files; an empty folder."""
    root = tmp_path_factory.mktemp("bad-usage")
    src = root / "src"
    write_synthetic(src, patients=6, size=32, slices=1, seed=2)
    lines = (src / "labels.csv").read_text().splitlines()
    (src / "columns.csv").write_text("file,class\nx.dcm,a\n")
    (src / "missing.csv").write_text("path,label\nnope1.dcm,normal\nnope2.dcm,lesion\n")
    (src / "oneclass.csv").write_text("\n".join(l.replace(",lesion,", ",normal,") for l in lines))
    (src / "catdog.csv").write_text("\n".join(
        l.replace(",lesion,", ",dog,").replace(",normal,", ",cat,") for l in lines))
    (root / "empty").mkdir()
    for name, size in (("ds32", 32), ("ds36", 36)):
        ingest(src, src / "labels.csv", root / name, size=size, folds=3, key_file=rel_key,
               progress=False)
    ingest(src, src / "catdog.csv", root / "ds-catdog", size=32, folds=3, key_file=rel_key,
           progress=False)
    (root / "taken").mkdir()
    (root / "taken" / "notes.txt").write_text("mine\n")
    return root


def _check(work, args, fragment, out, *, extra_lines=()):
    before = tree_state(work)
    result = medzoo(*args, cwd=work)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in error_lines(result.stderr)
             if not any(line.startswith(prefix) for prefix in extra_lines)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"medzoo {args[0]}: error: ") and fragment in lines[0], lines[0]
    if out is not None:
        assert not (work / out).exists() or out == "taken", f"{out} was (half-)written"
    assert tree_state(work) == before, "a failed command changed files"
    return lines[0]


@pytest.mark.parametrize("args, fragment, out", [
    (["data", "ingest", "empty", "--labels", "empty/labels.csv", "--out", "o1"],
     "empty/labels.csv", "o1"),
    (["data", "ingest", "src", "--labels", "src/columns.csv", "--out", "o2"],
     "src/columns.csv: expected columns path,label", "o2"),
    (["data", "ingest", "src", "--labels", "src/oneclass.csv", "--out", "o3"],
     "src/oneclass.csv: expected at least two classes", "o3"),
    (["data", "ingest", "src", "--labels", "src/labels.csv", "--out", "o4", "--folds", "9"],
     "needs at least 9 patients", "o4"),
    (["data", "ingest", "src", "--labels", "src/labels.csv", "--out", "taken"],
     "taken", "taken"),
    (["data", "ingest", "src", "--labels", "src/labels.csv", "--out", "o5", "--window", "1,0"],
     "width", "o5"),
    (["data", "info", "empty"], "empty: expected a dataset dir", None),
    (["report", "empty"], "empty: expected a CV dir or eval dir", None),
    (["push", "empty", "--to", "o6"], "empty: expected an export version dir", "o6"),
    (["evaluate", "empty", "--data", "ds32", "--out", "o7"], "empty", "o7"),
], ids=["labels-missing-in-empty-folder", "unknown-columns", "one-class",
        "fewer-patients-than-folds",
        "out-holds-files", "bad-window", "info-empty", "report-empty", "push-empty",
        "evaluate-empty"])
def test_bad_input_without_tensorflow(work, args, fragment, out):
    _check(work, args, fragment, out)


def test_labels_whose_paths_do_not_exist(work):
    """Every row rejected: the rejections are listed (DESIGN: on the terminal), then one error."""
    before = tree_state(work)
    result = medzoo("data", "ingest", "src", "--labels", "src/missing.csv", "--out", "o8",
                    cwd=work)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert lines[:2] == ["medzoo ingest: rejected nope1.dcm: file not found",
                         "medzoo ingest: rejected nope2.dcm: file not found"]
    assert len(lines) == 3 and lines[2].startswith("medzoo data: error: No readable input")
    assert not (work / "o8").exists() and tree_state(work) == before


@pytest.mark.parametrize("args, fragment, out", [
    (["train", "cnn", "--data", "empty", "--out", "o9"], "empty: expected a dataset dir", "o9"),
    (["train", "cnn", "--data", "ds32", "--out", "o10", "--test-fold", "7"], "--test-fold", "o10"),
    (["cv", "cnn", "--data", "ds32", "--folds", "9", "--out", "o11"], "at least 9 patients", "o11"),
    (["export", "empty", "--out", "o12"], "empty: expected a finished run dir", "o12"),
], ids=["train-empty", "train-test-fold", "cv-fewer-patients-than-folds", "export-empty"])
def test_bad_input_with_tensorflow(work, args, fragment, out):
    _check(work, args, fragment, out)


def test_evaluate_on_a_dataset_with_other_classes_or_size(work, cv_chain):
    export = cv_chain["out"] / "cnn" / "fold-0" / "export" / "cnn" / "1"
    line = _check(work, ["evaluate", str(export), "--data", "ds-catdog", "--out", "o13"],
                  "model.onnx", "o13")
    assert "classes" in line and "'cat', 'dog'" in line
    line = _check(work, ["evaluate", str(export), "--data", "ds36", "--out", "o14"],
                  "model.onnx", "o14")
    assert "36" in line


def test_an_image_size_the_model_cannot_take(work):
    _check(work, ["train", "cnn", "--data", "ds36", "--out", "o15"], "ds36", "o15")


def test_cv_with_two_folds(work):
    line = _check(work, ["cv", "cnn", "--data", "ds32", "--folds", "2", "--out", "o16"],
                  "--folds", "o16")
    assert "3" in line


def test_stderr_is_one_line_even_when_tensorflow_loads(work):
    result = medzoo("train", "cnn", "--data", "empty", "--out", "o17", cwd=work)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
