"""A claim's checkable facts (numbers, dates, names, negation) and whether a span states them.

Similarity (lexical or semantic) says a span is *about* the claim; it cannot see that "1 Stanley
Cup" contradicts "13", or "20 %" a "20 août". So a claim's facts are extracted and each must be
found in the span, after normalising how it is written: "92 %" = "92%" = "92 percent",
"48,200" = "48 200" = "48200", "eight" = 8, "9.82 亿" = 982000000, "十二" = 12,
"5 March" = "3月5日".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPACE = "[ \u00a0\u202f]"
_LATIN_NUMBER = re.compile(
    r"(?<![A-Za-z0-9.,])(?<![A-Za-z]-)"
    rf"(\d{{1,3}}(?:,\d{{3}})+(?!\d)|\d{{1,3}}(?:{_SPACE}\d{{3}})+(?![\d.,])|\d+)"
    r"(?:[.,](\d+))?"
    r"(?:\s?(%|％|percent\b|per cent\b|pct\b|percentage points?\b)"
    r"|\s?(thousand|million|billion|trillion|bn\b|万|亿|千|百万|千万))?",
    re.IGNORECASE,
)
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_NUMBER_WORDS.update(
    {
        w: 10 * i
        for i, w in enumerate(
            ["thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], 3
        )
    }
)
_WORD_NUMBER = re.compile(
    r"\b("
    + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
    + r")(?:-("
    + "|".join(w for w in _NUMBER_WORDS if _NUMBER_WORDS[w] < 10)
    + r"))?\b"
    r"(?:\s(percent\b|per cent\b|thousand|million|billion))?",
    re.IGNORECASE,
)
_MULTIPLIERS = {
    "thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12, "bn": 1e9,
    "千": 1e3, "万": 1e4, "百万": 1e6, "千万": 1e7, "亿": 1e8,
}  # fmt: skip
_CJK_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
               "七": 7, "八": 8, "九": 9}  # fmt: skip
_CJK_UNITS = {"十": 10, "百": 100, "千": 1000}
_CJK_NUMERAL = "〇零一二两三四五六七八九十百千万亿"
# A CJK numeral counts as a number before a measure word ("三年", "十二名") or after 第/百分之;
# elsewhere "一" is mostly part of a word (统一, 一起).
_CLASSIFIERS = "|".join(
    [*"个年月日号次名人位种项倍岁米元块届场座部本条只家所支台辆张件层章集期天周吨度户亩级代首篇枚份颗艘"
     "架间栋道把根株匹头轮局站队例笔批套组类节页",
     "小时", "分钟", "秒钟", "世纪", "公里", "公斤", "千克", "平方"]
)  # fmt: skip
_CJK_NUMBER = re.compile(
    rf"(百分之|第)?([{_CJK_NUMERAL}]+)(?={_CLASSIFIERS})|(百分之|第)([{_CJK_NUMERAL}]+)"
)
_MONTH_NAMES = (
    "january february march april may june july august september october november december",
    "jan feb mar apr may jun jul aug sep oct nov dec",
    "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "januar februar märz april mai juni juli august september oktober november dezember",
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
)
_MONTHS = {name: i for names in _MONTH_NAMES for i, name in enumerate(names.split(), 1)}
_MONTHS["sept"] = 9
# A month name counts only next to a number ("5 May", "May 2019"): "may" is also a verb.
_MONTH_DATE = re.compile(
    r"(?<!\w)(\d{1,4})\s+("
    + "|".join(_MONTHS)
    + r")\.?(?!\w)|(?<!\w)("
    + "|".join(_MONTHS)
    + r")\.?\s+(\d{1,4})(?!\w)",
    re.IGNORECASE,
)
_CJK_MONTH = re.compile(rf"([0-9]{{1,2}}|[{_CJK_NUMERAL}]{{1,3}})月")
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})(?:[-/.](\d{1,2}))?(?!\d)")
_DMY_DATE = re.compile(r"(?<!\d)(\d{1,2})[/.](\d{1,2})[/.](\d{2,4})(?!\d)")

# Explicit negation only: "lack", "absence of", "fail to" are as often paraphrases ("Sirt1-deficient
# mice" for "mice lacking Sirt1") as they are contradictions.
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nor|neither|cannot|nobody|nothing)\b|n't\b|[不没未无非否勿]",
    re.IGNORECASE,
)
# CJK words that hold a negation character without negating anything.
_NOT_NEGATION = re.compile(
    r"不同|不断|不仅|不过|不少|不久|不管|不论|不但|不得不|不可或缺|非常|非洲|无论|未来|无线|无数|无限|"
    r"毫无疑问|并非不|无人机|无锡|没关系|不禁|不已|莫不|无不|未必不|是否|能否|与否|否则|可否|"
    r"\bno\.\s*\d|\bnot only\b"
    r"|\bno (?:doubt|later than|less than|more than|fewer than)\b",
    re.IGNORECASE,
)
_GLUED_DIGITS = re.compile(r"(?<=[A-Za-z])-?(\d+)")
_LATIN_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-'’][A-Za-z0-9]+)*")
_IDENTIFIER = re.compile(r"[A-Za-z]+-?\d|\d[A-Za-z]|[a-z][A-Z]")
_NOT_NAMES_TEXT = """
    the a an i in on at of for to by and or but if as it its is was are this that these those
    there their they he she we you our your his her when where what which who how why with from
    not no yes also however although after before during since than then thus so both all each
    monday tuesday wednesday thursday friday saturday sunday according table source sources
