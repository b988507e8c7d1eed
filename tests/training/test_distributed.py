"""Multi-worker training: two real worker processes on localhost (MultiWorkerMirroredStrategy,
TF_CONFIG), a worker killed mid-run and the job restarted, checked against one process.

Each epoch is one full-batch step (the global batch holds the whole training part), so one
process and two workers that each read half of the shard files take the same steps: the final
weights and losses must agree to float rounding. The backup restores weights and optimizer state,
so a run interrupted by a dead worker and restarted must end where the uninterrupted one does.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

EPOCHS = 8
GLOBAL_BATCH = 64  # ≥ the training part: one full-batch step per epoch
OPTIONS = {"widths": [8, 16], "dense": 16, "dropout": 0.0}  # no dropout: no per-replica randomness
LEARNING_RATE = 0.001  # validation loss falls every epoch, so model.keras is the last epoch's
TEST_FOLD = 1  # its training fold lies in shards 2, 3 and 4: both workers get some (6 and 2)
WORKER = """
import sys
from medzoo.training.fit import train
ds, out, epochs, batch, lr, options, test_fold, extra = sys.argv[1:9]
import json
train("cnn", ds, out, epochs=int(epochs), batch_size=int(batch), seed=0, verbose=0,
      learning_rate=float(lr), model_options=json.loads(options), test_fold=int(test_fold),
      strategy="multiworker", **json.loads(extra))
"""


@pytest.fixture(scope="module")
def sharded_ds(tmp_path_factory):
    """16-px phantoms ingested into 6 shards of 4 records (FILE sharding needs ≥ 2 shards)."""
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic

    root = tmp_path_factory.mktemp("dist")
    write_synthetic(root / "dicom", patients=12, size=16, slices=2, seed=1)
    ingest(root / "dicom", root / "dicom" / "labels.csv", root / "ds", size=16, folds=3, seed=0,
           records_per_shard=4, key_file=root / "key")
    return root / "ds"


@pytest.fixture(scope="module")
def imbalanced_sharded_ds(tmp_path_factory):
    """As ``sharded_ds`` with one lesion patient in four: class weights 2/3 and 2."""
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic

    root = tmp_path_factory.mktemp("dist-imbalanced")
    write_synthetic(root / "dicom", patients=12, size=16, slices=2, seed=1, positive_fraction=0.25)
    ingest(root / "dicom", root / "dicom" / "labels.csv", root / "ds", size=16, folds=3, seed=0,
           records_per_shard=4, key_file=root / "key")
    return root / "ds"


def _launch(ds, run, tmp_dirs, logs, *, epochs=EPOCHS, batch=GLOBAL_BATCH, extra=None):
    """Start one process per worker with its TF_CONFIG; worker i's TMPDIR is tmp_dirs[i]."""
    from medzoo.training.distribute import local_tf_configs

    procs = []
    for tf_config, tmp, log in zip(local_tf_configs(len(tmp_dirs)), tmp_dirs, logs):
        tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmp),
                   TF_CONFIG=tf_config)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(ds), str(run), str(epochs), str(batch),
             str(LEARNING_RATE), json.dumps(OPTIONS), str(TEST_FOLD), json.dumps(extra or {})],
            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT))
    return procs


def _kill(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)


