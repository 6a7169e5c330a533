from __future__ import annotations

import pytest

from core.embedding import LocalEmbedder
from ingest.chunk import chunk_document, document_text
from ingest.parse import ElementKind, ParsedDocument, ParsedElement


def words(n: int, word: str = "alpha") -> str:
    return " ".join(f"{word}{i}." for i in range(n))


def _doc(*elements: ParsedElement) -> ParsedDocument:
    return ParsedDocument(content_type="text/plain", elements=list(elements))


def count_words(text: str) -> int:
    return len(text.split())


def test_every_chunk_is_an_exact_span_of_the_document_text() -> None:
    doc = _doc(
        ParsedElement("Intro", ElementKind.TITLE),
        ParsedElement(words(120), ElementKind.TEXT),
        ParsedElement("Details", ElementKind.TITLE, heading_level=1),
        ParsedElement(words(30, "beta"), ElementKind.TEXT),
    )
    text = document_text(doc)
    chunks = chunk_document(doc, max_tokens=50, overlap_tokens=10, count_tokens=count_words)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert chunk.text == text[chunk.char_start : chunk.char_end]
        assert chunk.token_count <= 50
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_a_title_starts_a_new_chunk_and_names_its_section() -> None:
    doc = _doc(
        ParsedElement("Handbook", ElementKind.TITLE),
        ParsedElement("Vacation", ElementKind.TITLE, heading_level=1),
        ParsedElement("Employees get 25 days.", ElementKind.TEXT),
        ParsedElement("Equipment", ElementKind.TITLE, heading_level=1),
        ParsedElement("Laptops last three years.", ElementKind.TEXT),
    )
    chunks = chunk_document(doc, max_tokens=200, overlap_tokens=10, count_tokens=count_words)
    assert [c.section for c in chunks] == ["Handbook > Vacation", "Handbook > Equipment"]
    assert chunks[0].text.startswith("Handbook")  # leading titles stay with their content
    assert chunks[1].text == "Equipment\n\nLaptops last three years."


def test_pages_are_never_mixed_in_one_chunk() -> None:
    doc = _doc(
        ParsedElement("Page one text.", ElementKind.TEXT, page=1),
        ParsedElement("Page two text.", ElementKind.TEXT, page=2),
    )
    chunks = chunk_document(doc, max_tokens=200, overlap_tokens=10, count_tokens=count_words)
    assert [(c.page, c.text) for c in chunks] == [(1, "Page one text."), (2, "Page two text.")]


def test_long_text_splits_at_sentences_with_overlap() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(40)]
    doc = _doc(ParsedElement(" ".join(sentences), ElementKind.TEXT))
    chunks = chunk_document(doc, max_tokens=40, overlap_tokens=10, count_tokens=count_words)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text.endswith(".")  # cut at a sentence end, not mid-sentence
    # Consecutive chunks share their boundary sentence(s).
    assert chunks[1].char_start < chunks[0].char_end


def test_chinese_text_without_spaces_splits_between_characters(
    embedder: LocalEmbedder,
) -> None:
    text = "我们的仓库在九月份发出了四万八千个包裹" * 40 + "。" + "这是第二句话没有空格" * 30
    doc = _doc(ParsedElement(text, ElementKind.TEXT))
    chunks = chunk_document(
        doc, max_tokens=64, overlap_tokens=8, count_tokens=embedder.count_tokens
    )
    assert len(chunks) > 2
    rebuilt = document_text(doc)
    for chunk in chunks:
        assert chunk.text == rebuilt[chunk.char_start : chunk.char_end]
        assert embedder.count_tokens(chunk.text) <= 64 + 8
    assert chunks[0].char_start == 0
    assert chunks[-1].char_end == len(rebuilt)


def test_overlap_must_be_smaller_than_budget() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_document(
            _doc(ParsedElement("x", ElementKind.TEXT)),
            max_tokens=10,
            overlap_tokens=10,
            count_tokens=count_words,
        )