"""
_NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split()) | frozenset(_MONTHS)


@dataclass(frozen=True)
class Quantity:
    value: float
    kind: str  # "number", "percent" or "month" (a month only matches a month)
    written: str  # as it appears in the text

    @property
    def percent(self) -> bool:
        return self.kind == "percent"


def quantities(text: str, *, claim: bool) -> list[Quantity]:
    """Numbers in `text`. For a claim, "one"/"一" are left out (mostly "one of", "一个").

    Thousands separators, decimal commas, %, "percent", multipliers (million, 万, 亿), number words
    and CJK numerals are normalised; date parts count as numbers too.
    """
    found: list[Quantity] = []
    for match in _LATIN_NUMBER.finditer(text):
        whole, fraction, percent, multiplier = match.groups()
        digits = re.sub(r"[ ,\u00a0\u202f]", "", whole)
        value = float(f"{digits}.{fraction}" if fraction else digits)
        if multiplier:
            value *= _MULTIPLIERS[multiplier.lower()]
        found.append(Quantity(value, "percent" if percent else "number", match.group(0).strip()))
    for match in _WORD_NUMBER.finditer(text):
        tens, unit, suffix = match.groups()
        value = float(_NUMBER_WORDS[tens.lower()] + (_NUMBER_WORDS[unit.lower()] if unit else 0))
        if claim and value == 1 and not suffix:
            continue
        percent = bool(suffix) and suffix.lower().startswith("per")
        if suffix and not percent:
            value *= _MULTIPLIERS[suffix.lower()]
        found.append(Quantity(value, "percent" if percent else "number", match.group(0)))
    for match in _CJK_NUMBER.finditer(text):
        prefix = match.group(1) or match.group(3)
        numeral = match.group(2) or match.group(4)
        cjk_value = _cjk_value(numeral)
        if cjk_value is None or (claim and cjk_value == 1 and not prefix):
            continue
        kind = "percent" if prefix == "百分之" else "number"
        found.append(Quantity(cjk_value, kind, match.group(0)))
    found.extend(Quantity(float(month), "month", f"month {month}") for month in months(text))
    return found


def months(text: str) -> set[int]:
    """Months named next to a number ("5 May", "mars 2020"), in ISO/d.m.y dates, or as "3月"."""
    found: set[int] = set()
    for match in _MONTH_DATE.finditer(text):
        found.add(_MONTHS[(match.group(2) or match.group(3)).lower()])
    for match in _CJK_MONTH.finditer(text):
        numeral = match.group(1)
        value = float(numeral) if numeral.isdigit() else _cjk_value(numeral)
        if value is not None and 1 <= value <= 12:
            found.add(int(value))
    for match in _ISO_DATE.finditer(text):
        if 1 <= int(match.group(2)) <= 12:
            found.add(int(match.group(2)))
    for match in _DMY_DATE.finditer(text):
        found.update(int(g) for g in match.groups()[:2] if 1 <= int(g) <= 12)
    return found


def names(text: str) -> list[str]:
    """Capitalised words and identifiers ("Maple", "Leafs", "PrP", "IL-6"), not sentence-initial.

    The first word of the claim is skipped unless it is an identifier: it is capitalised anyway.
    """
    found: list[str] = []
    tokens = list(_LATIN_TOKEN.finditer(text))
    for index, match in enumerate(tokens):
        word = match.group(0)
        if word.lower() in _NOT_NAMES or len(word) < 2:
            continue
        first = index == 0 or text[: match.start()].rstrip()[-1:] in ('"', "“", ":")
        # A capitalised first word is a name when a capitalised word or "'s" follows it
        # ("Acme Corp earned", "Acme's revenue"); otherwise it is capitalised only by position.
        after = text[match.end() : match.end() + 2]
        following = tokens[index + 1].group(0) if index + 1 < len(tokens) else ""
        run = (
            after.startswith(("'s", "’s"))
            or (
                following[:1].isupper()
                and following[1:].islower()
                and following.isalpha()  # "Activated Cdk5": a gene after a capitalised first word
                and text[match.end() : tokens[index + 1].start()].isspace()
            )
        )
        if _IDENTIFIER.search(word) or (word[0].isupper() and (not first or run)):
            found.append(word)
    return found


def negations(text: str) -> list[str]:
    """Negation cues ("not", "n't", "never", "没有", "不"), without words that merely hold one."""
    return [m.group(0) for m in _NEGATION.finditer(_NOT_NEGATION.sub(" ", text))]


def missing_facts(claim: str, span: str, *, context: str = "", chunk: str = "") -> str | None:
    """Why `span` does not state the facts of `claim`, or None when it does.

    Numbers, dates, names and negation must be in the span itself (names may also be in
    `context`: the header row of a table whose row is the span). A name, or a run of CJK text,
    that the rest of `chunk` holds but the span does not is reported as such: it belongs to
    another statement of the source ("the answer to another question about the same passage").
    """
    reasons: list[str] = []
    span_quantities = quantities(span, claim=False)
    claim_quantities = quantities(claim, claim=True)
    glued = set(_GLUED_DIGITS.findall(span))
    for quantity in claim_quantities:
        if quantity.written in glued:
            continue  # "factor 21" for "FGF21", "CD 8" for "CD8": an identifier written apart
        if not any(_same(quantity, q) for q in span_quantities):
            others = [
                q.written
                for q in span_quantities
                if q.kind == quantity.kind and not any(_same(q, c) for c in claim_quantities)
            ]
            said = f"; the source says {', '.join(dict.fromkeys(others[:3]))}" if others else ""
            what = quantity.written if quantity.kind == "month" else f"number {quantity.written}"
            reasons.append(f"{what} not in the source{said}")
    stated = f"{context}\n{span}"
    span_words = _word_forms(f"{heading(chunk)}\n{stated}")
    for name in dict.fromkeys(names(claim)):
        if _defined_in(name, claim):
            continue  # "matrix metalloproteases (MMPs)": its spelled-out words are checked
        if not _name_found(name, span_words, stated):
            elsewhere = chunk and _name_found(name, _word_forms(chunk), chunk)
            reasons.append(
                f"{name!r} not in the quoted span (the source names it elsewhere)"
                if elsewhere
                else f"{name!r} not in the source"
            )
    for run, instead in displaced_runs(claim, stated, chunk):
        said = f"; the source says {instead!r}" if instead else ""
        reasons.append(f"{run!r} not in the quoted span (the source has it elsewhere){said}")
    if conflict := negation_conflict(claim, span):
        reasons.append(conflict)
    return "; ".join(reasons) or None


def heading(chunk: str) -> str:
    """The chunk's first line when it is a heading or title (it names what the rest is about)."""
    first, newline, _ = chunk.partition("\n")
    return first if newline and len(first) <= _HEADING_CHARS else ""


