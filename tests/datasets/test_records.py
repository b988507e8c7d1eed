import numpy as np
import pytest
import tensorflow as tf

from medzoo.datasets.records import (ShardWriter, decode_example, encode_example, iter_tfrecord,
                                     parse_record, record_features)
from medzoo.errors import InputError


def _record(i):
    rng = np.random.default_rng(i)
    image = rng.random((6, 5, 1), dtype=np.float32)
    mask = (rng.random((6, 5)) > 0.5).astype(np.uint8)
    return f"r{i:06d}", image, i % 3, mask


def test_tf_reads_pure_python_records(tmp_path):
    with ShardWriter(tmp_path / "shards", records_per_shard=2) as w:
        for i in range(5):
            w.write(record_features(*_record(i)))
    assert [p.name for p in w.paths] == ["shard-00000.tfrecord", "shard-00001.tfrecord",
                                         "shard-00002.tfrecord"]
    spec = {"record_id": tf.io.FixedLenFeature([], tf.string),
            "image": tf.io.FixedLenFeature([], tf.string),
            "mask": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
            "height": tf.io.FixedLenFeature([], tf.int64),
            "width": tf.io.FixedLenFeature([], tf.int64),
            "channels": tf.io.FixedLenFeature([], tf.int64)}
    got = [tf.io.parse_single_example(s, spec)
           for s in tf.data.TFRecordDataset([str(p) for p in w.paths])]
    assert len(got) == 5
    for i, ex in enumerate(got):
        rid, image, label, mask = _record(i)
        assert ex["record_id"].numpy().decode() == rid and int(ex["label"]) == label
        assert (int(ex["height"]), int(ex["width"]), int(ex["channels"])) == (6, 5, 1)
        np.testing.assert_array_equal(tf.io.decode_raw(ex["image"], tf.float32).numpy(),
                                      image.ravel())
        np.testing.assert_array_equal(tf.io.decode_raw(ex["mask"], tf.uint8).numpy(), mask.ravel())


def test_pure_python_reads_tf_records(tmp_path):
    path = tmp_path / "tf.tfrecord"
    ex = tf.train.Example(features=tf.train.Features(feature={
        "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x", b"\x00yz"])),
        "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[0, -3, 2**40, 7])),
        "f": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, -1.25])),
    }))
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(ex.SerializeToString())
        w.write(ex.SerializeToString())
    payloads = list(iter_tfrecord(path))
    assert len(payloads) == 2
    got = decode_example(payloads[0])
    assert got == {"b": [b"x", b"\x00yz"], "i": [0, -3, 2**40, 7], "f": [0.5, -1.25]}
    # and our encoding of the same features parses back identically in TF
    ours = tf.train.Example.FromString(encode_example({"b": [b"x", b"\x00yz"],
                                                       "i": [0, -3, 2**40, 7], "f": [0.5, -1.25]}))
    assert ours == ex


def test_roundtrip_and_corruption_is_detected(tmp_path):
    with ShardWriter(tmp_path, records_per_shard=10) as w:
        w.write(record_features(*_record(1)))
    rec = parse_record(decode_example(next(iter_tfrecord(w.paths[0]))))
    rid, image, label, mask = _record(1)
    assert rec["record_id"] == rid and rec["label"] == label
    np.testing.assert_array_equal(rec["image"], image)
    np.testing.assert_array_equal(rec["mask"], mask)
    data = bytearray(w.paths[0].read_bytes())
    data[40] ^= 0xFF
    w.paths[0].write_bytes(bytes(data))
    with pytest.raises(InputError, match="CRC mismatch"):
        list(iter_tfrecord(w.paths[0]))


def _shard_bytes(shard_dir):
    return {p.name: p.read_bytes() for p in sorted(shard_dir.iterdir())}


def test_a_writer_resumed_from_a_checkpoint_writes_the_uninterrupted_bytes(tmp_path):
    with ShardWriter(tmp_path / "whole", records_per_shard=2) as w:
        for i in range(7):
            w.write(record_features(*_record(i)))

    crashed = ShardWriter(tmp_path / "crashed", records_per_shard=2)
    for i in range(3):
        crashed.write(record_features(*_record(i)))
    state = crashed.checkpoint()
    assert state["shards"] == 2 and state["open_records"] == 1 and state["open_bytes"] > 0
    for i in range(3, 6):  # written after the checkpoint, then the process dies
        crashed.write(record_features(*_record(i)))
    crashed._fh.flush()
    assert (tmp_path / "crashed" / "shard-00001.tfrecord").is_file()  # finished after it

    resumed = ShardWriter(tmp_path / "crashed", records_per_shard=2, resume_from=state)
    assert [p.name for p in resumed.paths] == ["shard-00000.tfrecord", "shard-00001.tfrecord"]
    with resumed:
        for i in range(3, 7):
            resumed.write(record_features(*_record(i)))
    assert _shard_bytes(tmp_path / "crashed") == _shard_bytes(tmp_path / "whole")


def test_resuming_refuses_shards_that_do_not_match_the_checkpoint(tmp_path):
    w = ShardWriter(tmp_path, records_per_shard=2)
    for i in range(3):
        w.write(record_features(*_record(i)))
    state = w.checkpoint()
    w._fh.close()
    first = tmp_path / "shard-00000.tfrecord"
    good = first.read_bytes()
    first.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    with pytest.raises(InputError, match="CRC mismatch"):
        ShardWriter(tmp_path, records_per_shard=2, resume_from=state)
    first.write_bytes(good)
    with pytest.raises(InputError, match="expected at least .* bytes"):
        ShardWriter(tmp_path, records_per_shard=2, resume_from=dict(state, open_bytes=10**6))
    first.unlink()
    with pytest.raises(InputError, match="expected a finished shard"):
        ShardWriter(tmp_path, records_per_shard=2, resume_from=state)
