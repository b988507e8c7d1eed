"""``medzoo train --strategy``: which ``tf.distribute`` strategy trains, and who writes the run dir.

* ``default`` — one process, TensorFlow's default strategy (plain Keras ``fit``).
* ``mirrored`` — ``tf.distribute.MirroredStrategy`` over the local devices (Keras ``fit``).
* ``multiworker`` — ``tf.distribute.MultiWorkerMirroredStrategy`` over the workers that
  ``TF_CONFIG`` names, one process per worker. Keras 3 ``fit`` fails under this strategy with
  TF 2.21 + Keras 3.15 ("Attempt to convert a value (PerReplica...) to a Tensor"), so training
  goes through :mod:`medzoo.training.custom_loop`, which keeps the run dir layout and drives the
  same callbacks.

Only the chief writes the run dir; the other workers write theirs into a temporary folder that
is removed at the end. The training part is auto-sharded across workers by FILE (each worker
reads whole TFRecord shards) when there are at least as many shards as workers, else by DATA.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from medzoo.errors import InputError

__all__ = ["STRATEGIES", "Cluster", "Distribution", "parse_tf_config", "make_distribution",
           "shard_policy", "local_tf_configs"]

STRATEGIES = ("default", "mirrored", "multiworker")
TF_CONFIG_HELP = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                  '"task": {"type": "worker", "index": 0}}')

log = logging.getLogger("medzoo.training")


@dataclass(frozen=True)
class Cluster:
    """The parts of ``TF_CONFIG`` that matter here: every worker's address and who we are."""

    workers: tuple[str, ...]
    task_type: str
    task_index: int
    chief: tuple[str, ...] = ()

    @property
    def num_workers(self) -> int:
        """Processes that train (the chief, when listed apart, trains too)."""
        return len(self.workers) + len(self.chief)

    @property
    def is_chief(self) -> bool:
        """The ``chief`` task, or worker 0 when the cluster lists no chief (TensorFlow's rule)."""
        if self.chief:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def worker_rank(self) -> int:
        """0 for the chief, then the workers in order: the index of this worker's data shard."""
        if self.chief:
            return 0 if self.task_type == "chief" else 1 + self.task_index
        return self.task_index


def local_tf_configs(n: int) -> list[str]:
    """``TF_CONFIG`` texts for ``n`` worker processes on this machine, on free 127.0.0.1 ports.

    Worker 0 is the chief. For tests, benchmarks and trying ``--strategy multiworker`` on one box.
    """
    import socket

    sockets = [socket.socket() for _ in range(int(n))]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        workers = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
            for i in range(len(workers))]


def parse_tf_config(text: str | None) -> Cluster:
    """Parse and check ``TF_CONFIG`` for multi-worker training.

    Parameters
    ----------
    text : str or None
        The variable's value.

    Returns
    -------
    Cluster

    Raises
    ------
    InputError
        Unset, not JSON, no ``cluster.worker`` list of ``host:port`` addresses, a task type other
        than ``worker``/``chief``, or a task index outside the list — each named in the message.
    """
    if not text or not text.strip():
        raise InputError(f"--strategy multiworker needs the TF_CONFIG environment variable, "
                         f"{TF_CONFIG_HELP}. Received: TF_CONFIG unset")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"TF_CONFIG: expected JSON, {TF_CONFIG_HELP}. Received: invalid JSON "
                         f"({exc.msg} at character {exc.pos})") from None
    if not isinstance(config, dict):
        raise InputError(f"TF_CONFIG: expected a JSON object. Received: {type(config).__name__}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker", []), list):
        raise InputError(f"TF_CONFIG: expected \"cluster\" with a \"worker\" list, {TF_CONFIG_HELP}. "
                         f"Received: cluster={cluster!r}")
    extra = sorted(set(cluster) - {"worker", "chief"})
    if extra:
        raise InputError(f"TF_CONFIG: multi-worker training takes \"worker\" (and one \"chief\") "
                         f"tasks only. Received: cluster tasks {extra}")
    workers, chief = list(cluster.get("worker") or []), list(cluster.get("chief") or [])
    if len(chief) > 1:
        raise InputError(f"TF_CONFIG: expected at most one \"chief\". Received: {len(chief)}")
    if not workers and not chief:
        raise InputError(f"TF_CONFIG: expected at least one worker address, {TF_CONFIG_HELP}. "
                         "Received: an empty cluster")
    for address in workers + chief:
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(f"TF_CONFIG: expected worker addresses as host:port. "
                             f"Received: {address!r}")
    if not isinstance(task, dict):
        raise InputError(f"TF_CONFIG: expected \"task\": {{\"type\": \"worker\", \"index\": I}}. "
                         f"Received: task={task!r}")
    task_type, index = task.get("type"), task.get("index", 0)
    members = {"worker": workers, "chief": chief}
    if task_type not in members or not members[task_type]:
        raise InputError(f"TF_CONFIG: task.type must name a task of the cluster "
                         f"({', '.join(k for k, v in members.items() if v)}). "
                         f"Received: {task_type!r}")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(members[task_type]):
        raise InputError(f"TF_CONFIG: task.index must be in 0..{len(members[task_type]) - 1} for "
                         f"{len(members[task_type])} {task_type} address(es). Received: {index!r}")
    return Cluster(tuple(map(str, workers)), task_type, index, tuple(map(str, chief)))