_HEADING_CHARS = 200


def _name_found(name: str, forms: set[str], text: str) -> bool:
    """Whether `text` (its word `forms`) names `name`: its name-like parts, or spelled out."""
    name = _DASHES.sub("-", name)
    parts = [part for part in re.split(r"[-'’]", name) if part]
    # In a compound only the name-like parts are names: "Sf1-expressing", "RecQ-class".
    key = [p for p in parts if _IDENTIFIER.search(p) or p[:1].isupper() or p.isdigit()] or parts
    if all(_form(part) in forms for part in key) or _form(re.sub(r"[-'’]", "", name)) in forms:
        return True
    return _abbreviates(name, text)


def _defined_in(name: str, claim: str) -> bool:
    """Whether the claim itself spells out the acronym `name`, in brackets after its words.

    The acronym's letters are taken in order from the words before the bracket, starting at a
    word's first letter: "MMPs" from "matrix metalloproteases", "miRNA" from "microRNA".
    """
    bracketed = re.search(rf"\(\s*{re.escape(name)}\s*\)", claim)
    letters = re.sub(r"s$", "", name).lower().replace("-", "")
    if not bracketed or len(letters) < 2:
        return False
    words = _SPELLED.findall(claim[: bracketed.start()])[-6:]
    for first in range(len(words)):
        phrase = " ".join(words[first:]).lower()
        if phrase[0] == letters[0] and _subsequence(letters, phrase):
            return True
    return False


