"""``medzoo.export.versions``: the one place every export and push writes a version through —
published whole on success, never over an existing version, no hidden folder left on failure."""

import pytest

from medzoo.errors import InputError
from medzoo.export.versions import new_version_dir, staged_version


def test_staged_version_publishes_only_a_finished_block(tmp_path):
    final_dir = tmp_path / "cnn" / "1"
    with staged_version(final_dir) as staging:
        assert staging.parent == final_dir.parent and staging.name.startswith(".1.partial-")
        (staging / "model.onnx").write_bytes(b"onnx")
        assert not final_dir.exists()  # nothing visible until the block ends
    assert (final_dir / "model.onnx").read_bytes() == b"onnx"
    assert sorted(p.name for p in final_dir.parent.iterdir()) == ["1"]


def test_staged_version_removes_the_staging_dir_when_the_block_fails(tmp_path):
    final_dir = tmp_path / "cnn" / "1"
    with pytest.raises(RuntimeError, match="parity"):
        with staged_version(final_dir) as staging:
            (staging / "model.onnx").write_bytes(b"half")
            raise RuntimeError("parity failed")
    assert list(final_dir.parent.iterdir()) == []


@pytest.mark.parametrize("doing", ["exporting", "pushing"])
def test_a_version_that_appears_meanwhile_is_never_overwritten(tmp_path, doing):
    final_dir = tmp_path / "cnn" / "3"
    with pytest.raises(InputError, match=f"^{final_dir}: appeared while {doing}; not overwritten$"):
        with staged_version(final_dir, doing=doing) as staging:
            (staging / "model.onnx").write_bytes(b"new")
            final_dir.mkdir()
            (final_dir / "model.onnx").write_bytes(b"old")
    assert (final_dir / "model.onnx").read_bytes() == b"old"
    assert sorted(p.name for p in final_dir.parent.iterdir()) == ["3"]


def test_new_version_dir_takes_the_next_number_and_refuses_an_existing_one(tmp_path):
    assert new_version_dir(tmp_path, "cnn", None) == tmp_path / "cnn" / "1"
    (tmp_path / "cnn" / "2").mkdir(parents=True)
    (tmp_path / "cnn" / ".3.partial-x").mkdir()  # a crashed export's leftovers: not a version
    assert new_version_dir(tmp_path, "cnn", None) == tmp_path / "cnn" / "3"
    with pytest.raises(InputError, match="version 2 exists already; exports are never"):
        new_version_dir(tmp_path, "cnn", 2)
    with pytest.raises(InputError, match=r"--version must be a positive integer. Received: 0"):
        new_version_dir(tmp_path, "cnn", 0)
    with pytest.raises(InputError, match=r"--name must be .* Received: '\.\./x'"):
        new_version_dir(tmp_path, "../x", None)
