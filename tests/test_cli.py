"""The command line: fast help, one clear line and exit 2 on bad input, the chain end to end."""

import json
import subprocess
import sys

import pytest

from medzoo import cli


def _run(*args):
    return subprocess.run([sys.executable, "-m", "medzoo", *args], capture_output=True, text=True,
                          timeout=120)


def test_help_does_not_import_tensorflow():
    code = ("import sys, contextlib, io; from medzoo import cli\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    cli.main(['--help'])\n"
            "assert 'tensorflow' not in sys.modules, 'help imported tensorflow'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("command", ["models", "data", "train", "export", "push", "evaluate",
                                     "cv", "report", "demo"])
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "example" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragment", [
    (["data", "ingest", "no-such-dir", "--labels", "no-such.csv", "--out", "DS"], "no-such"),
    (["train", "cnn", "--data", "no-such-ds", "--out", "RUN"], "no-such-ds"),
    (["export", "no-such-run", "--out", "BASE"], "no-such-run"),
    (["evaluate", "no-such-model", "--data", "DS", "--out", "EVAL"], "no-such-model"),
    (["push", "no-such-version", "--to", "SERVING"], "no-such-version"),
])
def test_bad_input_gives_one_line_and_exit_2(args, fragment, tmp_path):
    result = subprocess.run([sys.executable, "-m", "medzoo", *args], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("medzoo")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir()), "a failed command left files behind"


def test_models_json_lists_every_registered_model(capsys):
    from medzoo.zoo import registry

    assert cli.main(["models", "--json", "--size", "32"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == registry.names()
    assert all(r["parameters"] > 0 and r["task"] in registry.TASKS for r in rows)
    assert [r["task"] for r in rows if r["name"] == "gan"] == ["augmentation"]  # listed, own task


def test_chain_end_to_end_through_the_cli(cnn_export, phantom_ds, tmp_path, capsys):
    assert cli.main(["evaluate", str(cnn_export), "--data", str(phantom_ds),
                     "--out", str(tmp_path / "eval"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "test" and result["n"] > 0
    assert (tmp_path / "eval" / "metrics.json").exists()
    assert (tmp_path / "eval" / "predictions.csv").exists()