def _subsequence(letters: str, text: str) -> bool:
    remaining = iter(text)
    return all(letter in remaining for letter in letters)


_ACRONYM = re.compile(r"([A-Za-z]*[A-Z][A-Za-z]*?)s?-?(\d*)")
_SPELLED = re.compile(r"[A-Za-z]+|\d+")


def _abbreviates(name: str, text: str) -> bool:
    """True when `text` spells out the acronym `name`: "SREBP2" for "Sterol Regulatory
    Element-Binding Protein-2", "mTECs" for "medullary thymic epithelial cells"."""
    match = _ACRONYM.fullmatch(name)
    if not match or sum(c.isupper() for c in match.group(1)) < 2:
        return False
    letters, digits = match.group(1).lower(), match.group(2)
    words = _SPELLED.findall(text)
    for i in range(len(words) - len(letters) + 1):
        run = words[i : i + len(letters)]
        if all(w[0].lower() == c and w.isalpha() for w, c in zip(run, letters, strict=True)):
            after = words[i + len(letters)] if i + len(letters) < len(words) else ""
            if not digits or after == digits:
                return True
    return False


_CJK_TEXT = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaffA-Za-z0-9]+")
_MIN_RUN = 2


def displaced_runs(claim: str, span: str, chunk: str) -> list[tuple[str, str]]:
    """Runs of a CJK claim that the span does not hold but the rest of the chunk does.

    A character is covered when a two-character string around it is in the span; an uncovered
    run of two or more characters that occurs elsewhere in the chunk is another statement's
    (a name swapped for one from the next sentence). With it comes what the span says in its
    place, when the covered text on both sides of the run is found in the span.
    """
    if not chunk or not _CJK_CHAR.search(claim):
        return []
    title = heading(chunk)
    covered = [False] * len(claim)
    for i in range(len(claim) - 1):
        if claim[i : i + 2] in span:
            covered[i] = covered[i + 1] = True
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(claim):
        if covered[i]:
            i += 1
            continue
        j = i
        while j < len(claim) and not covered[j]:
            j += 1
        for match in _CJK_TEXT.finditer(claim, i, j):
            run = match.group(0)
            if (
                len(run) >= _MIN_RUN
                and _CJK_CHAR.search(run)
                and run not in span
                and run not in title
                and run in chunk
            ):
                found.append((run, _in_place_of(claim, match.start(), match.end(), span)))
        i = j
    return found


