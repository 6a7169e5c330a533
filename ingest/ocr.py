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


def languages() -> str | None:
    """The installed Tesseract languages ragkb reads with (`eng+chi_sim`), or None."""
    wanted = [lang for lang in OCR_LANGUAGES if lang in installed()]
    return "+".join(wanted) or None


def upright(image: Any) -> Any:
    """The image turned so its text reads upright (unchanged when OSD is missing or unsure)."""
    if "osd" not in installed():
        return image
    import pytesseract

    try:
        found = pytesseract.image_to_osd(image, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractError:  # too few characters to tell
        return image
    rotate = int(found.get("rotate", 0))
    if rotate % 360 == 0 or float(found.get("orientation_conf", 0)) < MIN_ORIENTATION_CONFIDENCE:
        return image
    # OSD's `rotate` is the clockwise turn that makes the text upright; PIL turns anticlockwise.
    return image.rotate(-rotate, expand=True)


def join_cjk(text: str) -> str:
    """Remove the spaces Tesseract puts between Chinese/Japanese characters and punctuation."""
    return _SPACE_BETWEEN_CJK.sub("", text)


def read_image(image: Any, *, page: int | None = None, what: str = "image") -> list[ParsedElement]:
    """One TEXT element per paragraph Tesseract finds; ParseError without Tesseract."""
    lang = languages()
    if lang is None:
        raise ParseError(f"the {what} has no text layer and OCR (Tesseract) is not installed")
    import pytesseract

    text = join_cjk(pytesseract.image_to_string(upright(image), lang=lang))
    return [ParsedElement(p.strip(), ElementKind.TEXT, page=page)
            for p in re.split(r"\n\s*\n", text) if p.strip()]  # fmt: skip
