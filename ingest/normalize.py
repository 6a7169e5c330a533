"""One normalisation of extracted text, applied to every element before chunks and their spans
are cut, so that what is stored, searched, shown and cited is the same string.

The policy (README "Supported files"):
- Unicode NFC: a letter is one code point whichever way the file spelled it (macOS and some PDF
  producers write `e` + combining accent).
- Compatibility folding only where the compatibility character is a presentation variant of the
  same letters: ligatures (ﬁ ﬂ ﬀ ﬃ ﬄ ﬅ ﬆ, as TeX and office PDFs emit) become their letters, and
  no-break and fixed-width spaces become a plain space. Full NFKC is not applied: it would turn
  CJK full-width punctuation (U+FF0C, U+FF1A) into ASCII, `m²` into `m2`, `½` into `1/2` (with
  a fraction slash) and `①` into `1`, changing what a quote says.
- Soft hyphens (U+00AD), zero-width spaces (U+200B), word joiners (U+2060) and stray byte-order
  marks (U+FEFF) are removed: they are invisible and split words for search. Zero-width
  (non-)joiners are kept: Persian and Indic scripts need them.
- A word hyphenated across a line break (`docu-\\nment`: a lowercase letter, `-` or U+2010, a
  line break, a lowercase letter) is joined (`document`). A hyphen before a capital or a digit
  is kept (`Jean-\\nPierre`, `COVID-\\n19`). A soft hyphen at a line end (where a word
  processor broke the word) is always joined.
"""

from __future__ import annotations

import re
import unicodedata

# Latin and Armenian ligatures of the Alphabetic Presentation Forms block.
_LIGATURES = {chr(c): unicodedata.normalize("NFKC", chr(c)) for c in range(0xFB00, 0xFB07)} | {
    chr(c): unicodedata.normalize("NFKC", chr(c)) for c in range(0xFB13, 0xFB18)
}
# No-break, en/em/thin/hair and narrow spaces (the ideographic space U+3000 stays: CJK layout).
_SPACES = dict.fromkeys([0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F], " ")
_REMOVED = dict.fromkeys([0x00AD, 0x200B, 0x2060, 0xFEFF])
_TABLE = str.maketrans({**{ord(k): v for k, v in _LIGATURES.items()}, **_SPACES, **_REMOVED})
# A letter, a hyphen (`-`, U+2010) or a soft hyphen at a line end, optional indentation, then
# a letter (any script's).
_HYPHENATED = re.compile(r"(?<=[^\W\d_])[-\u2010\u00ad][ \t]*\r?\n[ \t]*(?=[^\W\d_])")


def normalize_text(text: str) -> str:
    """`text` under the policy above; idempotent (normalising twice changes nothing)."""
    # Joined before soft hyphens are removed: one at a line end is where a word was broken.
    text = _HYPHENATED.sub(_join_if_lowercase, unicodedata.normalize("NFC", text))
    return text.translate(_TABLE)


def _join_if_lowercase(match: re.Match[str]) -> str:
    before = match.string[match.start() - 1]
    after = match.string[match.end()]
    soft = match.group(0)[0] == "\u00ad"  # a hyphenation point, whatever the case
    return "" if soft or (before.islower() and after.islower()) else match.group(0)