_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def scattered(claim: str, span: str) -> bool:
    """Whether the parts of a CJK claim that the span holds lie far apart in it.

    The parts are the claim's longest substrings found in the span (two characters or more);
    they are together when one occurrence of each lies within the claim's length (plus a
    clause) of one anchor. "芙蓉洞位于1994年" is not stated by "芙蓉洞位于…江畔。…1994年对游人开放".
    """
    if not _CJK_CHAR.search(claim):
        return False
    parts: list[str] = []
    i = 0
    while i < len(claim) - 1:
        size = 2
        if claim[i : i + 2] not in span:
            i += 1
            continue
        while i + size < len(claim) and claim[i : i + size + 1] in span:
            size += 1
        if _CJK_CHAR.search(claim[i : i + size]):
            parts.append(claim[i : i + size])
        i += size
    if len(parts) < 2:
        return False
    reach = len(claim) + _CLAUSE
    # A bracketed aside (a foreign name, a former name) does not put distance between the parts
    # it interrupts: a foreign or former name between "富国银行广场" and "位于美国明尼亚波利斯".
    plain = _without_asides(span)
    parts = [part for part in parts if part in plain] or parts
    if len(parts) < 2:
        return False
    span = plain if all(part in plain for part in parts) else span
    places = [[m.start() for m in re.finditer(re.escape(part), span)] for part in parts]
    for anchor in (p for positions in places for p in positions):
        if all(any(abs(p - anchor) <= reach for p in positions) for positions in places):
            return False
    return True


_ASIDE = re.compile(r"（[^（）]*）|\([^()]*\)")


def _without_asides(text: str) -> str:
    """`text` without bracketed asides, nested ones included."""
    while True:
        shorter = _ASIDE.sub("", text)
        if shorter == text:
            return text
        text = shorter


# Characters beyond the claim's length its parts may spread over. On the calibration half of
# bench/verification.py (MiniLM, Chinese): off 0.833 precision at 0.800 recall; 10: 0.930 at
# 0.707; 30: 0.889 at 0.747; twice the claim's length: 0.891 at 0.760.
_CLAUSE = 10


def _in_place_of(claim: str, start: int, end: int, span: str) -> str:
    left, right = claim[max(0, start - 2) : start], claim[end : end + 2]
    if len(left) < 2 or not right:
        return ""
    at = span.find(left)
    if at < 0:
        return ""
    after = span.find(right, at + 2)
    if after < 0 or after - (at + 2) > 20:
        return ""
    return span[at + 2 : after].strip()


_SCOPE_SKIP_TEXT = """
    be been being is are was were a an the to of in do does did have has had that this it any
    also very more less significantly necessarily always only all statistically
"""
_SCOPE_SKIP = frozenset(_SCOPE_SKIP_TEXT.split())
_WORD_OR_CUE = re.compile(r"[a-z]+n't|[a-z]+|[\u3400-\u9fff]", re.IGNORECASE)


