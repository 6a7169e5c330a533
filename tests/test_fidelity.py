"""Extracted text reads as the document reads: every format, French, German, Chinese, ligatures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.chunk import document_text
from ingest.normalize import normalize_text
from ingest.parse import parse_document
from tests.fidelity import legacy_cases, office_cases, text_cases


def _flat(text: str) -> str:
    return " ".join(text.split())


def _check(name: str, data: bytes, truth: list[str]) -> None:
    extracted = _flat(document_text(parse_document(name, data)))
    for expected in truth:
        assert _flat(expected) in extracted, (name, expected, extracted[:2000])
    # Nothing the policy removes or folds is left behind.
    assert not re.search("[\ufb00-\ufb06\u00ad\u200b]", extracted), name


@pytest.mark.parametrize(("name", "data", "truth"), text_cases(), ids=lambda v: str(v)[:20])
def test_text_formats_read_as_written(name: str, data: bytes, truth: list[str]) -> None:
    _check(name, data, truth)


def test_office_and_pdf_formats_read_as_written(tmp_path: Path) -> None:
    for name, data, truth in office_cases(tmp_path):
        _check(name, data, truth)


def test_legacy_office_mail_and_book_formats_read_as_written(tmp_path: Path) -> None:
    for name, data, truth in legacy_cases(tmp_path):
        _check(name, data, truth)


def test_french_latin1_is_not_read_as_a_baltic_code_page() -> None:
    """The reported case: `façade` came out as `faēade`, `très` as `trčs`."""
    text = "La façade est très belle, à côté du théâtre."
    for encoding in ("latin-1", "cp1252"):
        doc = parse_document("fr.txt", text.encode(encoding))
        assert document_text(doc) == text
    html = f"<html><body><p>{text}</p></body></html>".encode("latin-1")
    assert document_text(parse_document("fr.html", html)) == text


def test_other_code_pages_the_detector_is_sure_of_stay_theirs() -> None:
    russian = "Съешь же ещё этих мягких французских булок, да выпей чаю."
    polish = "Zażółć gęślą jaźń. Polska jest państwem w Europie Środkowej."
    assert document_text(parse_document("ru.txt", russian.encode("cp1251"))) == russian
    assert document_text(parse_document("pl.txt", polish.encode("cp1250"))) == polish


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("o\ufb03ce \ufb01eld \ufb02ow sta\ufb00 \ufb00i", "office field flow staff ffi"),
        ("docu\u00adment zero\u200bwidth \ufeffbom", "document zerowidth bom"),
        ("docu-\nment", "document"),
        ("perfor-\n   mance", "performance"),
        # A soft hyphen or U+2010 at a line end was left as a line break inside the word.
        ("perfor\u00ad\nmance Ta\u00ad\nBelle", "performance TaBelle"),
        ("perfor\u2010\nmance", "performance"),
        ("le \ufb06yle \ufb05", "le style st"),
        ("Jean-\nPierre", "Jean-\nPierre"),  # a capital: a real hyphen
        ("COVID-\n19", "COVID-\n19"),
        ("well-known", "well-known"),
        ("e\u0301te\u0301", "été"),  # NFD to NFC
        ("10\u00a0000\u202f€", "10 000 €"),
        # Kept as written: full-width punctuation, ideographic space, superscripts, fractions.
        ("年假，规定：申请！\u3000完", "年假，规定：申请！\u3000完"),
        ("m² ½ ① ™", "m² ½ ① ™"),
        ("ﾃｽﾄ ＡＢＣ１２３", "ﾃｽﾄ ＡＢＣ１２３"),
        ("\u200c\u200d", "\u200c\u200d"),  # joiners stay (Persian, Indic scripts)
    ],
)
def test_normalisation_policy(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected
    assert normalize_text(expected) == expected  # idempotent


def test_citations_point_into_the_normalised_text() -> None:
    from ingest.chunk import chunk_document

    doc = parse_document("lig.txt", "The o\ufb03ce is on the \ufb01rst \ufb02oor.".encode())
    chunks = chunk_document(
        doc, max_tokens=64, overlap_tokens=0, count_tokens=lambda t: len(t.split())
    )
    text = document_text(doc)
    assert text == "The office is on the first floor."
    assert [text[c.char_start : c.char_end] for c in chunks] == [c.text for c in chunks]
