"""Uploads are streamed to a staging folder, hashed on the way, before any job row exists."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_BLOCK = 1024 * 1024


class FileTooLargeError(ValueError):
    pass


@dataclass(frozen=True)
class StagedFile:
    staged_path: Path
    size_bytes: int
    sha256: str


def stage_stream(source: BinaryIO, destination: Path, *, max_bytes: int) -> StagedFile:
    """Copy `source` to `destination` block by block; refuse (and remove) past `max_bytes`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    try:
        with destination.open("wb") as out:
            while block := source.read(_BLOCK):
                size += len(block)
                if size > max_bytes:
                    raise FileTooLargeError(f"file is larger than the limit of {max_bytes} bytes")
                digest.update(block)
                out.write(block)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return StagedFile(staged_path=destination, size_bytes=size, sha256=digest.hexdigest())