def negation_conflict(claim: str, span: str) -> str | None:
    """Where claim and span disagree on a negation, or None.

    A negation cue's scope is the next two content words (in CJK, the next characters as a
    string: "不足的" in "较不足的人"). When the other side holds that scope, a cue must stand
    just before it there (four words, three CJK characters). When it does not (a paraphrase), a
    negated claim needs a negation in the span whose scope shares a word with the claim; a
    negation in the span about words the claim does not use is none of the claim's business.
    """
    span = _without_contrasts(span, claim)
    if dropped := dropped_cue(span, claim):
        return f"the source says {dropped!r}, the claim does not"
    if added := dropped_cue(claim, span):
        return f"the claim says {added!r}, the source does not"
    claim_tokens, span_tokens = _negation_tokens(claim), _negation_tokens(span)
    masked = {"claim": _NOT_NEGATION.sub(" ", claim), "source": _NOT_NEGATION.sub(" ", span)}
    for tokens, other, side, other_side in (
        (claim_tokens, span_tokens, "claim", "source"),
        (span_tokens, claim_tokens, "source", "claim"),
    ):
        for index, (word, cue) in enumerate(tokens):
            if not cue:
                continue
            if _CJK_CHAR.fullmatch(word):
                held = _cjk_scope_held(tokens, index, masked[other_side])
            else:
                scope = _scope(tokens, index)
                hits = [j for j, (w, c) in enumerate(other) if not c and _stem(w) in scope]
                # The occurrence that states this part of the claim is the one whose
                # neighbourhood shares most words with the cue's ("no association with 8
                # cancers" does not negate "associated with pancreatic cancer" further on).
                near = {_stem(w) for w, _ in tokens[max(0, index - 6) : index + 8]}
                best = max(
                    hits,
                    key=lambda j: len(near & {_stem(w) for w, _ in other[max(0, j - 6) : j + 6]}),
                    default=None,
                )
                held = None if best is None else any(c for _, c in other[max(0, best - 4) : best])
            if held is False:
                return f"the {side} says {word!r}, the {other_side} does not"
            if held is None and side == "claim" and not _negation_about(other, claim_tokens):
                return f"the claim says {word!r}, the source does not"
    return None


# "increased Aβ in human, but not in mouse, neurons": the negation restricts a qualifier.
_CONTRAST = re.compile(
    r"\b(?:but|yet)\s+not\s+(?:in|with|for|among|at|on|from|during|by|under|within|between)"
    r"\b(?P<qualifier>[^.;,:]*)",
    re.IGNORECASE,
)


def _without_contrasts(span: str, claim: str) -> str:
    """The span without "but not in X" qualifiers whose distinguishing words the claim lacks.

    The negation in "in human, but not in mouse, neurons" says where the statement does not
    hold; it contradicts a claim only when the claim is about that place (names "mouse").
    """
    claim_stems = {_stem(w) for w in re.findall(r"[a-z]+", claim.lower())}

    def judged(match: re.Match[str]) -> str:
        rest = span[: match.start()] + span[match.end() :]
        rest_stems = {_stem(w) for w in re.findall(r"[a-z]+", rest.lower())}
        own = {
            _stem(w)
            for w in re.findall(r"[a-z]+", match.group("qualifier").lower())
            if w not in _SCOPE_SKIP and len(w) > 2
        }
        distinguishing = own - rest_stems
        return match.group(0) if distinguishing & claim_stems else " "

    return _CONTRAST.sub(judged, span)


_CUE_CHARS = re.compile("[不没未无非否勿]")
_EN_CUE = re.compile(r"(?i)\b(?:not|no|never)\b|n't\b")


def dropped_cue(with_cue: str, without: str) -> str | None:
    """A negation that `without` leaves out of text it otherwise copies from `with_cue`.

    "道德感较不足的人" → "道德感较足的人", "does not reduce costs" → "does reduce costs": the
    words on both sides of the cue are in `without`, side by side, the cue between them is not.
    Words that hold a negation character count too: "不同以往" is not "同以往".
    """
    for match in _CUE_CHARS.finditer(with_cue):
        left = with_cue[max(0, match.start() - 2) : match.start()]
        right = with_cue[match.end() : match.end() + 2]
        if (
            len(left) == 2
            and len(right) == 2
            and all(_CJK_CHAR.match(c) for c in left + right)
            and left + right in without
        ):
            return match.group(0)
    words: list[str] = re.findall(r"[a-z]+n't|[a-z]+", with_cue.lower())
    plain = f" {' '.join(re.findall(r'[a-z]+', without.lower()))} "
    for i, word in enumerate(words):
        if not _EN_CUE.fullmatch(word) and not word.endswith("n't"):
            continue
        before = words[i - 1] if i else ""
        subject = words[i - 2] if i >= 2 else ""
        if word.endswith("n't"):
            before, subject, word = word[:-3] if word != "can't" else "can", before, "n't"
        after = words[i + 1] if i + 1 < len(words) else ""
        if before and after and f" {before} {after} " in plain:
            return word
        # "does not reduce" copied as "reduces": the word before the auxiliary, then the verb.
        if before in ("do", "does", "did") and subject and f" {subject} {after[:5]}" in plain:
            return word
    return None


