"""Cheap integrity checks of downloaded files: read headers, never load weights, never unpickle.

A safetensors file is: 8 bytes (little-endian u64 N), N bytes of JSON header naming every tensor
with its dtype, shape and [begin, end) byte range in the data section, then the data section. A
file cut short by an interrupted download still has a whole header (it comes first), so comparing
the header's data size with the bytes actually present finds truncation without reading the
weights. JSON configs are parsed.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Optional

# Bytes per element of every dtype the safetensors format defines.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
# The format caps the header at 100 MB; anything larger is not a safetensors file.
MAX_HEADER_BYTES = 100_000_000


class IntegrityError(ValueError):
    """The file exists but is not what it should be (truncated, corrupt, wrong format)."""


def safetensors_header(path: Path) -> dict:
    """The parsed header of a safetensors file, after checking that it describes the file exactly:
    every tensor's byte range fits its dtype and shape, and the data section is exactly as long
    as the header says (shorter: truncated download; longer: not a file the library would load)."""
    size = path.stat().st_size
    if size < 8:
        raise IntegrityError(f"{size} bytes: too short for a safetensors header")
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise IntegrityError(f"header length {n} does not fit a {size}-byte file (truncated or not safetensors)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise IntegrityError("header is not a JSON object")
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            expected = math.prod(shape) * DTYPE_SIZES[dtype]
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(f"tensor {name!r} has a malformed header entry") from None
        if end - begin != expected or begin < 0:
            raise IntegrityError(f"tensor {name!r}: byte range {begin}..{end} does not hold {dtype} {shape}")
        data_end = max(data_end, end)
    present = size - 8 - n
    if present < data_end:
        raise IntegrityError(f"truncated: the header describes {data_end:,} bytes of tensor data, "
                             f"the file holds {present:,} ({present / max(data_end, 1):.0%})")
    if present > data_end:
        raise IntegrityError(f"{present - data_end:,} bytes after the last tensor (corrupt or not this format)")
    return header


def check_file(path: Path) -> Optional[str]:
    """None when the file looks whole, else why not (one line)."""
    try:
        if path.suffix == ".safetensors":
            safetensors_header(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except IntegrityError as exc:
        return str(exc)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not valid JSON ({exc})"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None
