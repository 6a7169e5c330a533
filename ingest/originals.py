"""The original bytes of each indexed document version, kept on disk so they can be downloaded.

Layout: `<data_dir>/originals/<tenant id>/<document id>/<version sha256>`; an indexed file's
staged upload is hard-linked there (no copy) when its version is stored. A document folder
holds its current version's file only: the writer that stores a new version, or deletes the
document, removes the other files while it holds the document's write lock (ingest.versions),
in the same step that replaces the document's points, so the newest version's bytes are never
the ones removed.

Kept only with `ingest.keep_originals`, for files up to `keep_originals_max_bytes`, and for
`keep_originals_days` after the upload (0: as long as the document); an expired file is
deleted when it is next asked for, or at the tenant's next upload.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from core.settings import Settings

# Ids and versions are uuids and hex digests; anything else never becomes a path.
_SAFE_PART = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class Originals:
    """Where originals live and which are kept. `max_bytes` 0: any size the upload accepts;
    `max_age` None: as long as the document."""

    root: Path
    keep: bool = True
    max_bytes: int = 0
    max_age: timedelta | None = None

    def folder(self, tenant_id: str, document_id: str) -> Path:
        return self.root / _part(tenant_id) / _part(document_id)

    def path_for(self, tenant_id: str, document_id: str, version: str) -> Path:
        return self.folder(tenant_id, document_id) / _part(version)

    def store_version(
        self, *, tenant_id: str, document_id: str, version: str, staged: Path | None
    ) -> None:
        """Make `version` the document's only kept file: link `staged` in when it is kept (by
        the setting and its size), drop every other version's file. Call under the document's
        write lock, as the new version is applied. `staged` itself stays for the caller (a
        hard link, not a move: if the transaction fails, a retry still finds it)."""
        folder = self.folder(tenant_id, document_id)
        target = self.path_for(tenant_id, document_id, version)
        if staged is not None and staged.is_file() and self._keeps(staged):
            folder.mkdir(parents=True, exist_ok=True)
            _link(staged, target)
        if folder.is_dir():
            for other in folder.iterdir():
                if other.name != target.name:
                    other.unlink(missing_ok=True)
            _remove_empty(folder)

    def keep_same_version(
        self, *, tenant_id: str, document_id: str, version: str, staged: Path | None
    ) -> None:
        """The same version was uploaded again: keep its bytes if none are kept yet (originals
        were turned on since, or expired)."""
        target = self.path_for(tenant_id, document_id, version)
        if target.is_file() or staged is None or not staged.is_file():
            return
        if self._keeps(staged):
            target.parent.mkdir(parents=True, exist_ok=True)
            _link(staged, target)

    def drop_document(self, *, tenant_id: str, document_id: str) -> None:
        """Delete every kept file of the document (call under its write lock)."""
        shutil.rmtree(self.folder(tenant_id, document_id), ignore_errors=True)

    def find(self, *, tenant_id: str, document_id: str, version: str) -> Path | None:
        """The kept file of this version, or None (never kept, or expired: then deleted)."""
        path = self.path_for(tenant_id, document_id, version)
        try:
            uploaded = path.stat().st_mtime
        except OSError:
            return None
        if self._expired(uploaded, time.time()):
            path.unlink(missing_ok=True)
            return None
        return path

    def stale_files(self, *, tenant_id: str, document_id: str, version: str | None) -> list[Path]:
        """The document's kept files that are not `version`'s (None: all of them): what a
        writer that died between storing a version and committing it can leave behind."""
        folder = self.folder(tenant_id, document_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.name != version)

    def document_ids(self, *, tenant_id: str) -> list[str]:
        """The ids of the tenant's documents that have a folder of kept files."""
        tenant_folder = self.root / _part(tenant_id)
        if not tenant_folder.is_dir():
            return []
        return sorted(p.name for p in tenant_folder.iterdir() if p.is_dir())

    def purge_expired(self, *, tenant_id: str) -> int:
        """Delete the tenant's kept files older than `max_age`; how many were deleted."""
        if self.max_age is None:
            return 0
        tenant_folder = self.root / _part(tenant_id)
        if not tenant_folder.is_dir():
            return 0
        now, purged = time.time(), 0
        for path in tenant_folder.glob("*/*"):
            try:
                expired = self._expired(path.stat().st_mtime, now)
            except OSError:
                continue
            if expired:
                path.unlink(missing_ok=True)
                purged += 1
        return purged

    def _keeps(self, staged: Path) -> bool:
        if not self.keep:
            return False
        return not self.max_bytes or staged.stat().st_size <= self.max_bytes

    def _expired(self, uploaded: float, now: float) -> bool:
        return self.max_age is not None and now - uploaded > self.max_age.total_seconds()


def _part(value: str) -> str:
    if not _SAFE_PART.match(value) or value in {".", ".."}:
        raise ValueError(f"not a safe path part: {value!r}")
    return value


def _link(staged: Path, target: Path) -> None:
    # The staged upload and the kept original are the same bytes: a hard link costs no copy
    # and keeps the upload's modification time (the age counts from the upload).
    target.unlink(missing_ok=True)
    try:
        os.link(staged, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(staged, target)


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # absent, or not empty
        folder.rmdir()


def originals_for(settings: Settings) -> Originals:
    ingest = settings.ingest
    days = ingest.keep_originals_days
    return Originals(
        root=settings.originals_dir,
        keep=ingest.keep_originals,
        max_bytes=ingest.keep_originals_max_bytes,
        max_age=timedelta(days=days) if days else None,
    )
