from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from ingest.paths import UnsafePathError, normalize_relative_path, repeated_paths


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.md", "a.md"),
        ("docs/sub/a.md", "docs/sub/a.md"),
        ("./docs//a.md", "docs/a.md"),
        ("docs\\win\\a.md", "docs/win/a.md"),
        # A Windows client's full path: the drive is dropped, the folders are kept.
        ("C:\\a\\x.md", "a/x.md"),
        ("C:\\x\\y.txt", "x/y.txt"),
        ("d:/Reports/2024/q1.pdf", "Reports/2024/q1.pdf"),
        ("C:x.md", "x.md"),
        # macOS sends decomposed names (NFD): stored composed (NFC), one document either way.
        (unicodedata.normalize("NFD", "Données/été.md"), "Données/été.md"),
        ("Données/été.md", "Données/été.md"),
    ],
)
def test_relative_paths_are_normalised(raw: str, expected: str) -> None:
    assert normalize_relative_path(raw) == expected
    assert unicodedata.is_normalized("NFC", normalize_relative_path(raw))


@pytest.mark.parametrize(
    "raw",
    ["../etc/passwd", "a/../../b", "/etc/passwd", "C:\\..\\y.txt", "\\\\server\\share\\a.md",
     "", "   ", "a\x00b", "a\nb.md", ".", "C:\\"],
)  # fmt: skip
def test_unsafe_paths_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePathError):
        normalize_relative_path(raw)


def test_folder_jobs_use_the_same_normal_form(tmp_path: Path) -> None:
    """A folder synced from a Mac (NFD names) and an upload from Windows (NFC) are one set of
    documents: both paths are stored in NFC."""
    from ingest.folders import walk_folder

    folder = tmp_path / "share"
    (folder / unicodedata.normalize("NFD", "Données")).mkdir(parents=True)
    (folder / unicodedata.normalize("NFD", "Données") / unicodedata.normalize("NFD", "été.md")
     ).write_text("# Été\n")  # fmt: skip
    entries = list(walk_folder(folder, folder))
    assert [e.relative_path for e in entries] == ["Données/été.md"]
    assert entries[0].relative_path == normalize_relative_path("Données\\été.md")


def test_repeated_paths_are_named_once_each_sorted() -> None:
    paths = [normalize_relative_path(p) for p in ["b/x.md", "./a.md", "b\\x.md", "a.md", "c.md"]]
    assert repeated_paths(paths) == ["a.md", "b/x.md"]
    assert repeated_paths(["a.md", "b.md"]) == []
