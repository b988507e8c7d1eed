"""TFRecord files of ``tf.train.Example`` written and read in pure Python (no TensorFlow).

The Example protobuf is encoded by hand (Features → map<string, Feature>; Feature is one of
BytesList = 1, FloatList = 2, Int64List = 3) and framed as TFRecord: uint64 length, masked
crc32c of the length, data, masked crc32c of the data. ``tf.data.TFRecordDataset`` +
``tf.io.parse_single_example`` read these files, and these functions read TensorFlow's.
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

import numpy as np

from medzoo.errors import InputError

RECORDS_PER_SHARD = 1024


# --------------------------------------------------------------------------- crc and framing


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C: ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` mod 2**32."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One TFRecord frame around ``data``."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


def iter_tfrecord(path):
    """Yield the payloads of a TFRecord file, checking both CRCs.

    Raises
    ------
    InputError
        On a truncated file or a CRC mismatch.
    """
    with open(path, "rb") as fh:
        while True:
            head = fh.read(12)
            if not head:
                return
            if len(head) < 12:
                raise InputError(f"{path}: expected a 12-byte record header. Received: {len(head)} bytes")
            length, crc = struct.unpack("<QI", head)
            if masked_crc32c(head[:8]) != crc:
                raise InputError(f"{path}: record length CRC mismatch")
            data = fh.read(length)
            tail = fh.read(4)
            if len(data) != length or len(tail) != 4:
                raise InputError(f"{path}: expected {length} record bytes. Received: a truncated record")
            if masked_crc32c(data) != struct.unpack("<I", tail)[0]:
                raise InputError(f"{path}: record data CRC mismatch")
            yield data


# --------------------------------------------------------------------------- protobuf


_SMALL_VARINTS = tuple(bytes([v]) for v in range(128))


def _varint(value: int) -> bytes:
    if 0 <= value < 128:  # tags, lengths of short names, small ints: one byte
        return _SMALL_VARINTS[value]
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _read_varint(buf: bytes, pos: int):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _field(number: int, payload: bytes) -> bytes:
    return b"".join((_varint(number << 3 | 2), _varint(len(payload)), payload))


def _feature(value) -> bytes:
    if isinstance(value, bytes):  # the common case (image, mask, record id): one bytes value
        return _field(1, _field(1, value))
    if isinstance(value, str):
        value = [value]
    if isinstance(value, np.ndarray):
        value = value.ravel().tolist()
    value = list(value)
    if value and all(isinstance(v, (bytes, str)) for v in value):
        inner = b"".join(_field(1, v.encode() if isinstance(v, str) else v) for v in value)
        return _field(1, inner)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        packed = b"".join(_varint(int(v)) for v in value)
        return _field(3, _field(1, packed) if value else b"")
    packed = np.asarray(value, dtype="<f4").tobytes()
    return _field(2, _field(1, packed))


def encode_example(features: dict) -> bytes:
    """Serialise a ``tf.train.Example``.

    Parameters
    ----------
    features : dict
        name → bytes/str (BytesList), int or list of ints (Int64List), float or list of floats
        (FloatList). Keys are written sorted, so the bytes are deterministic.
    """
    # built as pieces joined once: a large image or volume is copied once, not once per level
    # of protobuf nesting
    entries, size = [], 0
    for name in sorted(features):
        value = features[name]
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            feature = [_field(3, _field(1, _varint(int(value))))]  # Int64List of one value
        elif isinstance(value, bytes):
            inner = _prefix(1, len(value))
            feature = [_prefix(1, len(inner) + len(value)), inner, value]
        else:
            if isinstance(value, (float, np.floating)):
                value = [float(value)]
            feature = [_feature(value)]
        feature_size = sum(len(p) for p in feature)
        key, head = _key(name), _prefix(2, feature_size)
        entry_size = len(key) + len(head) + feature_size
        entry = [_prefix(1, entry_size), key, head, *feature]
        entries.extend(entry)
        size += len(entry[0]) + entry_size
    return b"".join([_prefix(1, size), *entries])


def _prefix(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited field (what :func:`_field` puts before a payload)."""
    return _varint(number << 3 | 2) + _varint(length)


@functools.lru_cache(maxsize=256)
def _key(name: str) -> bytes:
    """A feature's encoded name (``record_id``, ``image``, …), made once."""
    return _field(1, name.encode())


