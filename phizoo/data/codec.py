"""Record codec: named numpy arrays + string metadata <-> bytes, in the safetensors layout.

One encoded value is::

    u64 little-endian H | header: H bytes of UTF-8 JSON (space-padded to a multiple of 8) | data

``header`` maps each array name to ``{"dtype": "F64", "shape": [N, 3], "data_offsets": [b, e]}``
(offsets relative to the start of ``data``; arrays are packed without holes) and
``"__metadata__"`` to a ``{str: str}`` dict. This is the safetensors format
(https://huggingface.co/docs/safetensors), so any safetensors reader in any language can read a
record. Nothing is ever unpickled: decoding only parses JSON and reinterprets bytes with
``numpy.frombuffer``.

Integrity (schema version 2): the first metadata entry is ``"sha256"``, the digest of the WHOLE
encoded value (length prefix, header with every dtype, shape, offset, the record's ``id`` and
metadata, and the data) computed with the 64 digest characters set to ``"0"``. It sits at the
fixed byte offset :data:`DIGEST_AT`, so verification needs no re-encoding. A second entry,
``"key"``, names the LMDB key the value was written under; :func:`decode` with ``key=`` refuses
a value found under another key (a record copied over another). Both are checked on every
decode; a value without them (phizoo schema version 1 wrote a CRC of the data only) is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from typing import Mapping

import numpy as np

from .errors import DataError

# safetensors dtype codes (little-endian)
_CODES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_KINDS = {"f": "F", "i": "I", "u": "U"}
_MAX_HEADER = 1 << 24
_PLACEHOLDER = "0" * 64
_PREFIX = b'{"__metadata__":{"sha256":"'
DIGEST_AT = 8 + len(_PREFIX)
"""Byte offset of the 64 hex digits of the record digest in every encoded value."""


def _digest(buf) -> str:
    h = hashlib.sha256()
    h.update(buf[:DIGEST_AT])
    h.update(_PLACEHOLDER.encode())
    h.update(buf[DIGEST_AT + 64:])
    return h.hexdigest()


def _code(arr: np.ndarray) -> str:
    dt = arr.dtype
    if dt.kind == "b":
        return "BOOL"
    code = _KINDS.get(dt.kind, "?") + str(dt.itemsize * 8)
    if code not in _CODES:
        raise DataError(f"cannot store arrays of dtype {dt} (allowed: float, int, uint, bool)")
    return code


def encode(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None, key: bytes | str = "") -> bytes:
    """Bytes of ``arrays`` (name -> numpy array) with string ``metadata``, bound to the LMDB ``key``
    it will be stored under and sealed with the whole-record sha256."""
    items = []
    for name, arr in arrays.items():
        if name == "__metadata__":
            raise DataError("'__metadata__' is reserved")
        arr = np.asarray(arr)
        code = _code(arr)
        arr = np.ascontiguousarray(arr, dtype=_CODES[code])
        items.append((name, code, arr))
    # largest itemsize first keeps every array aligned to its itemsize (safetensors does the same)
    items.sort(key=lambda t: (-t[2].dtype.itemsize, t[0]))
    header: dict = {}
    chunks, offset = [], 0
    for name, code, arr in items:
        raw = arr.tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    data = b"".join(chunks)
    key = key.decode() if isinstance(key, bytes) else str(key)
    meta = {"sha256": _PLACEHOLDER, "key": key}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items() if k not in ("sha256", "key")})
    header = {"__metadata__": meta, **header}
    hbytes = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    buf = bytearray(struct.pack("<Q", len(hbytes)) + hbytes + data)
    assert buf[8:DIGEST_AT] == _PREFIX
    buf[DIGEST_AT:DIGEST_AT + 64] = _digest(buf).encode()
    return bytes(buf)


def decode(buf: bytes | memoryview, key: bytes | str | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, metadata) of an encoded value. Arrays are read-only views into ``buf``.

    Raises ``DataError`` (without file context; callers add it) when the bytes are not a valid
    record: short buffer, missing or wrong whole-record sha256 (any edited byte: header, id,
    metadata or data), a value stored under another ``key`` than the one it was written for,
    bad header length or JSON, unknown dtype, offsets outside the data or inconsistent with the
    shape, or holes.
    """
    mv = memoryview(buf)
    if len(mv) < 8:
        raise DataError(f"record is {len(mv)} bytes long: truncated")
    if len(mv) < DIGEST_AT + 64 or bytes(mv[8:DIGEST_AT]) != _PREFIX:
        raise DataError("record carries no whole-record sha256 (written by an older phizoo, or corrupted); "
                        "convert the data again")
    stored = bytes(mv[DIGEST_AT:DIGEST_AT + 64]).decode("ascii", errors="replace")
    if _digest(mv) != stored:
        raise DataError("record fails its sha256 check (header, id or data changed since it was written): corrupted")
    (hlen,) = struct.unpack("<Q", mv[:8])
    if hlen > _MAX_HEADER or 8 + hlen > len(mv):
        raise DataError(f"record header length {hlen} does not fit a {len(mv)}-byte record: corrupted")
    try:
        header = json.loads(bytes(mv[8:8 + hlen]))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"record header is not valid JSON ({err}): corrupted") from None
    if not isinstance(header, dict):
        raise DataError("record header is not a JSON object: corrupted")
    data = mv[8 + hlen:]
    meta = header.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict):
        raise DataError("record metadata is not a JSON object: corrupted")
    if key is not None:
        want = key.decode() if isinstance(key, bytes) else str(key)
        if meta.get("key") != want:
            raise DataError(f"record was written under key {meta.get('key')!r}, not {want!r}: a record copied "
                            "over another (corrupted)")
    arrays: dict[str, np.ndarray] = {}
    covered = 0
    for name, spec in header.items():
        try:
            dt = _CODES[spec["dtype"]]
            shape = tuple(int(s) for s in spec["shape"])
            b, e = (int(o) for o in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"record entry {name!r} has a malformed header {spec!r}: corrupted") from None
        count = math.prod(shape)
        if not (0 <= b <= e <= len(data)) or e - b != count * dt.itemsize or min(shape, default=0) < 0:
            raise DataError(f"record entry {name!r}: offsets {b}..{e} do not match shape {list(shape)} "
                            f"{spec['dtype']} in {len(data)} data bytes: corrupted")
        arrays[name] = np.frombuffer(data, dtype=dt, count=count, offset=b).reshape(shape)
        covered += e - b
    if covered != len(data):
        raise DataError(f"record data has {len(data)} bytes but its arrays cover {covered}: corrupted")
    return arrays, meta
