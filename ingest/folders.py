"""Server-side folder jobs: files read from a folder under an operator-allowed root."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.paths import UnsafePathError, normalize_relative_path


class FolderRefusedError(ValueError):
    """The folder may not be read (feature off, outside the allowed roots, not a folder)."""


@dataclass(frozen=True)
class FolderEntry:
    relative_path: str
    source: Path | None  # None when refused
    refused_reason: str | None = None


def resolve_folder(raw: str, allowed_roots: Sequence[Path]) -> tuple[Path, Path]:
    """The folder and the allowed root it lies in (both resolved), or FolderRefusedError."""
    if not allowed_roots:
        raise FolderRefusedError(
            "server-side folder jobs are off: the operator sets RAGKB_INGEST__ALLOWED_ROOTS"
        )
    try:
        folder = Path(raw).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise FolderRefusedError(f"no such folder: {raw!r}") from exc
    if not folder.is_dir():
        raise FolderRefusedError(f"not a folder: {raw!r}")
    for root in allowed_roots:
        resolved_root = root.resolve()
        # `resolve` has followed every symlink, so `..` and links cannot climb out unnoticed.
        if folder == resolved_root or folder.is_relative_to(resolved_root):
            return folder, resolved_root
    raise FolderRefusedError(f"{raw!r} is outside the allowed roots")


def walk_folder(folder: Path, root: Path) -> Iterator[FolderEntry]:
    """Every file under `folder`, sorted; a symlink leading out of `root` is refused."""
    for directory, subdirs, names in os.walk(folder, followlinks=False):
        subdirs.sort()
        for name in sorted(names):
            path = Path(directory) / name
            relative = path.relative_to(folder).as_posix()
            try:  # the same normal form as an uploaded path (NFC, ...): one document either way
                relative = normalize_relative_path(relative)
            except UnsafePathError as exc:
                yield FolderEntry(relative, None, str(exc))
                continue
            target = path.resolve()
            if not (target == root or target.is_relative_to(root)):
                yield FolderEntry(relative, None, "a symlink that leads out of the allowed root")
            elif not target.is_file():
                yield FolderEntry(relative, None, "not a regular file")
            else:
                yield FolderEntry(relative, target)
