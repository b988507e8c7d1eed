"""No planted PHI in any byte medzoo writes: ingest → train → export → evaluate → cv.

synth plants made-up names, IDs, birth dates, accession numbers, institutions, physicians and
UIDs in every file (and names each patient's folder after the PatientID). Every file under the
dataset dir (except rejected.csv, which may repeat the user's own paths), the runs (TensorBoard
logs, .keras archives unpacked), the exports (SavedModel, ONNX and its metadata, model cards),
the eval and CV dirs (charts with their metadata, report.html) and the commands' own output is
searched for each planted value in every spelling DICOM or a program might give it.
"""

import gzip
import io
import re
import zipfile
import zlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def variants(value: str) -> set[str]:
    """Lower-case spellings of one planted value: as stored, PN components re-joined, dates."""
    out = {value}
    if "^" in value:
        parts = [p for p in value.split("^") if p]
        out |= {" ".join(parts), ", ".join(parts), " ".join(reversed(parts[:2])),
                "^".join(parts[:2]), ", ".join(parts[:2])}
    if re.fullmatch(r"(19|20)\d{6}", value):
        out |= {f"{value[:4]}-{value[4:6]}-{value[6:]}", f"{value[4:6]}/{value[6:]}/{value[:4]}",
                f"{value[6:]}.{value[4:6]}.{value[:4]}"}
    return {v.lower() for v in out if len(v) >= 6}


def needles(summary: dict) -> dict[bytes, str]:
    found = {}
    for value in list(summary["phi"]) + list(summary["patient_folders"]):
        for v in variants(value):
            found[v.encode()] = value
            found[v.encode("utf-16-le")] = value
    return found


def _png_texts(data: bytes):
    """Decompressed zTXt/iTXt chunks of a PNG (tEXt is scanned as plain bytes)."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind in (b"zTXt", b"iTXt"):
            try:
                key, rest = body.split(b"\0", 1)
                if kind == b"zTXt":
                    yield zlib.decompress(rest[1:])
                elif rest[:1] == b"\1":
                    yield zlib.decompress(rest[2:].split(b"\0", 2)[-1])
            except (ValueError, zlib.error):
                pass
        pos += 12 + length


def blobs(path: Path, data: bytes, depth: int = 0):
    """(name, bytes) of a file and of everything packed inside it (zip members, gzip, PNG text)."""
    yield str(path), data
    if depth > 3:
        return
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield from blobs(path / member, archive.read(member), depth + 1)
    elif data[:2] == b"\x1f\x8b":
        yield from blobs(path / "<gunzip>", gzip.decompress(data), depth + 1)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        for i, text in enumerate(_png_texts(data)):
            yield f"{path}<text {i}>", text


def scan(roots, planted: dict[bytes, str], skip=("rejected.csv",)) -> tuple[int, list[str]]:
    files, hits = 0, []
    for root in roots:
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            if path.name in skip:
                continue
            files += 1
            for name, data in blobs(path, path.read_bytes()):
                low = data.lower()
                hits += [f"{planted[n]!r} in {name}" for n in planted if n in low]
    return files, hits


def test_no_planted_phi_anywhere_medzoo_wrote(tiny_dicom, tiny_ds, cv_chain, tmp_path):
    _, summary = tiny_dicom
    planted = needles(summary)
    assert len(summary["phi"]) > 50 and any(b"^" in n for n in planted)
    out = cv_chain["out"]
    # the chain is all there: dataset, runs with TensorBoard logs and .keras, exports, evals
    for pattern in ("*/fold-*/run/logs/**/*tfevents*", "*/fold-*/run/model.keras",
                    "*/fold-*/export/*/1/saved_model.pb", "*/fold-*/export/*/1/model.onnx",
                    "*/fold-*/export/*/1/model_card.md", "*/fold-*/eval/metrics.json",
                    "*/fold-*/eval/*.png", "comparison.png", "report.html"):
        assert list(out.glob(pattern)), pattern
    files, hits = scan([tiny_ds, out], planted)
    assert files > 60
    assert hits == []
    # what the commands printed (progress, summaries, errors) holds none either
    printed = "".join(o + e for o, e in cv_chain["logs"]) + cv_chain["final"].stdout + \
        cv_chain["final"].stderr
    printed = printed.lower().encode()
    assert [planted[n] for n in planted if n in printed] == []


def test_the_scanner_finds_what_it_looks_for(tiny_dicom, tmp_path):
    """The scan above would see a leak: PHI planted in a zip member, a PNG text chunk, gzip."""
    _, summary = tiny_dicom
    planted = needles(summary)
    name = next(v for v in summary["phi"] if "^" in v)
    date = next(v for v in summary["phi"] if re.fullmatch(r"19\d{6}", v))
    with zipfile.ZipFile(tmp_path / "model.keras", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", '{"name": "%s"}' % name.replace("^", " ").title())
    born = f"born {date[:4]}-{date[4:6]}-{date[6:]}"
    (tmp_path / "x.gz").write_bytes(gzip.compress(born.encode()))
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", summary["patient_folders"][0], zip=True)
    Image.new("L", (4, 4)).save(tmp_path / "chart.png", pnginfo=info)
    files, hits = scan([tmp_path], planted)
    assert files == 3 and len(hits) >= 3