def _fields(buf: bytes):
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            n, pos = _read_varint(buf, pos)
            yield number, wire, buf[pos:pos + n]
            pos += n
        elif wire == 0:
            v, pos = _read_varint(buf, pos)
            yield number, wire, v
        elif wire == 5:
            yield number, wire, buf[pos:pos + 4]
            pos += 4
        elif wire == 1:
            yield number, wire, buf[pos:pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _decode_feature(buf: bytes):
    for number, _, payload in _fields(buf):
        if number == 1:
            return [v for n, _, v in _fields(payload) if n == 1]
        if number == 2:
            out = []
            for n, wire, v in _fields(payload):
                if n == 1:
                    out.extend(np.frombuffer(v, "<f4").tolist())
            return out
        if number == 3:
            out = []
            for n, wire, v in _fields(payload):
                if n != 1:
                    continue
                if wire == 0:
                    vals = [v]
                else:
                    vals, pos = [], 0
                    while pos < len(v):
                        x, pos = _read_varint(v, pos)
                        vals.append(x)
                out.extend(x - (1 << 64) if x >= 1 << 63 else x for x in vals)
            return out
    return []


def decode_example(data: bytes) -> dict:
    """Parse a serialised ``tf.train.Example`` into ``{name: list of bytes | int | float}``."""
    result = {}
    for number, _, features in _fields(data):
        if number != 1:
            continue
        for n, _, entry in _fields(features):
            if n != 1:
                continue
            name, value = None, b""
            for k, _, v in _fields(entry):
                if k == 1:
                    name = v.decode()
                elif k == 2:
                    value = v
            result[name] = _decode_feature(value)
    return result


# --------------------------------------------------------------------------- dataset records


GEOMETRY_FEATURES = {"origin": 3, "direction": 9, "original_shape": 3, "original_spacing": 3,
                     "original_origin": 3}
"""Features of a native-spacing volume record beside ``spacing`` (docs/internals.md): the stored
grid's voxel (0, 0, 0) in LPS mm, its 3×3 direction (rows: LPS unit vectors of the z, y, x array
axes), and the source DICOM grid (same direction) a prediction maps back to."""


def record_features(record_id: str, image: np.ndarray, label: int, mask=None,
                    spacing=None, labels=None, geometry=None) -> dict:
    """Feature dict of one dataset record (docs/internals.md schema).

    ``image`` is ``(H, W[, C])`` or, for a volume, ``(D, H, W, C)``: a volume record adds
    ``depth`` (int64) and ``spacing`` (3 floats, mm between voxel centres along D, H, W); its
    mask, when given, is ``(D, H, W)``. ``labels`` (multi-label datasets): the multi-hot int
    vector over the dataset's classes, stored as feature ``labels``. ``geometry`` (native-spacing
    volumes): ``{"origin": 3, "direction": 9, "original_shape": 3, "original_spacing": 3,
    "original_origin": 3}`` (LPS mm; see :data:`GEOMETRY_FEATURES`), stored as features of
    those names.
    """
    image = np.asarray(image, dtype="<f4")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim == 4:
        d, h, w, c = image.shape
    else:
        d = None
        h, w, c = image.shape
    features = {"record_id": record_id.encode(), "image": image.tobytes(), "label": int(label),
                "height": h, "width": w, "channels": c}
    if d is not None:
        features["depth"] = d
        features["spacing"] = [float(v) for v in (spacing if spacing is not None else (1, 1, 1))]
    if labels is not None:
        features["labels"] = [int(v) for v in labels]
    for name, size in GEOMETRY_FEATURES.items() if geometry is not None else ():
        values = np.asarray(geometry[name], dtype=np.float64).ravel()
        if values.size != size or not np.all(np.isfinite(values)):
            raise ValueError(f"Argument `geometry[{name!r}]` must be {size} finite numbers. "
                             f"Received: {values.tolist()}")
        features[name] = ([int(v) for v in values] if name == "original_shape"
                          else [float(v) for v in values])
    if mask is not None:
        shape = (h, w) if d is None else (d, h, w)
        features["mask"] = np.asarray(mask, dtype=np.uint8).reshape(shape).tobytes()
    return features


class ShardWriter:
    """Write records to ``shards/shard-NNNNN.tfrecord``, ``records_per_shard`` per file.

    Each shard is written to a temporary name and renamed when full or on :meth:`close`.
    :meth:`checkpoint` makes what was written durable and says where writing stands;
    ``resume_from`` (a checkpoint) continues from there after a crash, checking every record
    written before it. Use as a context manager.
    """

    def __init__(self, shard_dir, records_per_shard: int = RECORDS_PER_SHARD, *,
                 resume_from: dict | None = None):
        self.shard_dir = Path(shard_dir)
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        self.records_per_shard = int(records_per_shard)
        self.paths: list[Path] = []
        self._fh = None
        self._count = 0
        if resume_from is not None:
            self._resume(resume_from)

    def write(self, features: dict) -> None:
        """Append one Example (see :func:`record_features`)."""
        if self._fh is None or self._count >= self.records_per_shard:
            self._finish()
            path = self.shard_dir / f"shard-{len(self.paths):05d}.tfrecord"
            self.paths.append(path)
            self._fh = open(_partial(path), "wb")
            self._count = 0
        data = encode_example(features)  # framed piece by piece: no second copy of a volume
        length = struct.pack("<Q", len(data))
        self._fh.write(length + struct.pack("<I", masked_crc32c(length)))
        self._fh.write(data)
        self._fh.write(struct.pack("<I", masked_crc32c(data)))
        self._count += 1

    @property
    def finished(self) -> int:
        """Shards written to the end (renamed to their final names)."""
        return len(self.paths) - (self._fh is not None)

    def checkpoint(self) -> dict:
        """Flush and fsync what was written; return where writing stands (JSON-able):
        ``{"shards": files begun, "open_bytes": bytes of the last one while it is still being
        written (else None), "open_records": its records}``."""
        open_bytes = None
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            open_bytes = self._fh.tell()
        return {"shards": len(self.paths), "open_bytes": open_bytes,
                "open_records": self._count if self._fh is not None else 0}

    def _resume(self, state: dict) -> None:
        """Back to ``state`` (from :meth:`checkpoint`): full shards checked record by record,
        the open one cut back to its checkpointed length, anything written later removed.

        Raises
        ------
        InputError
            A shard is missing, damaged or holds another number of records than recorded.
        """
        n, open_bytes = int(state["shards"]), state["open_bytes"]
        self.paths = [self.shard_dir / f"shard-{i:05d}.tfrecord" for i in range(n)]
        kept = {p.name.split(".")[0] for p in self.paths}
        for extra in self.shard_dir.iterdir():  # begun after the checkpoint
            if extra.name.split(".")[0] not in kept:
                extra.unlink()
        full = self.paths if open_bytes is None else self.paths[:-1]
        for path in full:
            if not path.is_file():
                raise InputError(f"{path.name}: expected a finished shard. Received: none")
            count = sum(1 for _ in iter_tfrecord(path))
            if count != self.records_per_shard and (open_bytes is not None or path != full[-1]):
                raise InputError(f"{path.name}: expected {self.records_per_shard} records. "
                                 f"Received: {count}")
        if open_bytes is None:
            return
        path = self.paths[-1]
        if path.is_file():  # it was finished after the checkpoint: take it up again
            os.replace(path, _partial(path))
        partial = _partial(path)
        if not partial.is_file() or partial.stat().st_size < open_bytes:
            raise InputError(f"{path.name}: expected at least {open_bytes} bytes written. "
                             "Received: less")
        with open(partial, "r+b") as fh:
            fh.truncate(open_bytes)
        count = sum(1 for _ in iter_tfrecord(partial))
        if count != int(state["open_records"]):
            raise InputError(f"{path.name}: expected {state['open_records']} records. "
                             f"Received: {count}")
        self._fh = open(partial, "ab")
        self._count = count

    def _finish(self):
        if self._fh is not None:
            self._fh.close()
            path = self.paths[-1]
            os.replace(_partial(path), path)
            self._fh = None

    def close(self) -> None:
        self._finish()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        elif self._fh is not None:  # an interrupted run: the open shard stays partial
            self._fh.close()
            self._fh = None


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def shard_paths(ds_dir) -> list[Path]:
    """The dataset's shard files, in write order."""
    return sorted((Path(ds_dir) / "shards").glob("shard-*.tfrecord"))


def parse_record(features: dict) -> dict:
    """Decoded Example features → ``{record_id, image (H,W,C) float32, label, mask or None}``.

    A volume record gives ``image`` ``(D, H, W, C)``, ``mask`` ``(D, H, W)`` and ``spacing``
    (3 floats, D/H/W order).
    """
    h, w, c = features["height"][0], features["width"][0], features["channels"][0]
    shape = (h, w) if "depth" not in features else (features["depth"][0], h, w)
    image = np.frombuffer(features["image"][0], dtype="<f4").reshape(*shape, c).astype(np.float32)
    mask = features.get("mask")
    mask = np.frombuffer(mask[0], dtype=np.uint8).reshape(shape).copy() if mask else None
    out = {"record_id": features["record_id"][0].decode(), "image": image,
           "label": int(features["label"][0]), "mask": mask}
    if "spacing" in features:
        out["spacing"] = tuple(float(v) for v in features["spacing"])
    if "labels" in features:
        out["labels"] = np.array([int(v) for v in features["labels"]], dtype=np.int64)
    for name in GEOMETRY_FEATURES:
        if name in features:
            kind = np.int64 if name == "original_shape" else np.float64
            out[name] = np.array(features[name], dtype=kind)
    if "direction" in out:
        out["direction"] = out["direction"].reshape(3, 3)
    return out


def read_records(ds_dir, record_ids=None, parse=None):
    """Yield the dataset's records in stored order, without TensorFlow.

    Parameters
    ----------
    ds_dir : path-like
    record_ids : iterable of str, optional
        Only these records (default: all).
    parse : callable, optional
        Turns a decoded example into a record (default :func:`parse_record`; volumes use
        ``medzoo.datasets.volume_records.parse_volume_record``).

    Yields
    ------
    dict
        ``record_id`` str, ``image`` (H, W, C) float32, ``label`` int, ``mask`` (H, W) uint8 or None.

    Raises
    ------
    InputError
        Not a dataset dir, or a damaged shard.
    """
    from medzoo.datasets.manifest import read_dataset_info

    read_dataset_info(ds_dir)
    wanted = None if record_ids is None else set(record_ids)
    for path in shard_paths(ds_dir):
        for data in iter_tfrecord(path):
            features = decode_example(data)
            if wanted is not None and features["record_id"][0].decode() not in wanted:
                continue
            yield (parse or parse_record)(features)
