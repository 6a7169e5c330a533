"""Relative paths of uploaded files: normalised, and never able to climb out of their folder."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import PurePosixPath

MAX_PATH_CHARS = 1024


class UnsafePathError(ValueError):
    pass


def normalize_relative_path(raw: str) -> str:
    """A clean POSIX relative path, or UnsafePathError saying why it was refused."""
    if not raw or not raw.strip():
        raise UnsafePathError("the file has no name")
    if "\x00" in raw:
        raise UnsafePathError("the file name contains a NUL byte")
    candidate = raw.replace("\\", "/")
    if candidate.startswith("/") or (len(candidate) > 1 and candidate[1] == ":"):
        raise UnsafePathError(f"absolute paths are not allowed: {raw!r}")
    parts = [p for p in PurePosixPath(candidate).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePathError(f"'..' is not allowed in a path: {raw!r}")
    if not parts:
        raise UnsafePathError(f"not a file path: {raw!r}")
    normalized = "/".join(parts)
    if len(normalized) > MAX_PATH_CHARS:
        raise UnsafePathError(f"path longer than {MAX_PATH_CHARS} characters")
    return normalized


def repeated_paths(paths: Iterable[str]) -> list[str]:
    """The (normalised) paths named more than once, sorted: one job carries one version of a
    path (the multipart parser itself turns `C:\\a\\x.md` and `C:\\b\\x.md` into `x.md`)."""
    return sorted(path for path, seen in Counter(paths).items() if seen > 1)