def _wait(procs, timeout, logs, watch=None):
    """Wait for every process (killing all on timeout); ``watch()`` is polled meanwhile."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        if watch:
            watch()
        if time.monotonic() > deadline:
            _kill(procs)
            tails = "\n".join(log.read_text()[-1500:] for log in logs)
            pytest.fail(f"workers still running after {timeout} s:\n{tails}")
        time.sleep(0.02)


def _weights(path):
    from medzoo.zoo import saving

    return saving.load_model(path).get_weights()


def _history(run):
    from medzoo.training import curves

    return curves.read_history(run / "history.csv")


def _train_reference(ds, single, snapshot=None, at_epoch=3):
    """Single-process training; with ``snapshot``, copy the run dir as a crash at the end of
    epoch ``at_epoch`` would leave it (config, history and the atomic backup it resumes from)."""
    import shutil
    import threading

    from medzoo.training.fit import train

    result = {}

    def run():
        try:
            result["config"] = train("cnn", ds, single, epochs=EPOCHS, batch_size=GLOBAL_BATCH,
                                     seed=0, verbose=0, learning_rate=LEARNING_RATE,
                                     model_options=OPTIONS, test_fold=TEST_FOLD)
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    copied = None
    while thread.is_alive() and snapshot is not None and copied is None:
        try:
            state = json.loads((single / "backup" / "state.json").read_text())
            if state["epoch"] >= at_epoch:
                (snapshot / "backup").mkdir(parents=True)
                shutil.copy2(single / "backup" / state["weights"], snapshot / "backup")
                (snapshot / "backup" / "state.json").write_text(json.dumps(state))
                for name in ("config.json", "history.csv"):
                    shutil.copy2(single / name, snapshot / name)
                copied = state["epoch"]
        except (FileNotFoundError, json.JSONDecodeError):  # mid-epoch: the next poll catches it
            shutil.rmtree(snapshot, ignore_errors=True)
        time.sleep(0.005)
    thread.join()
    if "error" in result:
        raise result["error"]
    assert snapshot is None or copied is not None, "training ended before the snapshot"
    return result["config"], copied


def _resume_on_two_workers(ds, run, tmp_path):
    """Launch two workers on ``run`` until they finish; return worker 1's scratch sightings."""
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    worker_tmp = [tmp_path / "tmp-0", tmp_path / "tmp-1"]
    seen_scratch = []

    def watch_non_chief_scratch():
        seen_scratch.extend(p.name for p in worker_tmp[1].glob("medzoo-worker1-*/run/config.json"))

    procs = _launch(ds, run, worker_tmp, logs)
    try:
        _wait(procs, 240, logs, watch_non_chief_scratch)
    finally:
        _kill(procs)
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log.read_text()[-3000:]
    assert "resuming from the chief's backup at epoch" in logs[0].read_text()
    # only the chief wrote the run dir; worker 1 wrote into its own temporary folder, now removed
    assert seen_scratch, "worker 1 never wrote its scratch run dir"
    assert list(worker_tmp[1].iterdir()) == []


def _check_matches_reference(ds, run, single, reference, resumed_at):
    assert (run / "model.keras").is_file() and (run / "checkpoints" / "best.keras").is_file()
    assert not (run / "backup").exists()
    config = json.loads((run / "config.json").read_text())
    dist = config["distribution"]
    assert (dist["strategy"], dist["workers"], dist["replicas"]) == ("multiworker", 2, 2)
    assert dist["sharding"]["policy"] == "FILE"
    per_worker = dist["examples_per_worker"]  # FILE sharding: each read its whole shard files
    assert sum(per_worker) == config["data"]["counts"]["train"] and min(per_worker) > 0
    assert per_worker == _train_ids_per_worker(ds)

    history, expected = _history(run), _history(single)
    val = [row["val_loss"] for row in expected]
    assert all(a > b for a, b in zip(val, val[1:])), f"set-up: val_loss must fall every epoch: {val}"
    epochs = [int(row["epoch"]) for row in history]
    assert epochs == sorted(set(epochs)) and epochs[-1] == reference["epochs_run"] - 1
    assert resumed_at <= len(history) <= EPOCHS
    by_epoch = {int(row["epoch"]): row for row in expected}
    for row in history:
        want = by_epoch[int(row["epoch"])]
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            assert row[key] == pytest.approx(want[key], abs=1e-5), (key, row, want)
    got, want = _weights(run / "model.keras"), _weights(single / "model.keras")
    assert len(got) == len(want)
    changed = max(float(np.abs(w - w0).max()) for w, w0 in zip(want, _weights_at_start()))
    assert changed > 1e-3  # training moved the weights, so agreeing is not trivial
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_two_workers_resume_a_crashed_run_and_match_one_process(sharded_ds, tmp_path):
    """The run dir a crash leaves after epoch 3 (copied from a real run between epochs), resumed
    by two workers: the chief restores weights + optimizer state, broadcasts them, and the
    workers end where uninterrupted single-process training ends."""
    single, run = tmp_path / "single", tmp_path / "run"
    reference, resumed_at = _train_reference(sharded_ds, single, snapshot=run, at_epoch=3)
    assert not (run / "model.keras").exists() and resumed_at < EPOCHS
    _resume_on_two_workers(sharded_ds, run, tmp_path)
    _check_matches_reference(sharded_ds, run, single, reference, resumed_at)


