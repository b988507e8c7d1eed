"""Fuzz benchmark: hostile DICOM through ``medzoo.datasets.ingest`` (no wall-time asserts).

A seeded, structure-aware mutator of real DICOM files (medzoo's synthetic phantoms, plain and
RLE/JPEG-LS/JPEG 2000 compressed, and a pick of pydicom's own test files): truncation, bit flips,
wrong element lengths and VRs, absurd Rows/Columns/BitsAllocated/NumberOfFrames, missing or short
PixelData, cut compressed fragments, broken RLE headers, deep nested sequences, deflate bombs, a
wrong transfer syntax, garbage. Every batch also holds the unmutated seeds, which must still load.

Prints files/s and the three numbers that must be zero: crashes (ingest raised or its process
died), hangs (a batch ran past its time limit) and lost (an input in neither index.csv nor
rejected.csv, or a seed that did not load).

    python bench/fuzz.py [--files 10000] [--batch 1000] [--workers 2] [--seed 0]

``tests/reliability/test_fuzz.py`` runs the same mutator on a few hundred files in CI.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Small image files from pydicom's test corpus, picked by name from get_testdata_files() (no
# pattern: a pattern may reach for the network): each transfer syntax pydicom decodes.
CORPUS_SEEDS = (
    "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm", "CT_small.dcm", "JPEG2000.dcm",
    "SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_small_odd_jpeg.dcm", "image_dfl.dcm",
    "rtdose_1frame.dcm", "liver_1frame.dcm", "JPEGLSNearLossless_16.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
)

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
             b"UV"}
_ALL_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
            b"OB", b"OD", b"OF", b"OL", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM",
            b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"XX", b"\x00\x00"]
_UNDEFINED = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010

EXPLICIT_LE = "1.2.840.10008.1.2.1"
TRANSFER_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                     "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50",
                     "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.3.4.5.6", ""]


# --------------------------------------------------------------------------- structure


class Element:
    """One top-level element found by :func:`scan`: where its header, length and value are."""

    __slots__ = ("tag", "vr", "start", "length_at", "length_size", "value_at", "length")

    def __init__(self, tag, vr, start, length_at, length_size, value_at, length):
        self.tag, self.vr, self.start = tag, vr, start
        self.length_at, self.length_size = length_at, length_size
        self.value_at, self.length = value_at, length

    @property
    def end(self) -> int:
        return self.value_at + (0 if self.length == _UNDEFINED else self.length)


def _read_element(data: bytes, pos: int, explicit: bool):
    if pos + 8 > len(data):
        return None
    group, elem = struct.unpack_from("<HH", data, pos)
    tag = (group << 16) | elem
    if group == 0xFFFE:  # item/delimiter at top level: stop
        return None
    vr = data[pos + 4:pos + 6] if explicit or group == 2 else None
    if vr is not None and vr.isalpha() and vr.isupper():
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                return None
            length = struct.unpack_from("<I", data, pos + 8)[0]
            return Element(tag, vr, pos, pos + 8, 4, pos + 12, length)
        length = struct.unpack_from("<H", data, pos + 6)[0]
        return Element(tag, vr, pos, pos + 6, 2, pos + 8, length)
    if group == 2 or explicit:
        return None
    length = struct.unpack_from("<I", data, pos + 4)[0]
    return Element(tag, None, pos, pos + 4, 4, pos + 8, length)


def scan(data: bytes) -> tuple[list[Element], str]:
    """Top-level elements of a little-endian DICOM file (meta group and dataset) and its syntax.

    Stops at the first undefined-length element after recording it (encapsulated pixel data is
    last), at anything it cannot follow, and inside deflated data.
    """
    elements: list[Element] = []
    pos = 132 if data[128:132] == b"DICM" else 0
    syntax = ""
    while True:
        group = struct.unpack_from("<H", data, pos)[0] if pos + 2 <= len(data) else None
        explicit = group == 2 or syntax not in ("1.2.840.10008.1.2", "")
        if group is None or (group != 2 and syntax in ("1.2.840.10008.1.2.2",
                                                        "1.2.840.10008.1.2.1.99")):
            break
        el = _read_element(data, pos, explicit)
        if el is None:
            break
        elements.append(el)
        if el.tag == 0x00020010:
            syntax = data[el.value_at:el.end].rstrip(b"\0 ").decode("ascii", "replace")
        if el.length == _UNDEFINED or el.end > len(data):
            break
        pos = el.end
    return elements, syntax


def _header(el: Element, data: bytes) -> bytes:
    return data[el.start:el.value_at]


def with_value(data: bytes, el: Element, value: bytes) -> bytes:
    """``data`` with element ``el``'s value replaced (length field rewritten to match)."""
    if len(value) % 2:
        value += b" " if el.vr not in (b"OB", b"UN", b"UI") else b"\0"
    header = bytearray(_header(el, data))
    fmt = "<H" if el.length_size == 2 else "<I"
    if el.length_size == 2 and len(value) > 0xFFFF:
        value = value[:0xFFFE]
    struct.pack_into(fmt, header, el.length_at - el.start, len(value))
    end = el.end if el.length != _UNDEFINED else len(data)
    return data[:el.start] + bytes(header) + value + data[end:]


