from __future__ import annotations

import pytest

from ingest.paths import UnsafePathError, normalize_relative_path, repeated_paths


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.md", "a.md"),
        ("docs/sub/a.md", "docs/sub/a.md"),
        ("./docs//a.md", "docs/a.md"),
        ("docs\\win\\a.md", "docs/win/a.md"),
    ],
)
def test_relative_paths_are_normalised(raw: str, expected: str) -> None:
    assert normalize_relative_path(raw) == expected


@pytest.mark.parametrize(
    "raw", ["../etc/passwd", "a/../../b", "/etc/passwd", "C:\\x\\y.txt", "", "   ", "a\x00b", "."]
)
def test_unsafe_paths_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePathError):
        normalize_relative_path(raw)


def test_repeated_paths_are_named_once_each_sorted() -> None:
    paths = [normalize_relative_path(p) for p in ["b/x.md", "./a.md", "b\\x.md", "a.md", "c.md"]]
    assert repeated_paths(paths) == ["a.md", "b/x.md"]
    assert repeated_paths(["a.md", "b.md"]) == []