def test_two_workers_killed_and_restarted_match_one_process(sharded_ds, tmp_path):
    """A worker process is killed (SIGKILL) mid-run, then the whole job is restarted."""
    single, run = tmp_path / "single", tmp_path / "run"
    reference, _ = _train_reference(sharded_ds, single)
    logs = [tmp_path / f"first-{i}.log" for i in range(2)]
    first = _launch(sharded_ds, run, [tmp_path / "tmp1-0", tmp_path / "tmp1-1"], logs)
    state = run / "backup" / "state.json"
    killed_at = []
    try:
        def kill_after_third_epoch():
            if not killed_at and state.is_file():
                epoch = json.loads(state.read_text())["epoch"]
                if epoch >= 3:  # a worker dies; the cluster manager then restarts the whole job
                    killed_at.append(epoch)
                    _kill([first[1]])
                    _kill([first[0]])

        _wait(first, 240, logs, kill_after_third_epoch)
    finally:
        _kill(first)
    assert killed_at and killed_at[0] < EPOCHS, (
        "the first launch ended before a worker could be killed: " + logs[0].read_text()[-1500:])
    assert not (run / "model.keras").exists()
    _resume_on_two_workers(sharded_ds, run, tmp_path)
    _check_matches_reference(sharded_ds, run, single, reference, killed_at[0])


def _train_ids_per_worker(ds, workers=2):
    """Training records each worker reads under FILE sharding: worker w gets shard files
    w, w + workers, … (TensorFlow shards the file list), worked out from the shards themselves."""
    from medzoo.datasets import manifest, splits
    from medzoo.datasets.records import decode_example, iter_tfrecord, shard_paths
    from medzoo.training.fit import split_record_ids

    info = manifest.read_dataset_info(ds)
    fold_of = splits.fold_assignment(ds, int(info["folds"]), int(info["seed"]))
    train = set(split_record_ids(fold_of, TEST_FOLD, int(info["folds"]))["train"])
    counts = [0] * workers
    for i, shard in enumerate(shard_paths(ds)):
        counts[i % workers] += sum(decode_example(data)["record_id"][0].decode() in train
                                   for data in iter_tfrecord(shard))
    return counts