def element_bytes(tag: int, vr: bytes, value: bytes, explicit: bool = True) -> bytes:
    """A complete little-endian element (explicit or implicit VR)."""
    group, elem = tag >> 16, tag & 0xFFFF
    if not explicit:
        return struct.pack("<HHI", group, elem, len(value)) + value
    if vr in _LONG_VRS:
        return struct.pack("<HH", group, elem) + vr + b"\0\0" + struct.pack("<I", len(value)) \
            + value
    return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value


# --------------------------------------------------------------------------- mutations


def _find(elements, tag):
    return next((e for e in elements if e.tag == tag), None)


def _dataset_elements(elements):
    return [e for e in elements if e.tag >> 16 != 2]


def m_truncate(data, rng, elements, syntax):
    if rng.random() < 0.5:
        cut = rng.randrange(0, len(data))
    else:  # inside the pixel data, where most of a file's bytes are
        cut = len(data) - rng.randrange(1, max(2, len(data) // 3))
    return data[:max(0, cut)]


def m_bitflip(data, rng, elements, syntax):
    out = bytearray(data)
    header_end = next((e.start for e in elements if e.tag == PIXEL_DATA), len(data))
    for _ in range(rng.choice((1, 2, 4, 8, 32))):
        limit = header_end if rng.random() < 0.7 else len(out)
        i = rng.randrange(0, max(1, limit))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_length(data, rng, elements, syntax):
    if not elements:
        return m_bitflip(data, rng, elements, syntax)
    el = rng.choice(elements)
    out = bytearray(data)
    top = 0xFFFF if el.length_size == 2 else 0xFFFFFFFF
    choices = [0, 1, 3, el.length + 1, max(0, el.length - 1), el.length * 2 + 2, top, top - 1,
               0x7FFFFFFF & top, rng.randrange(0, top)]
    struct.pack_into("<H" if el.length_size == 2 else "<I", out, el.length_at,
                     rng.choice(choices) & top)
    return bytes(out)


def m_vr(data, rng, elements, syntax):
    explicit = [e for e in elements if e.vr is not None]
    if not explicit:
        return m_length(data, rng, elements, syntax)
    el = rng.choice(explicit)
    vr = rng.choice(_ALL_VRS)
    return data[:el.start + 4] + vr + data[el.start + 6:]


_ABSURD = {
    0x00280010: [0, 1, 2, 4096, 32767, 65535],        # Rows
    0x00280011: [0, 1, 3, 4096, 32768, 65535],        # Columns
    0x00280100: [0, 1, 7, 12, 24, 32, 64, 255],       # BitsAllocated
    0x00280101: [0, 1, 17, 33, 255],                   # BitsStored
    0x00280102: [0, 31, 64, 255],                      # HighBit
    0x00280002: [0, 2, 3, 4, 255],                     # SamplesPerPixel
    0x00280103: [1, 2, 255],                           # PixelRepresentation
    0x00280006: [1, 2],                                # PlanarConfiguration
}
_ABSURD_TEXT = {
    0x00280008: [b"0", b"-1", b"abc", b"2147483647", b"65536", b"1e9"],          # NumberOfFrames
    0x00281053: [b"nan", b"inf", b"-inf", b"1e308", b"0", b"-1e-300", b"x"],     # RescaleSlope
    0x00281052: [b"nan", b"1e308", b"-inf", b"1\\2"],                            # RescaleIntercept
    0x00281050: [b"nan", b"inf", b"1e308", b"-1e308", b"", b"40\\"],             # WindowCenter
    0x00281051: [b"0", b"-5", b"nan", b"inf", b"1e-320", b"0.5", b""],           # WindowWidth
    0x00280004: [b"PALETTE COLOR", b"YBR_FULL", b"RGB", b"MONOCHROME3", b"", b"\xff\xfe"],
}


def m_absurd(data, rng, elements, syntax):
    """Absurd pixel-module values: the header promises what the pixel data cannot hold."""
    present = [e for e in elements if e.tag in _ABSURD or e.tag in _ABSURD_TEXT]
    if not present:
        return m_bitflip(data, rng, elements, syntax)
    out = data
    for el in rng.sample(present, k=min(len(present), rng.choice((1, 1, 2, 3)))):
        elements, _ = scan(out)
        el = _find(elements, el.tag)
        if el is None:
            continue
        if el.tag in _ABSURD:
            packed = struct.pack("<H", rng.choice(_ABSURD[el.tag]))
            if el.length == 2:
                out = out[:el.value_at] + packed + out[el.value_at + 2:]
        else:
            out = with_value(out, el, rng.choice(_ABSURD_TEXT[el.tag]))
    return out


def m_huge_image(data, rng, elements, syntax):
    """Rows = Columns = 65535 (and 64 bits, many frames): must be refused before allocation."""
    out = data
    for tag, value in ((0x00280010, 65535), (0x00280011, 65535),
                       (0x00280100, rng.choice((16, 32, 64)))):
        el = _find(scan(out)[0], tag)
        if el is not None and el.length == 2:
            out = out[:el.value_at] + struct.pack("<H", value) + out[el.value_at + 2:]
    el = _find(scan(out)[0], 0x00280008)
    if el is not None and rng.random() < 0.5:
        out = with_value(out, el, b"100000")
    return out


def m_drop(data, rng, elements, syntax):
    """Remove PixelData, Rows, Columns, BitsAllocated, the syntax or a random element."""
    wanted = [PIXEL_DATA, 0x00280010, 0x00280011, 0x00280100, 0x00020010, 0x00280002, 0x00280004]
    tag = rng.choice(wanted)
    if rng.random() < 0.85:
        el = _find(elements, tag)
    else:
        el = rng.choice(elements) if elements else None
    if el is None:
        return m_truncate(data, rng, elements, syntax)
    end = el.end if el.length != _UNDEFINED else len(data)
    return data[:el.start] + data[end:]


def m_short_pixels(data, rng, elements, syntax):
    """PixelData shorter than Rows × Columns × bytes, with a consistent length field."""
    el = _find(elements, PIXEL_DATA)
    if el is None or el.length == _UNDEFINED:
        return m_fragments(data, rng, elements, syntax)
    keep = rng.choice((0, 2, el.length // 2, el.length - 2, rng.randrange(0, max(1, el.length))))
    keep -= keep % 2
    return with_value(data, el, data[el.value_at:el.value_at + keep])


def _fragments(data, el):
    """(offset of item header, length) for each item of encapsulated pixel data."""
    items, pos = [], el.value_at
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        if (group, elem) != (0xFFFE, 0xE000):
            break
        items.append((pos, length))
        pos += 8 + length
    return items


def m_fragments(data, rng, elements, syntax):
    """Encapsulated pixel data: fragments cut short, lengths lied about, RLE headers broken."""
    el = _find(elements, PIXEL_DATA)
    if el is None or el.length != _UNDEFINED:
        return m_short_pixels(data, rng, elements, syntax) if el is not None else \
            m_truncate(data, rng, elements, syntax)
    items = _fragments(data, el)
    if len(items) < 2:
        return m_truncate(data, rng, elements, syntax)
    pos, length = rng.choice(items[1:])  # items[0] is the basic offset table
    out = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:  # cut the fragment's bytes, keep its declared length (runs into the delimiter)
        cut = rng.randrange(0, max(1, length))
        return bytes(out[:pos + 8 + cut] + out[pos + 8 + length:])
    if kind == 1:  # declared length beyond the end of file
        struct.pack_into("<I", out, pos + 4, length + rng.choice((2, 100, 1 << 20, 0x7FFFFFF0)))
        return bytes(out)
    if kind == 2:  # fragment shortened consistently: the codec sees a cut stream
        cut = rng.randrange(0, max(1, length)) & ~1
        struct.pack_into("<I", out, pos + 4, cut)
        return bytes(out[:pos + 8 + cut] + out[pos + 8 + length:])
    if kind == 3 and length >= 64 and syntax == "1.2.840.10008.1.2.5":  # RLE header
        segments = rng.choice((0, 1, 2, 15, 16, 255, 0xFFFFFFFF))
        struct.pack_into("<I", out, pos + 8, segments)
        for k in range(rng.randrange(1, 4)):
            struct.pack_into("<I", out, pos + 12 + 4 * rng.randrange(15),
                             rng.choice((0, 1, 63, length, length * 4, 0xFFFFFFFF)))
        return bytes(out)
    # scribble inside the codestream
    for _ in range(rng.choice((1, 4, 16))):
        i = pos + 8 + rng.randrange(0, max(1, length))
        if i < len(out):
            out[i] = rng.randrange(256)
    return bytes(out)


def m_nested(data, rng, elements, syntax):
    """A private sequence nested ``depth`` deep before the pixel data."""
    el = _find(elements, PIXEL_DATA)
    if el is None or syntax not in (EXPLICIT_LE, "1.2.840.10008.1.2", "1.2.840.10008.1.2.5",
                                     "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"):
        return m_bitflip(data, rng, elements, syntax)
    explicit = syntax != "1.2.840.10008.1.2"
    depth = rng.choice((8, 200, 2000, 20000))
    defined = rng.random() < 0.5
    creator = element_bytes(0x00090010, b"LO", b"FUZZ", explicit)
    leaf = element_bytes(0x00091001, b"LO", b"LEAF", explicit)
    body = leaf
    sq_head = struct.pack("<HH", 0x0009, 0x1002) + (b"SQ\0\0" if explicit else b"")
    for _ in range(depth):
        if defined:
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
            body = sq_head + struct.pack("<I", len(item)) + item
        else:
            item = struct.pack("<HHI", 0xFFFE, 0xE000, _UNDEFINED) + body + \
                struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
            body = sq_head + struct.pack("<I", _UNDEFINED) + item + \
                struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    if rng.random() < 0.3:  # and forget the last delimiter
        body = body[:-8]
    at = next((e.start for e in elements if e.tag > 0x00090010), el.start)
    return data[:at] + creator + body + data[at:]


def m_syntax(data, rng, elements, syntax):
    """Claim another transfer syntax than the one the data are encoded in."""
    el = _find(elements, 0x00020010)
    if el is None:
        return m_bitflip(data, rng, elements, syntax)
    out = with_value(data, el, rng.choice(TRANSFER_SYNTAXES).encode() + b"\0")
    group_len = _find(scan(out)[0], 0x00020000)
    if group_len is not None and rng.random() < 0.7:  # keep the meta group length consistent
        meta = [e for e in scan(out)[0] if e.tag >> 16 == 2 and e.tag != 0x00020000]
        if meta:
            out = with_value(out, group_len, struct.pack("<I", meta[-1].end - meta[0].start))
    return out


def m_splice(data, rng, elements, syntax):
    """Duplicate or move a random chunk (elements appear twice, out of order)."""
    if len(data) < 16:
        return data + data
    a = rng.randrange(0, len(data) - 8)
    b = min(len(data), a + rng.randrange(8, 512))
    at = rng.randrange(0, len(data))
    return data[:at] + data[a:b] + data[at:]


def m_garbage(data, rng, elements, syntax):
    size = rng.choice((0, 1, 131, 132, 200, 4096))
    junk = bytes(rng.getrandbits(8) for _ in range(size))
    if rng.random() < 0.5 and size >= 132:
        junk = junk[:128] + b"DICM" + junk[132:]
    return junk


def m_deflate_bomb(data, rng, elements, syntax):
    """A tiny deflated file whose dataset inflates to megabytes or to far past the limit."""
    uid = f"1.2.826.0.1.3680043.9.{rng.randrange(10**9)}".encode()
    body = element_bytes(0x00080016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0") + \
        element_bytes(0x00080018, b"UI", uid + b"\0" * (len(uid) % 2))
    megabytes = rng.choice((8, 600))
    head = body + struct.pack("<HH", 0x0009, 0x1010) + b"OB\0\0" \
        + struct.pack("<I", megabytes << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)
    # after a full flush the compressor starts afresh: the same megabyte of zeros gives the same
    # bytes every time, so the stream is built without compressing hundreds of megabytes
    block = comp.compress(bytes(1 << 20)) + comp.flush(zlib.Z_FULL_FLUSH)
    deflated = first + block * megabytes + comp.flush()
    meta = element_bytes(0x00020001, b"OB", b"\0\1") + \
        element_bytes(0x00020002, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0") + \
        element_bytes(0x00020003, b"UI", b"1.2.3.4\0") + \
        element_bytes(0x00020010, b"UI", b"1.2.840.10008.1.2.1.99\0")
    meta = element_bytes(0x00020000, b"UL", struct.pack("<I", len(meta))) + meta
    return b"\0" * 128 + b"DICM" + meta + deflated


def many_elements(data: bytes, n: int) -> bytes:
    """``data`` with ``n`` empty private elements added to its header: a file pydicom takes
    seconds to parse (a few microseconds per element), used to test the per-file time limit."""
    elements, syntax = scan(data)
    parts, group, elem = [], 0x0011, 0x1000
    for _ in range(n):
        parts.append(struct.pack("<HH", group, elem) + b"SH\0\0")
        elem += 1
        if elem > 0xFFFF:
            group, elem = group + 2, 0x1000
    at = next(e.start for e in elements if e.tag > (group << 16 | 0xFFFF))
    return data[:at] + b"".join(parts) + data[at:]


MUTATIONS = {
    "truncate": (m_truncate, 12), "bitflip": (m_bitflip, 14), "length": (m_length, 12),
    "vr": (m_vr, 8), "absurd": (m_absurd, 14), "huge_image": (m_huge_image, 4),
    "drop": (m_drop, 8), "short_pixels": (m_short_pixels, 6), "fragments": (m_fragments, 8),
    "nested": (m_nested, 4), "syntax": (m_syntax, 5), "splice": (m_splice, 4),
    "garbage": (m_garbage, 2), "deflate_bomb": (m_deflate_bomb, 0.2),
}


def mutate(data: bytes, rng: random.Random, op: str | None = None) -> tuple[bytes, str]:
    """One mutant of ``data``: ``(bytes, name of the mutation)``; ``op`` forces one mutation."""
    if op is None:
        names = list(MUTATIONS)
        op = rng.choices(names, weights=[MUTATIONS[n][1] for n in names])[0]
    elements, syntax = scan(data)
    out = MUTATIONS[op][0](data, rng, elements, syntax)
    if rng.random() < 0.15 and op not in ("garbage", "deflate_bomb"):  # sometimes two at once
        second = rng.choice([n for n in MUTATIONS if n not in ("garbage", "deflate_bomb")])
        elements, syntax = scan(out)
        out = MUTATIONS[second][0](out, rng, elements, syntax)
        op = f"{op}+{second}"
    return out, op


def sop_uid(data: bytes) -> bytes | None:
    """The SOPInstanceUID of a (valid) file, as stored."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        return str(ds.SOPInstanceUID).encode()
    except Exception:
        return None


def unique_uid(data: bytes, uid: bytes | None, n: int) -> bytes:
    """Give a copy its own SOPInstanceUID (same length, in the meta group and the dataset), so
    that a mutant that still decodes is ingested rather than rejected as a duplicate."""
    if not uid or len(uid) < 12:
        return data
    suffix = f".{n}".encode()
    return data.replace(uid, uid[:len(uid) - len(suffix)] + suffix)


# --------------------------------------------------------------------------- corpus


def seed_files(workdir: Path) -> list[Path]:
    """Real DICOM seeds: synthetic phantoms (plain, RLE, JPEG-LS, J2K) and pydicom test files."""
    from pydicom.data import get_testdata_files

    from medzoo.datasets.synth import write_synthetic

    seeds = []
    for k, compress in enumerate((None, "rle", "jpeg-ls", "j2k")):
        out = workdir / f"synth-{compress or 'plain'}"
        write_synthetic(out, patients=2, modality=("ct", "mr", "ct", "cr")[k], size=32,
                        slices=1, seed=11 + k, compress=compress)
        seeds += sorted(out.glob("*/*.dcm"))
    by_name = {}
    for path in get_testdata_files():  # no pattern: never the network
        by_name.setdefault(os.path.basename(path), path)
    for name in CORPUS_SEEDS:
        if name not in by_name:
            continue
        path = Path(by_name[name])
        if name == "liver_1frame.dcm":  # 1-bit pixels, but a SEG, which ingest refuses as such:
            path = _as_secondary_capture(path, workdir / name)  # keep fuzzing the 1-bit path
        seeds.append(path)
    return seeds


def _as_secondary_capture(src: Path, dst: Path) -> Path:
    """A copy of ``src`` relabelled as a Secondary Capture image (same pixels)."""
    import pydicom

    ds = pydicom.dcmread(src)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality = "OT"
    ds.save_as(dst)
    return dst


def write_batch(seeds: list[Path], out: Path, n: int, seed: int, start: int = 0,
                ops: list[str] | None = None) -> dict:
    """``n`` mutants of ``seeds`` plus the unmutated seeds, and labels.csv listing all of them.

    Returns ``{"labels": path, "rows": [(relpath, op)], "seed_rows": [1-based rows of seeds]}``.
    """
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    blobs = [p.read_bytes() for p in seeds]
    uids = [sop_uid(blob) for blob in blobs]
    rows, seed_rows = [], []
    for i, blob in enumerate(blobs):  # the valid files of the batch
        name = f"seed-{i:03d}.dcm"
        (out / name).write_bytes(unique_uid(blob, uids[i], 10**8 + i))
        rows.append((name, "normal" if i % 2 == 0 else "lesion", "seed"))
        seed_rows.append(len(rows))
    for k in range(n):
        j = rng.randrange(len(blobs))
        data = unique_uid(blobs[j], uids[j], start + k + 1)
        data, op = mutate(data, rng, ops[k % len(ops)] if ops else None)
        name = f"m{start + k:06d}.dcm"
        (out / name).write_bytes(data)
        rows.append((name, "normal" if j % 2 == 0 else "lesion", op))
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "label"])
        writer.writerows((p, label) for p, label, _ in rows)
    return {"labels": out / "labels.csv", "rows": [(p, op) for p, _, op in rows],
            "seed_rows": seed_rows}


def check_batch(ds: Path, batch: dict) -> dict:
    """Account for every input: ``lost`` lists rows in neither file, or seeds that did not load."""
    with open(ds / "index.csv", newline="") as fh:
        loaded_rows = {int(r["row"]) for r in csv.DictReader(fh)}
    with open(ds / "rejected.csv", newline="") as fh:
        rejected = list(csv.DictReader(fh))
    rejected_rows = {int(r["row"]) for r in rejected}
    n = len(batch["rows"])
    lost = [r for r in range(1, n + 1) if (r in loaded_rows) == (r in rejected_rows)]
    lost += [r for r in batch["seed_rows"] if r not in loaded_rows]
    reasons: dict[str, int] = {}
    for r in rejected:
        reason = r["reason"].split(" 1.")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    info = json.loads((ds / "dataset.json").read_text())
    return {"inputs": n, "loaded": len(loaded_rows), "rejected": len(rejected_rows),
            "lost": lost, "reasons": reasons, "counts": info["counts"],
            "pixel_stats": info["pixel_stats"]}


# --------------------------------------------------------------------------- benchmark


_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})


def peak_kb():
    # VmHWM: this process image's peak; getrusage's ru_maxrss would carry the parent's peak
    # across fork + exec (a pytest process with TensorFlow loaded: hundreds of MiB)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])


import numpy, pydicom, pydicom.pixels  # imported before the baseline is taken
from medzoo.datasets.ingest import ingest
before = peak_kb()
t = time.perf_counter()
summary = ingest({src!r}, {labels!r}, {out!r}, size=32, workers={workers}, folds=2, seed=0,
                 key_file={key!r}, progress=False, file_timeout={timeout})
summary["seconds"] = time.perf_counter() - t
summary["rss_before_kb"] = before
summary["rss_after_kb"] = peak_kb()
print(json.dumps(summary))
"""


def run_batch(src: Path, batch: dict, out: Path, key: Path, workers: int, timeout: float,
              limit: float) -> dict:
    """Ingest one batch in a child process; returns its summary or why it failed."""
    code = _CHILD.format(root=str(ROOT), src=str(src), labels=str(batch["labels"]), out=str(out),
                         workers=workers, key=str(key), timeout=timeout)
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=limit)
    except subprocess.TimeoutExpired:
        return {"hang": True}
    if res.returncode != 0:
        return {"crash": True, "rc": res.returncode, "stderr": res.stderr[-2000:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="per-file decode limit (s)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = Path(tempfile.mkdtemp(prefix="medzoo-fuzz-"))
    crashes = hangs = lost = files = 0
    seconds = 0.0
    reasons: dict[str, int] = {}
    rss_growth = []
    try:
        seeds = seed_files(work / "seeds")
        print(f"{len(seeds)} seed files; {args.files} mutants in batches of {args.batch}, "
              f"{args.workers} worker(s)")
        done = 0
        while done < args.files:
            n = min(args.batch, args.files - done)
            src = work / f"batch-{done:06d}"
            batch = write_batch(seeds, src, n, seed=args.seed * 1_000_003 + done, start=done)
            ds = work / f"ds-{done:06d}"
            result = run_batch(src, batch, ds, work / "key", args.workers, args.timeout,
                               limit=60 + args.timeout * 4 + 0.5 * n)
            if result.get("hang"):
                hangs += 1
                print(f"  batch {done}: HANG (killed)")
            elif result.get("crash"):
                crashes += 1
                print(f"  batch {done}: CRASH rc={result['rc']}\n{result['stderr']}")
            else:
                check = check_batch(ds, batch)
                lost += len(check["lost"])
                seconds += result["seconds"]
                files += check["inputs"]
                rss_growth.append((result["rss_after_kb"] - result["rss_before_kb"]) / 1024)
                for k, v in check["reasons"].items():
                    reasons[k] = reasons.get(k, 0) + v
                print(f"  batch {done}: {check['inputs']} files, {check['loaded']} loaded, "
                      f"{check['rejected']} rejected, lost {len(check['lost'])}, "
                      f"{check['inputs'] / result['seconds']:.0f} files/s, "
                      f"RSS +{rss_growth[-1]:.0f} MiB")
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(ds, ignore_errors=True)
            done += n
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("rejection reasons: " + ", ".join(f"{k}: {v}" for k, v in
                                            sorted(reasons.items(), key=lambda kv: -kv[1])))
    rate = files / seconds if seconds else 0.0
    print(f"files={files} files/s={rate:.0f} peak RSS growth per batch="
          f"{max(rss_growth, default=0):.0f} MiB crashes={crashes} hangs={hangs} lost={lost}")
    return 0 if crashes == hangs == lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
