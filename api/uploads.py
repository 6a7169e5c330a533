"""A multipart upload read as it streams: each file is staged (and hashed) on the way, and the
job's limits are enforced while the bytes arrive, so an upload past a limit is refused after at
most that limit's bytes, never after the whole body has been spooled.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from api.multipart import upload_file_name
from ingest.staging import StagedFile

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILES_FIELD = "files"
# Bytes of one part's headers, and headers per part: a name and a type need far less.
_MAX_HEADER_BYTES = 8 * 1024
_MAX_HEADERS = 16
_MAX_FIELDS = 100


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int  # one file
    max_files: int  # files per job
    max_total_bytes: int  # all files together (what the tenant's storage quota has left)
    max_field_bytes: int  # one non-file field


class UploadRefusedError(Exception):
    """The upload breaks a limit (413), is not multipart (400) or names a form field twice
    (422); the reason says which."""

    def __init__(self, status_code: int, reason: str, *, quota: bool = False) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.quota = quota


@dataclass(frozen=True)
class ReceivedFile:
    raw_name: str  # as sent; the caller normalises it
    staged: StagedFile


@dataclass
class ReceivedUpload:
    files: list[ReceivedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.staged.size_bytes for f in self.files)


# An upload's staging folder (`.incoming-*`) is removed when its request ends, however it ends;
# only a process killed mid-upload leaves one behind. One untouched this long is such a leftover:
# a live upload writes to its folder continuously (an upload of the largest allowed size at
# 1 MB/s takes well under this).
ABANDONED_AFTER = timedelta(hours=6)


def sweep_abandoned_uploads(tenant_uploads: Path, *, now: float | None = None) -> int:
    """Remove the `.incoming-*` folders under `tenant_uploads` that nothing wrote to for
    `ABANDONED_AFTER`; the number removed. Run at each new job of the tenant."""
    if not tenant_uploads.is_dir():
        return 0
    cutoff = (now if now is not None else time.time()) - ABANDONED_AFTER.total_seconds()
    removed = 0
    for folder in tenant_uploads.glob(".incoming-*"):
        try:
            touched = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))])
        except FileNotFoundError:  # its request just ended and removed it
            continue
        if touched < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def content_length_allowance(max_body_bytes: int, max_files: int) -> int:
    """What a multipart body may carry besides file contents: its fields (one JSON limit) and
    each part's boundary and headers (2 KiB a file, a path of 1,024 characters included)."""
    return max_body_bytes + 2048 * max_files


async def receive_upload(
    stream: AsyncIterator[bytes], content_type: str, staging_dir: Path, limits: UploadLimits
) -> ReceivedUpload:
    """Stage every `files` part under `staging_dir` (000000, 000001, ...) and return them with
    the text fields; raise UploadRefusedError on the first limit broken. The caller removes
    `staging_dir` when this raises."""
    media_type, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UploadRefusedError(400, "expected multipart/form-data with a boundary")
    staging_dir.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(staging_dir, limits)
    parser = MultipartParser(
        boundary,
        receiver.callbacks(),
        max_header_count=_MAX_HEADERS,
        max_header_size=_MAX_HEADER_BYTES,
    )
    try:
        async for chunk in stream:
            if chunk:
                # File writes are blocking IO: off the event loop, a chunk at a time.
                await run_in_threadpool(parser.write, chunk)
        await run_in_threadpool(parser.finalize)
    except FormParserError as exc:
        raise UploadRefusedError(400, f"malformed multipart body: {exc}") from exc
    finally:
        receiver.close()
    if receiver.open_part:
        raise UploadRefusedError(400, "malformed multipart body: it ends inside a part")
    return receiver.upload


class _Receiver:
    """The parser's callbacks: one part at a time, into a file or a bounded field buffer."""

    def __init__(self, staging_dir: Path, limits: UploadLimits) -> None:
        self._dir = staging_dir
        self._limits = limits
        self.upload = ReceivedUpload()
        self.open_part = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._field_name = ""
        self._field = bytearray()
        self._fields = 0
        self._file: BinaryIO | None = None
        self._file_name = ""
        self._file_path: Path | None = None
        self._file_bytes = 0
        self._digest = hashlib.sha256()
        self._discard = False
        self._files = 0
        self._total = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _part_begin(self) -> None:
        self.open_part = True
        self._disposition = b""
        self._field = bytearray()
        self._file_path = None
        self._discard = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise UploadRefusedError(400, 'a part has no Content-Disposition "name"')
        self._field_name = _text(options[b"name"])
        # File names as clients send them: `filename*` (RFC 5987) first, encoded words, Windows
        # folders kept (python-multipart's own parsing drops all but the last part).
        file_name = upload_file_name(self._disposition)
        if file_name is None:
            self._fields += 1
            if self._fields > _MAX_FIELDS:
                raise UploadRefusedError(413, f"more than {_MAX_FIELDS} form fields")
            return
        self._file_name = file_name
        self._file_bytes = 0
        if self._field_name != FILES_FIELD:
            self._discard = True  # a file under another name is not part of the job
            return
        self._files += 1
        if self._files > self._limits.max_files:
            raise UploadRefusedError(
                413, f"too many files: more than {self._limits.max_files} per job"
            )
        self._file_path = self._dir / f"{self._files - 1:06d}"
        self._file = self._file_path.open("wb")
        self._digest = hashlib.sha256()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        block = data[start:end]
        if self._file is None and not self._discard:
            if len(self._field) + len(block) > self._limits.max_field_bytes:
                raise UploadRefusedError(
                    413,
                    f"form field {self._field_name!r} is larger than "
                    f"{self._limits.max_field_bytes} bytes",
                )
            self._field.extend(block)
            return
        self._file_bytes += len(block)
        self._total += len(block)
        if self._file_bytes > self._limits.max_file_bytes:
            raise UploadRefusedError(
                413,
                f"{self._file_name}: file is larger than the limit of "
                f"{self._limits.max_file_bytes} bytes",
            )
        if self._total > self._limits.max_total_bytes:
            raise UploadRefusedError(
                413,
                f"storage quota exceeded: the upload passes the {self._limits.max_total_bytes} "
                "bytes left in the tenant's quota",
                quota=True,
            )
        if self._file is not None:
            self._digest.update(block)
            self._file.write(block)

    def _part_end(self) -> None:
        self.open_part = False
        if self._file is not None and self._file_path is not None:
            self._file.close()
            self._file = None
            staged = StagedFile(self._file_path, self._file_bytes, self._digest.hexdigest())
            self.upload.files.append(ReceivedFile(self._file_name, staged))
        elif not self._discard:
            if self._field_name in self.upload.fields:
                # Two access lists (or two of any field): which one applies is unknowable, and
                # taking the last would open a document to whoever the second one names.
                raise UploadRefusedError(
                    422, f"form field {self._field_name!r} is given more than once"
                )
            try:
                self.upload.fields[self._field_name] = self._field.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UploadRefusedError(
                    400, f"form field {self._field_name!r} is not UTF-8"
                ) from exc


def _text(raw: bytes) -> str:
    # Browsers send UTF-8 names; anything else is kept readable rather than refused.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
