"""Resumable ingest: a hidden, locked work folder and a journal of the work it holds.

An ingest writes its dataset in ``.OUT.ingest-<fingerprint>`` beside OUT and renames it to OUT
when done. The fingerprint covers everything the output depends on (labels.csv, every input
file's path, size and modification time, the options and the pseudonym key's fingerprint), so
a re-run of the same command finds the folder a killed run left, while a run with other inputs
or options starts afresh. After each finished shard the ingest appends one JSON line to
``journal.jsonl`` (after making the shards durable): the labels.csv rows done and the index,
rejections, warnings and SOP pseudonyms they gave. A re-run replays the journal, checks every
record of the shards it names (:meth:`medzoo.datasets.records.ShardWriter.checkpoint`) and
decodes only the rows after it; the result is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

JOURNAL = "journal.jsonl"
LOCK = ".lock"
WORK_SUFFIX = ".ingest-"


def fingerprint(labels_csv, files, settings: dict) -> str:
    """Hex digest of what an ingest's output depends on.

    Parameters
    ----------
    labels_csv : path-like
        Its bytes are hashed.
    files : iterable of path-like
        Every input file; path, size and modification time are hashed (a missing one as such).
    settings : dict
        The options, JSON-able.
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(Path(labels_csv).read_bytes())
    for f in files:
        try:
            info = os.stat(f)
            digest.update(f"{f}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{f}\0missing\n".encode())
    return digest.hexdigest()


def _try_lock(fh) -> bool:
    try:
        import fcntl
    except ImportError:  # no advisory locks here: nothing to coordinate with
        return True
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class WorkDir:
    """The hidden folder one ingest writes into, locked against a second ingest while in use.

    ``with WorkDir(out, digest) as work:`` creates or re-opens ``work.path``; unfinished work
    folders of the same OUT for other inputs or options are removed (when no ingest holds
    them). :meth:`finish` renames the folder to OUT; :meth:`discard` removes it.
    """

    def __init__(self, out: Path, digest: str):
        self.out = Path(out)
        self.path = self.out.parent / f".{self.out.name}{WORK_SUFFIX}{digest[:16]}"
        self._lock = None

    def __enter__(self) -> "WorkDir":
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / LOCK, "a+b")
        if not _try_lock(self._lock):
            self._lock.close()
            from medzoo.errors import InputError

            raise InputError(f"Output {self.out}: expected no other ingest writing it. "
                             "Received: one is running (same inputs and options)")
        for other in self.out.parent.glob(f".{self.out.name}{WORK_SUFFIX}*"):
            if other != self.path and other.is_dir():
                with contextlib.suppress(OSError), open(other / LOCK, "a+b") as fh:
                    if _try_lock(fh):
                        shutil.rmtree(other, ignore_errors=True)
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def journal(self) -> list[dict]:
        """The journal's entries, oldest first; a line cut short by a kill ends it."""
        path = self.path / JOURNAL
        if not path.is_file():
            return []
        entries = []
        for line in path.read_bytes().split(b"\n"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                break
        return entries

    def append(self, entry: dict) -> None:
        """Add one entry durably (the caller has made the shards it names durable first)."""
        with open(self.path / JOURNAL, "ab") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def reset(self) -> None:
        """Forget every entry and shard: start this work folder afresh."""
        for item in self.path.iterdir():
            if item.name != LOCK:
                shutil.rmtree(item) if item.is_dir() else item.unlink()

    def finish(self) -> None:
        """Drop the journal and the lock file, then rename the folder to OUT."""
        (self.path / JOURNAL).unlink(missing_ok=True)
        (self.path / LOCK).unlink(missing_ok=True)  # the lock itself holds until __exit__
        if self.out.exists():
            self.out.rmdir()  # an empty folder (checked before the ingest began)
        os.replace(self.path, self.out)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def merge(entries: list[dict]) -> dict | None:
    """The state the journal's entries add up to, or None for an empty journal: the scalar
    fields of the last entry, and the lists (``index``, ``rejected``, ``warnings``, ``sops``,
    ``dups``) concatenated."""
    if not entries:
        return None
    state = dict(entries[-1])
    for key in ("index", "rejected", "warnings", "sops", "dups"):
        state[key] = [item for entry in entries for item in entry[key]]
    return state
