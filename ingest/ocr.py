"""Reading pictures of text with Tesseract: upright first, then as a person would write it.

A page scanned sideways or upside down is turned upright first, by Tesseract's orientation and
script detection (OSD; the `osd` traineddata, Debian's tesseract-ocr-osd). Tesseract writes
Chinese with a space between every character; those spaces are removed.
"""

from __future__ import annotations

import re
import shutil
from functools import cache
from typing import Any

from ingest.elements import ElementKind, ParsedElement, ParseError

OCR_LANGUAGES = ("eng", "chi_sim")
# OSD below this confidence is a guess (Tesseract's own scale; blank or tiny text scores ~0-1).
MIN_ORIENTATION_CONFIDENCE = 1.5
_HAN_SCRIPTS = {"Han", "HanS", "HanT", "Hiragana", "Katakana", "Japanese"}
_CJK = "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}])[ \\t]+(?=[{_CJK}])")


@cache
def installed() -> frozenset[str]:
    """Tesseract's installed traineddata names, empty without Tesseract."""
    if shutil.which("tesseract") is None:
        return frozenset()
    try:
        import pytesseract

        return frozenset(pytesseract.get_languages())
    except Exception:  # pytesseract missing or tesseract broken: OCR is off
        return frozenset()


def languages(script: str | None = None) -> str | None:
    """The installed Tesseract languages ragkb reads with, or None without Tesseract.

    The first language leads Tesseract's layout analysis: `eng+chi_sim` reads a Chinese page
    as Latin garbage ("ALSFSA_+HAAH" for a line of 员工每年...), so a page whose script OSD
    found to be Han is read as `chi_sim+eng`."""
    order = OCR_LANGUAGES[::-1] if script in _HAN_SCRIPTS else OCR_LANGUAGES
    wanted = [lang for lang in order if lang in installed()]
    return "+".join(wanted) or None


def upright(image: Any) -> tuple[Any, str | None]:
    """The image turned so its text reads upright, and its script as OSD names it (`Latin`,
    `Han`, ...); unchanged and None when OSD is missing or cannot tell."""
    if "osd" not in installed():
        return image, None
    import pytesseract

    try:
        found = pytesseract.image_to_osd(image, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractError:  # too few characters to tell
        return image, None
    script = str(found.get("script", "")) or None
    rotate = int(found.get("rotate", 0))
    if rotate % 360 == 0 or float(found.get("orientation_conf", 0)) < MIN_ORIENTATION_CONFIDENCE:
        return image, script
    # OSD's `rotate` is the clockwise turn that makes the text upright; PIL turns anticlockwise.
    return image.rotate(-rotate, expand=True), script


def join_cjk(text: str) -> str:
    """Remove the spaces Tesseract puts between Chinese/Japanese characters and punctuation."""
    return _SPACE_BETWEEN_CJK.sub("", text)


def read_image(image: Any, *, page: int | None = None, what: str = "image") -> list[ParsedElement]:
    """One TEXT element per paragraph Tesseract finds; ParseError without Tesseract."""
    lang = languages()
    if lang is None:
        raise ParseError(f"the {what} has no text layer and OCR (Tesseract) is not installed")
    import pytesseract

    image, script = upright(image)
    text = join_cjk(pytesseract.image_to_string(image, lang=languages(script) or lang))
    return [ParsedElement(p.strip(), ElementKind.TEXT, page=page)
            for p in re.split(r"\n\s*\n", text) if p.strip()]  # fmt: skip
