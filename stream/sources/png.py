"""A PNG file's chunk lengths, checked before OpenCV decodes it.

OpenCV 5.0's PNG reader allocates and fills a chunk's declared length before it checks that the
file holds it: a 1.7 KiB file whose IDAT chunk declares 2.75 GB took 2.8 GB of memory and
3.7-9.9 s on an idle 2-core machine, to fail in the end. Walking the lengths first costs
microseconds. Used wherever deepwatch decodes a PNG it did not make: enrolment photos (uploaded
from the page or given with ``--reference``) and image folders.
"""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk_problem(data: bytes) -> str | None:
    """Why the PNG file ``data`` cannot hold its chunks (the first chunk that declares more bytes
    than follow), or None. Bytes that are not a PNG, and a file cut at a chunk boundary, give None:
    decoding them fails on its own, quickly."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        available = len(data) - offset - 12
        if length > available:
            return (
                f"a damaged PNG, its {kind.decode('latin-1')!r} chunk at byte {offset} declares "
                f"{length} bytes and {max(available, 0)} follow"
            )
        if kind == b"IEND":
            return None
        offset += 12 + length
    return None