def _cjk_scope_held(tokens: list[tuple[str, bool]], index: int, other: str) -> bool | None:
    """None when the other text lacks the characters after the cue; else whether a cue stands
    within three characters before one of their occurrences there."""
    following = "".join(w for w, c in tokens[index + 1 : index + 4] if not c and _CJK_CHAR.match(w))
    for size in (3, 2):
        scope = following[:size]
        if len(scope) < size:
            continue
        starts = [m.start() for m in re.finditer(re.escape(scope), other)]
        if starts:
            return any(_NEGATION.search(other[max(0, at - 3) : at]) for at in starts)
    return None


def _negation_about(tokens: list[tuple[str, bool]], claim_tokens: list[tuple[str, bool]]) -> bool:
    """Whether some negation in `tokens` has in its scope a word (CJK: character) of the claim."""
    claim_words = {_stem(w) for w, c in claim_tokens if not c and w.lower() not in _SCOPE_SKIP}
    for index, (_, cue) in enumerate(tokens):
        if cue:
            scope = [w for w, c in tokens[index + 1 : index + 8] if not c]
            scope = [w for w in scope if w.lower() not in _SCOPE_SKIP][:4]
            if any(_stem(w) in claim_words for w in scope):
                return True
    return False


def _negation_tokens(text: str) -> list[tuple[str, bool]]:
    masked = _NOT_NEGATION.sub(" ", text)
    return [
        (m.group(0), bool(_NEGATION.fullmatch(m.group(0)) or m.group(0).lower().endswith("n't")))
        for m in _WORD_OR_CUE.finditer(masked)
    ]


def _scope(tokens: list[tuple[str, bool]], index: int) -> set[str]:
    words = [w for w, c in tokens[index + 1 : index + 6] if not c and w.lower() not in _SCOPE_SKIP]
    return {_stem(w) for w in words[:2]}


def _stem(word: str) -> str:
    return word.lower()[:5]


def holds(text: str, quantity: Quantity) -> bool:
    """Whether `text` states `quantity` (normalised as in `quantities`)."""
    return any(_same(quantity, q) for q in quantities(text, claim=False))


def _same(a: Quantity, b: Quantity) -> bool:
    if a.kind != "number" and a.kind != b.kind:
        return False  # "20 %" is not "20 août", "May" is not the 5th
    return abs(a.value - b.value) <= 1e-9 * max(1.0, abs(a.value))


def _word_forms(text: str) -> set[str]:
    """Lower-cased words and their hyphen-separated parts ("A-769662" → a, 769662, a769662)."""
    forms: set[str] = set()
    for word in _LATIN_TOKEN.findall(_DASHES.sub("-", text)):
        for part in re.split(r"[-'’]", word):
            if part and part.lower() != "s":
                forms.add(_form(part))
        forms.add(_form(re.sub(r"[-'’]", "", word)))
    return forms


_DASHES = re.compile("[\u2010-\u2015\u2212]")  # an en dash in "miR-142-5p" is a hyphen


def _form(word: str) -> str:
    word = word.lower()
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _cjk_value(numeral: str) -> float | None:
    """ "十二" → 12, "两千三百" → 2300, "三万" → 30000, "一九八四" → 1984; None if malformed."""
    if all(c in _CJK_DIGITS for c in numeral):
        return float("".join(str(_CJK_DIGITS[c]) for c in numeral))
    total, section, digit = 0.0, 0.0, None
    for char in numeral:
        if char in _CJK_DIGITS:
            if digit is not None:
                return None
            digit = _CJK_DIGITS[char]
        elif char in _CJK_UNITS:
            section += (1 if digit is None else digit) * _CJK_UNITS[char]
            digit = None
        elif char in ("万", "亿"):
            section += digit or 0
            if section == 0:
                return None  # "万一" is a word, not a number
            total = (total + section) * (1e4 if char == "万" else 1e8)
            section, digit = 0.0, None
        else:
            return None
    return total + section + (digit or 0)
