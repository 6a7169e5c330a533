"""Multipart uploads with file names as clients send them.

Starlette (through python-multipart) reads only `filename=`: it ignores RFC 5987/6266
`filename*=UTF-8''…`, so a part that has only `filename*` (some Java clients) is taken for a form
field, and .NET's `filename="=?utf-8?B?…?="; filename*=UTF-8''…` keeps the encoded word as the
name. It also cuts a Windows full path (`C:\\a\\x.md`) down to `x.md`. Here the name is read from
the part's raw Content-Disposition: `filename*` when present, else `filename` (an RFC 2047 encoded
word decoded), with its folders; `ingest.paths.normalize_relative_path` then normalises it.
"""

from __future__ import annotations

import re
from contextlib import aclosing, suppress
from email.header import decode_header, make_header
from urllib.parse import unquote_to_bytes

from fastapi import HTTPException, Request
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

# `; key=value` or `; key="quoted \" value"` (a quoted value may hold `;`).
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_CONTINUATION = re.compile(r"filename\*(\d+)(\*?)")
_ENCODED_WORD = re.compile(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=")


def upload_file_name(content_disposition: bytes) -> str | None:
    """The file name a part's Content-Disposition gives, or None for a form field.

    `filename*` (RFC 5987, with RFC 2231 continuations) wins over `filename`; a `filename` is
    UTF-8 (Latin-1 if it is not valid UTF-8), and an RFC 2047 encoded word in it is decoded.
    """
    header = content_disposition.decode("latin-1")
    params: dict[str, str] = {}
    for key, raw in _PARAM.findall(header):
        value = raw.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params.setdefault(key.lower(), value)
    extended = _extended_value(params)
    if extended:
        return extended
    plain = params.get("filename")
    if plain is None:
        return None
    name = _as_text(plain.encode("latin-1"))
    if _ENCODED_WORD.search(name):
        # Not a valid encoded word after all: the name as sent.
        with suppress(LookupError, ValueError):
            name = str(make_header(decode_header(name)))
    return name


def _extended_value(params: dict[str, str]) -> str | None:
    """`filename*=charset'lang'percent-encoded`, or its continuations `filename*0*=…`."""
    if "filename*" in params:
        pieces = [(params["filename*"], True)]
    else:
        numbered = sorted(
            (int(match.group(1)), value, bool(match.group(2)))
            for key, value in params.items()
            if (match := _CONTINUATION.fullmatch(key))
        )
        pieces = [(value, encoded) for _, value, encoded in numbered]
    if not pieces:
        return None
    charset = "utf-8"
    first, first_encoded = pieces[0]
    if first_encoded and first.count("'") >= 2:
        charset, _, first = first.split("'", 2)
        pieces[0] = (first, True)
    data = b"".join(
        unquote_to_bytes(value) if encoded else value.encode("latin-1") for value, encoded in pieces
    )
    try:
        return data.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return _as_text(data)


def _as_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class _UploadParser(MultiPartParser):
    def on_headers_finished(self) -> None:
        raw = self._current_part.content_disposition or b""
        name = upload_file_name(raw)
        if name is not None and not re.search(rb";\s*filename\s*=", raw, re.IGNORECASE):
            # `filename*` alone: Starlette would take the part for a form field.
            self._current_part.content_disposition = raw + b'; filename="upload"'
        super().on_headers_finished()
        if name is not None and self._current_part.file is not None:
            self._current_part.file.filename = name


async def read_upload_form(request: Request, *, max_files: int, max_fields: int) -> FormData:
    """The multipart form of `request`, file names read as `upload_file_name` says; 400 with
    the reason for a malformed body; an empty form for another content type. The caller closes
    the form."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        return FormData()
    try:
        async with aclosing(request.stream()) as stream:
            parser = _UploadParser(
                request.headers, stream, max_files=max_files, max_fields=max_fields
            )
            return await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, exc.message) from exc