def shard_policy(num_shards: int, num_workers: int, *, file_shardable: bool = True) -> tuple[str, str]:
    """How the training part is split across workers: ``("FILE" | "DATA", reason)``.

    FILE gives each worker whole shards (each reads only its files); it needs at least one shard
    per worker and a pipeline whose only source is the shard files. Otherwise every worker reads
    everything and keeps every ``num_workers``-th element (DATA).
    """
    if not file_shardable:
        return "DATA", "the training pipeline mixes other sources (balanced sampling or GAN images)"
    if num_shards < num_workers:
        return "DATA", (f"{num_shards} shard file(s) for {num_workers} workers; re-ingest with "
                        f"more, smaller shards to shard by file")
    return "FILE", f"{num_shards} shard files over {num_workers} workers"


@dataclass
class Distribution:
    """A strategy plus the facts training needs: who is chief and where this process writes.

    Attributes
    ----------
    name : one of :data:`STRATEGIES`
    strategy : the ``tf.distribute.Strategy``
    cluster : :class:`Cluster` or None (single process)
    info : what :meth:`describe` returns and ``config.json`` keeps under ``distribution``;
        filled in as training goes (``sharding``, ``examples_per_worker`` in the first epoch)
    """

    name: str
    strategy: object
    cluster: Cluster | None = None
    info: dict = field(default_factory=dict)
    _scratch: list = field(default_factory=list)

    @property
    def sharding(self) -> dict:
        return self.info.get("sharding", {})

    @property
    def is_chief(self) -> bool:
        return self.cluster is None or self.cluster.is_chief

    @property
    def custom_loop(self) -> bool:
        """Keras 3 ``fit`` cannot run under MultiWorkerMirroredStrategy (see the module doc)."""
        return self.name == "multiworker"

    @property
    def num_workers(self) -> int:
        return 1 if self.cluster is None else self.cluster.num_workers

    def scope(self):
        """Where variables must be created (model build, optimizer build)."""
        return self.strategy.scope() if self.name != "default" else contextlib.nullcontext()

    def writable_run_dir(self, run_dir) -> Path:
        """``run_dir`` on the chief; a fresh temporary folder on any other worker.

        The other workers run the same callbacks (checkpoints, history, backups) so that every
        worker executes the same collective operations, but nothing of theirs is kept.
        """
        if self.is_chief:
            return Path(run_dir)
        scratch = Path(tempfile.mkdtemp(prefix=f"medzoo-worker{self.cluster.worker_rank}-"))
        self._scratch.append(scratch)
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # also when training fails
        return scratch / "run"

    def cleanup(self) -> None:
        """Remove the temporary run dirs of a non-chief worker."""
        while self._scratch:
            shutil.rmtree(self._scratch.pop(), ignore_errors=True)

    def plan_sharding(self, ds_dir, config: dict) -> dict:
        """Choose FILE or DATA auto-sharding for this dataset (logged when it must be DATA)."""
        from medzoo.datasets.records import shard_paths

        plain = not config.get("gan") and config.get("balance") != "sample"
        policy, reason = shard_policy(len(shard_paths(ds_dir)), self.num_workers,
                                      file_shardable=plain)
        if self.num_workers > 1:
            self.info["sharding"] = {"policy": policy, "reason": reason}
            if policy == "DATA" and self.is_chief:
                log.warning("note: sharding the training data by DATA, not FILE: %s", reason)
        return {"policy": policy, "reason": reason}

    def describe(self) -> dict:
        """What goes into ``config.json``: strategy, workers, replicas (no addresses).

        The same dict is updated later (sharding, examples per worker), so the config written at
        the end of training holds those too.
        """
        self.info.update({"strategy": self.name, "workers": self.num_workers,
                          "replicas": int(self.strategy.num_replicas_in_sync)})
        return self.info

    def fit(self, net, train_ds, **fit_kwargs):
        """Keras ``fit`` (default, mirrored) or the custom loop (multiworker), same arguments."""
        if self.name != "default":  # compile made the optimizer outside the strategy: remake it
            with self.scope():
                net.optimizer = type(net.optimizer).from_config(net.optimizer.get_config())
        if not self.custom_loop:
            return net.fit(train_ds, **fit_kwargs)
        from medzoo.training import custom_loop

        return custom_loop.fit(net, self, train_ds, **fit_kwargs)


def make_distribution(name: str = "default") -> Distribution:
    """Create the strategy ``name`` (before any other TensorFlow operation runs).

    Raises
    ------
    InputError
        Unknown strategy, or (multiworker) a bad ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise InputError(f"--strategy must be one of {', '.join(STRATEGIES)}. Received: {name!r}")
    cluster = parse_tf_config(os.environ.get("TF_CONFIG")) if name == "multiworker" else None
    import tensorflow as tf

    if name == "default":
        return Distribution(name, tf.distribute.get_strategy())
    if name == "mirrored":
        return Distribution(name, tf.distribute.MirroredStrategy())
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as exc:  # "Collective ops must be configured at program startup"
        raise InputError(f"--strategy multiworker must be set up before TensorFlow runs any "
                         f"operation in this process ({exc})") from None
    return Distribution(name, strategy, cluster)
