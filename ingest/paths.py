"""Relative paths of uploaded files: normalised, and never able to climb out of their folder.

One function normalises every path a job records (uploads, server folders), so the same file
sent from two machines is one document:
- Unicode NFC (macOS sends names decomposed, NFD: `e` + U+0301 for `é`);
- backslashes are separators (Windows clients);
- a Windows drive (`C:\\a\\x.md`, `C:a\\x.md`) is dropped and the folders are kept: `a/x.md`;
- `.` and empty segments are dropped; `..`, a POSIX absolute path, a UNC share (`\\\\host\\share`),
  NUL and control characters are refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import PurePosixPath

MAX_PATH_CHARS = 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePathError(ValueError):
    pass


def normalize_relative_path(raw: str) -> str:
    """A clean POSIX relative path in NFC, or UnsafePathError saying why it was refused."""
    if not raw or not raw.strip():
        raise UnsafePathError("the file has no name")
    if "\x00" in raw:
        raise UnsafePathError("the file name contains a NUL byte")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise UnsafePathError(f"the file name contains a control character: {raw!r}")
    candidate = unicodedata.normalize("NFC", raw).replace("\\", "/")
    if candidate.startswith("//"):
        raise UnsafePathError(f"network share paths are not allowed: {raw!r}")
    if _DRIVE.match(candidate):
        # A Windows client's full path: the folders under the drive are the upload's folders.
        candidate = candidate[2:].lstrip("/")
    elif candidate.startswith("/"):
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
