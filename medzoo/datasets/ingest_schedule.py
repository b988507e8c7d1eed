"""Who decodes which rows of an ingest, and when: chunks, worker processes, input order.

:func:`iter_outcomes` yields :func:`~medzoo.datasets.ingest_decode.decode_task`'s outcomes for
every task (labels.csv row) in input order. Tasks are decoded in chunks, in this process first;
worker processes (forked where safe, else spawned: :func:`worker_start_method`) are started
only when the work measured so far says they will pay for their start-up, and this process
keeps decoding chunks alongside them. The constants below are the knobs of that schedule.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from medzoo.datasets.ingest_decode import Options, decode_chunk, decode_task, init_worker

FILES_PER_CHUNK = 16
"""Files decoded per chunk of tasks (a series folder is never split; see :func:`_chunks`)."""

FIRST_CHUNK_FILES = 4
"""Files in the first chunk, which this process times before it starts any worker."""

PARALLEL_MIN_SECONDS = {"fork": 0.15, "spawn": 1.5}
"""Start workers only when the decode time still ahead, estimated, exceeds this (per start
method: a spawned worker re-imports numpy and pydicom, about 0.5 s of CPU each)."""

CHUNKS_QUEUED_PER_WORKER = 2
"""Chunks each worker process has queued (handed out, not yet finished)."""

CHUNKS_HELD_PER_PROCESS = 4
"""Chunks decoded ahead of the one due next, or in flight, per decoding process: what bounds
the results held in memory."""


def _task_files(task) -> int:
    return sum(len(files) for _, files, _ in task[0])


def _chunks(tasks, workers: int = 1):
    """Consecutive tasks grouped into chunks of about :data:`FILES_PER_CHUNK` files (a task, one
    labels.csv row, is never split).

    The first chunk is :data:`FIRST_CHUNK_FILES` files: this process times it to decide whether
    worker processes will pay (the sooner it knows, the sooner they start). Towards the end
    chunks shrink to what is left over ``2 × workers`` (guided self-scheduling), so that no
    process is still decoding a whole chunk while the others have nothing left to do.
    """
    remaining = sum(_task_files(task) for task in tasks)
    target = min(FILES_PER_CHUNK, FIRST_CHUNK_FILES)
    chunk, n = [], 0
    for task in tasks:
        chunk.append(task)
        n += _task_files(task)
        if n >= target:
            yield chunk
            remaining -= n
            chunk, n = [], 0
            target = max(1, min(FILES_PER_CHUNK, remaining // (2 * max(1, int(workers)))))
    if chunk:
        yield chunk


def worker_start_method() -> str:
    """How worker processes start: ``"fork"`` where that is safe, else ``"spawn"``.

    A forked worker is ready in milliseconds with numpy, pydicom and its decoders already
    imported; a spawned one re-imports them (about half a second of CPU each), which on a few
    hundred files costs more than it saves. Fork is used only on Linux, from a process that runs
    a single thread and has not loaded TensorFlow (whose threads and locks a fork would copy
    half-held); anything else spawns.

    Returns
    -------
    str
        ``"fork"`` or ``"spawn"``, a :mod:`multiprocessing` start method.
    """
    if (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1 and "tensorflow" not in sys.modules):
        return "fork"
    return "spawn"


def iter_outcomes(tasks, options: Options, workers: int = 1, parallel: str = "auto", stats=None):
    """Outcomes of :func:`decode_task` for every task, in task order.

    Tasks are decoded in chunks (:func:`_chunks`) by up to ``workers`` processes, this one
    included: up to ``workers - 1`` worker processes are started (see
    :func:`worker_start_method`), and only when worthwhile: ``parallel="auto"`` times the first
    chunk here and starts them when the remaining work is estimated above
    :data:`PARALLEL_MIN_SECONDS`; ``parallel="always"`` starts them at once (tests), ``"never"``
    never does. Chunks are handed out in order: each worker has :data:`CHUNKS_QUEUED_PER_WORKER`
    queued, and this process, rather than wait for the chunk due next, decodes the next chunk
    nobody has claimed, one task at a time, topping up the workers' queues between tasks (while
    fewer than ``CHUNKS_HELD_PER_PROCESS × workers`` chunks are decoded ahead or in flight).
    ``stats`` (a dict) receives ``workers_started`` (worker processes, this one not counted),
    ``start_method``, ``chunks`` and ``chunks_here`` (decoded by this process).
    """
    if parallel not in ("auto", "always", "never"):
        raise ValueError(f"Argument `parallel` must be auto, always or never. "
                         f"Received: parallel={parallel!r}")
    init_worker(options)
    scheduler = _Scheduler(list(_chunks(tasks, workers if parallel != "never" else 1)),
                           options, workers, parallel, stats if stats is not None else {})
    try:
        yield from scheduler
    finally:
        scheduler.close()


class _Scheduler:
    """The state of :func:`iter_outcomes`: which chunks are claimed, queued, decoded."""

    def __init__(self, chunks, options, workers, parallel, stats):
        self.chunks, self.options, self.parallel, self.stats = chunks, options, parallel, stats
        self.sizes = [sum(_task_files(task) for task in chunk) for chunk in chunks]
        self.unclaimed = sum(self.sizes)  # files in chunks nobody has started
        self.helpers = max(0, int(workers) - 1) if parallel != "never" else 0
        self.held = CHUNKS_HELD_PER_PROCESS * max(1, int(workers))  # decoded or in flight
        self.pool, self.futures, self.ready, self.claimed = None, {}, {}, 0
        self.busy, self.done_here = 0.0, 0  # this process's decoding: seconds, files
        stats.update(workers_started=0, chunks=len(chunks), chunks_here=0)

    def __iter__(self):
        for i in range(len(self.chunks)):
            while i not in self.ready:
                self._start_workers_if_worthwhile()
                self._feed()
                if i in self.ready:
                    break
                if i in self.futures and (self.claimed == len(self.chunks) or self._full()):
                    self.ready[i] = self.futures.pop(i).result()  # nothing else to do: wait
                else:  # chunk i is unclaimed (then it is the one claimed) or with a worker
                    self._decode_here(self._claim())
            yield from self.ready.pop(i)

    def _full(self) -> bool:
        return len(self.futures) + len(self.ready) >= self.held

    def _claim(self) -> int:
        k = self.claimed
        self.claimed += 1
        self.unclaimed -= self.sizes[k]
        return k

    def _start_workers_if_worthwhile(self):
        if self.pool is not None or not self.helpers:
            return
        method = worker_start_method()
        if self.parallel == "always" or (self.done_here and self.busy / self.done_here
                                         * self.unclaimed > PARALLEL_MIN_SECONDS[method]):
            self.pool = ProcessPoolExecutor(max_workers=self.helpers,
                                            mp_context=multiprocessing.get_context(method),
                                            initializer=init_worker, initargs=(self.options,))
            self.stats.update(workers_started=self.helpers, start_method=method)

    def _feed(self):
        """Collect what workers finished (a finished chunk waiting for its turn must not count
        as queued work) and top their queues up."""
        if self.pool is None:
            return
        for k in [k for k, future in self.futures.items() if future.done()]:
            self.ready[k] = self.futures.pop(k).result()
        while (self.claimed < len(self.chunks) and not self._full()
               and len(self.futures) < CHUNKS_QUEUED_PER_WORKER * self.helpers):
            k = self._claim()
            self.futures[k] = self.pool.submit(decode_chunk, self.chunks[k])

    def _decode_here(self, k: int):
        """Decode chunk ``k`` in this process, a task at a time, feeding the workers between
        tasks (their queues would otherwise run dry while this process is busy)."""
        t0 = time.perf_counter()
        out = []
        for task in self.chunks[k]:
            out.append(decode_task(task))
            self._feed()
        self.ready[k] = out
        self.busy += time.perf_counter() - t0
        self.done_here += self.sizes[k]
        self.stats["chunks_here"] += 1

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
