"""What every parser produces: ordered elements with their kind, page and heading level."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ElementKind(StrEnum):
    TITLE = "title"
    TEXT = "text"
    LIST_ITEM = "list_item"
    TABLE = "table"


@dataclass(frozen=True)
class ParsedElement:
    text: str
    kind: ElementKind
    page: int | None = None
    heading_level: int = 0  # for titles: 0 is the top level


@dataclass(frozen=True)
class ParsedDocument:
    content_type: str
    elements: list[ParsedElement]
    # What of the file was not read (an e-mail attachment, with why): shown with the file as
    # ragkb's own words, never indexed as document text.
    notes: tuple[str, ...] = ()

    @property
    def title(self) -> str | None:
        return next((e.text for e in self.elements if e.kind is ElementKind.TITLE), None)


class ParseError(ValueError):
    """The file cannot be read as the type it claims; the message is safe to show the user."""
