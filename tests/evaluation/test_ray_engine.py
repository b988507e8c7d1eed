"""``medzoo evaluate --engine ray``: Ray Data maps onnxruntime over the shards and must give
exactly the local engine's predictions and metrics (a real local Ray instance, real onnxruntime)."""

import filecmp
import json
import subprocess
import sys

import pytest

from .conftest import write_dataset, write_onnx

ray = pytest.importorskip("ray", reason="the Ray extra is not installed: pip install 'medzoo[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    # "local": a new instance of our own, never a cluster that RAY_ADDRESS or a `ray start` on
    # this machine would connect the test to
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    ds, _, _ = write_dataset(root / "ds", patients=18, slices=2)  # 36 records, 4 shards
    return root, ds


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_ray_engine_gives_the_local_engine_results(local_ray, sharded, task):
    from medzoo.cli import main
    from medzoo.datasets.records import shard_paths
    from medzoo.evaluation.evaluate import evaluate

    root, ds = sharded
    assert len(shard_paths(ds)) == 4
    model = write_onnx(root / f"{task}.onnx", task=task)
    local = evaluate(model, ds, root / f"{task}-local", split="all", n_boot=50, charts=False)
    assert main(["evaluate", str(model), "--data", str(ds), "--out", str(root / f"{task}-ray"),
                 "--split", "all", "--bootstrap", "50", "--engine", "ray"]) == 0
    on_ray = json.loads((root / f"{task}-ray" / "metrics.json").read_text())
    assert on_ray == json.loads(json.dumps(local))
    assert on_ray["n"] == 36 and on_ray["n_missing"] == 0
    assert filecmp.cmp(root / f"{task}-local" / "predictions.csv",
                       root / f"{task}-ray" / "predictions.csv", shallow=False)


def test_ray_engine_on_a_trained_cnn_export(local_ray, cnn_export, phantom_ds, tmp_path):
    """A real convolutional network exported by medzoo: bit-identical scores on Ray."""
    from medzoo.evaluation.evaluate import evaluate

    local = evaluate(cnn_export, phantom_ds, tmp_path / "local", n_boot=50, charts=False)
    on_ray = evaluate(cnn_export, phantom_ds, tmp_path / "ray", n_boot=50, charts=False,
                      engine="ray")
    assert on_ray == local and local["n"] > 0
    assert filecmp.cmp(tmp_path / "local" / "predictions.csv", tmp_path / "ray" / "predictions.csv",
                       shallow=False)


def test_a_damaged_shard_is_one_clear_error(local_ray, tmp_path):
    from medzoo.errors import InputError
    from medzoo.evaluation.evaluate import evaluate

    ds, _, _ = write_dataset(tmp_path / "ds", patients=6, slices=2)
    shard = sorted((ds / "shards").glob("*.tfrecord"))[0]
    shard.write_bytes(shard.read_bytes()[:-7])
    model = write_onnx(tmp_path / "m.onnx")
    with pytest.raises(InputError, match=r"shard-00000\.tfrecord: expected \d+ record bytes"):
        evaluate(model, ds, tmp_path / "eval", split="all", n_boot=0, charts=False, engine="ray")


def test_an_address_where_no_ray_listens_is_one_clear_error(tmp_path):
    """Exit 2 and one line at once (ray.init itself would wait for that cluster for minutes)."""
    import socket
    import time

    ds, _, _ = write_dataset(tmp_path / "ds", patients=6, slices=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "medzoo", "evaluate", str(write_onnx(tmp_path / "m.onnx")),
         "--data", str(ds), "--out", str(tmp_path / "e"), "--split", "all", "--engine", "ray",
         "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines()  # not onnxruntime's note on the
             if line.strip() and "W:onnxruntime" not in line]  # test model's spare initializer
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"medzoo evaluate: error: --address: cannot connect Ray to "
                               f"127.0.0.1:{port}"), lines[0]
    assert time.monotonic() - started < 60
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_unknown_engine_and_no_ray_or_tensorflow_at_import(tmp_path):
    from medzoo.errors import InputError
    from medzoo.evaluation.evaluate import evaluate

    ds, _, _ = write_dataset(tmp_path / "ds", patients=6, slices=1)
    with pytest.raises(InputError, match="--engine must be one of local, ray. Received: 'spark'"):
        evaluate(write_onnx(tmp_path / "m.onnx"), ds, tmp_path / "e", split="all", engine="spark")
    code = ("import sys, medzoo.evaluation, medzoo.evaluation.evaluate, "
            "medzoo.evaluation.ray_engine; "
            "print(sorted(m for m in ('ray', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    # nor does the command line's help, evaluate's included (where --engine ray is offered)
    code = ("import sys\nfrom medzoo.cli import main\n"
            "for argv in (['--help'], ['evaluate', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('ray', 'tensorflow') if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--engine {local,ray}" in out.stdout and out.stderr.strip() == "[]", out.stderr