def test_two_workers_with_uneven_shards_and_several_steps_per_epoch(imbalanced_sharded_ds,
                                                                    tmp_path):
    """The usual case the full-batch tests above avoid: the workers hold different numbers of
    training records (whole shards each), so late in every epoch one of them has an empty batch
    while the other still trains. Class-weighted (--balance weights): validation batches carry
    per-example weights. The loop's validation numbers must be what Keras computes."""
    from medzoo.datasets import splits
    from medzoo.training import fit
    from medzoo.zoo import saving

    ds = imbalanced_sharded_ds
    per_worker = _train_ids_per_worker(ds)
    batch = 4  # 2 per replica: 3 steps on the worker with 6 records, 1 on the one with 2
    assert sorted(per_worker) == [2, 6], f"set-up: expected uneven shards, got {per_worker}"
    run, logs = tmp_path / "run", [tmp_path / f"worker-{i}.log" for i in range(2)]
    procs = _launch(ds, run, [tmp_path / "tmp-0", tmp_path / "tmp-1"], logs,
                    epochs=3, batch=batch, extra={"balance": "weights"})
    try:
        _wait(procs, 240, logs)
    finally:
        _kill(procs)
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log.read_text()[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert sorted(config["class_weight"].values()) == pytest.approx([2 / 3, 2.0])  # set-up
    assert config["distribution"]["sharding"]["policy"] == "FILE"
    assert config["distribution"]["examples_per_worker"] == per_worker  # whole files each
    history = _history(run)
    assert [int(row["epoch"]) for row in history] == [0, 1, 2]
    assert all(np.isfinite(row["loss"]) and row["loss"] > 0 for row in history)

    fold_of = splits.fold_assignment(ds, config["folds"], config["split_seed"])
    parts = fit.split_record_ids(fold_of, TEST_FOLD, config["folds"])
    _, val_ds = fit.training_datasets(ds, parts, config, target="label")
    best = saving.load_model(run / "checkpoints" / "best.keras")
    fit._compile(best, "classification", LEARNING_RATE)
    keras_says = best.evaluate(val_ds, verbose=0, return_dict=True)
    best_row = min(history, key=lambda row: row["val_loss"])
    assert best_row["val_loss"] == pytest.approx(keras_says["loss"], abs=1e-5)
    assert best_row["val_accuracy"] == pytest.approx(keras_says["accuracy"], abs=1e-6)


def _weights_at_start():
    import keras

    from medzoo.zoo import registry

    keras.utils.set_random_seed(0)
    return registry.build("cnn", (16, 16, 1), 2, **OPTIONS).get_weights()


def test_bad_tf_config_is_one_clear_error(monkeypatch):
    from medzoo.errors import InputError
    from medzoo.training.distribute import make_distribution, parse_tf_config, shard_policy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(InputError, match="needs the TF_CONFIG environment variable"):
        make_distribution("multiworker")
    with pytest.raises(InputError, match="--strategy must be one of default, mirrored, multiworker"):
        make_distribution("horovod")
    cases = {
        "{not json": "expected JSON",
        '{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}': "tasks only",
        '{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}': "host:port",
        '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}':
            r"task.index must be in 0..1",
        '{"cluster": {"worker": ["a:1"]}}': "expected \"task\"",
    }
    for text, message in cases.items():
        with pytest.raises(InputError, match=message):
            parse_tf_config(text)
    two = parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    assert (two.num_workers, two.is_chief, two.worker_rank) == (2, False, 1)
    chief = parse_tf_config('{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, '
                            '"task": {"type": "chief", "index": 0}}')
    assert (chief.num_workers, chief.is_chief) == (2, True)
    assert shard_policy(6, 2)[0] == "FILE"
    assert shard_policy(1, 2) == ("DATA", "1 shard file(s) for 2 workers; re-ingest with more, "
                                          "smaller shards to shard by file")
    assert shard_policy(6, 2, file_shardable=False)[0] == "DATA"


def test_mirrored_strategy_trains_like_the_default_one(sharded_ds, tmp_path):
    """MirroredStrategy over this machine's devices (one CPU here) goes through Keras fit."""
    from medzoo.training.fit import train

    runs = {}
    for strategy in ("default", "mirrored"):
        runs[strategy] = train("cnn", sharded_ds, tmp_path / strategy, epochs=2,
                               batch_size=GLOBAL_BATCH, seed=0, verbose=0,
                               learning_rate=LEARNING_RATE, model_options=OPTIONS,
                               test_fold=TEST_FOLD, strategy=strategy)
    assert runs["mirrored"]["distribution"] == {"strategy": "mirrored", "workers": 1,
                                                "replicas": 1}
    for a, b in zip(_history(tmp_path / "mirrored"), _history(tmp_path / "default")):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
