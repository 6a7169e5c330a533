"""Does `verified` mean the cited span states the claim? Precision and recall on a labelled set.

The set: claims paired with the source a reader would cite, half of them true and half made
false by changing one fact, in English and Chinese.
- English true claims: SciFact claims labelled SUPPORT, against their evidence abstract (written
  by annotators as paraphrases, so the semantic check is exercised).
- Chinese true claims: CMRC 2018 questions with their gold answer put in place of the question
  word ("…多少分钟内…" + "4分钟" → "…4分钟内…"; a long answer is the claim itself), against the
  passage.
- False claims: each true claim once more with one fact changed — a number (to one its source
  does not hold), a name (English: a capitalised name or identifier swapped for one from another
  claim; Chinese: the answer swapped for another question's answer about the same passage) or a
  negation (added or removed).
- Hand-written cases from the reports that led to this check (a Stanley Cups table, a French
  transport plan, decimals, number words), true and false.
The old verifier (similarity alone, sentences cut at every ".") is run beside the new one unless
`--no-old`. Pairs are split by a hash of their source into a calibration half (where rules and
margins were chosen) and a held-out half; every figure is reported per half, language and kind.
`--cache FILE` keeps span vectors between runs (all spans are embedded first, in large batches).

    python bench/verification.py --per-language 150 --model all-MiniLM-L6-v2 --no-old
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from core.embedding import Embedder, create_embedder
from core.settings import CitationSettings, EmbeddingSettings
from generation.sentences import split_sentences
from generation.verify import CitationVerifier, candidate_spans, lexical_support


@dataclass(frozen=True)
class Pair:
    claim: str
    source: str
    supported: bool
    language: str
    kind: str  # "true", "number", "name", "negation"; hand-written: "hand-true", "hand-false"

    @property
    def split(self) -> str:
        """ "calibration" or "held-out", by the source: a claim and its false twin stay together."""
        digest = hashlib.sha256(self.source.encode()).digest()[0]
        return "calibration" if digest % 2 == 0 else "held-out"


# --- The labelled set -------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![A-Za-z\d.,-])\d+(?:[.,]\d+)?(?![\d])")
_NAME = re.compile(r"(?<=\s)(?:[A-Z][A-Za-z]*[A-Z0-9][A-Za-z0-9-]*|[A-Z][a-z]{2,})\b")
_AUX = re.compile(r"\b(is|are|was|were|can|may|will|could|should|has|have|had|does|do)\b")
_VERBS = [
    "increase",
    "decrease",
    "reduce",
    "cause",
    "induce",
    "inhibit",
    "promote",
    "improve",
    "lead",
    "result",
    "affect",
    "regulate",
    "prevent",
    "correlate",
    "associate",
    "contribute",
    "require",
    "mediate",
    "enhance",
    "activate",
    "suppress",
    "protect",
    "predict",
    "impair",
    "block",
    "produce",
    "express",
    "bind",
    "decline",
    "slow",
    "accelerate",
    "lower",
    "raise",
    "alter",
    "modulate",
    "reflect",
    "occur",
    "exhibit",
    "show",
    "confer",
    "drive",
    "limit",
    "target",
    "trigger",
]
_VERB = re.compile(r"\b(" + "|".join(_VERBS) + r")(e?s)\b")
_EN_NEGATION = re.compile(r"\b(?:not|no|never)\s+|n't\b")
_CJK_QUESTION = re.compile(
    r"(多少|几)([\u4e00-\u9fff]?)|什么样的|什么|哪些|哪个|哪种|哪一|哪家|哪里|哪儿|哪|谁|何时|何地|怎样|如何|为何|为什么"
)
_CJK_NEGATABLE = [("可以", "不可以"), ("能够", "不能够"), ("是", "不是"), ("有", "没有"),
                  ("会", "不会"), ("能", "不能")]  # fmt: skip
_CJK_NEGATION = re.compile(r"不是|没有|不|没|未")


def changed_number(claim: str, source: str, rng: random.Random) -> str | None:
    """The claim with one number replaced by one the source does not contain."""
    matches = list(_NUMBER.finditer(claim))
    if not matches:
        return None
    match = rng.choice(matches)
    written = match.group(0)
    value = float(written.replace(",", "."))
    decimals = len(written.split(".")[1]) if "." in written else 0
    for candidate in (value + 1, value * 2, value - 1, value + 7, value * 3 + 1):
        if candidate < 0:
            continue
        text = f"{candidate:.{decimals}f}"
        if text not in source and text != written:
            return claim[: match.start()] + text + claim[match.end() :]
    return None


def changed_name(claim: str, source: str, names: Sequence[str], rng: random.Random) -> str | None:
    """An English claim with a capitalised name or identifier swapped for one from elsewhere."""
    matches = [m for m in _NAME.finditer(claim) if m.group(0).lower() not in _COMMON]
    if not matches:
        return None
    match = rng.choice(matches)
    for name in rng.sample(list(names), min(50, len(names))):
        if name.lower() not in source.lower() and name != match.group(0):
            return claim[: match.start()] + name + claim[match.end() :]
    return None


_COMMON = {"the", "this", "these", "that", "there", "in", "among", "patients"}


def changed_negation_en(claim: str) -> str | None:
    """The claim with its negation removed, or with "not" added after an auxiliary or verb."""
    if _EN_NEGATION.search(claim):
        return _EN_NEGATION.sub("", claim, count=1)
    if aux := _AUX.search(claim):
        return claim[: aux.end()] + " not" + claim[aux.end() :]
    if verb := _VERB.search(claim):
        helper = "does" if verb.group(2) else "do"
        return claim[: verb.start()] + f"{helper} not {verb.group(1)}" + claim[verb.end() :]
    return None


def changed_negation_zh(claim: str) -> str | None:
    if match := _CJK_NEGATION.search(claim):
        kept = {"不是": "是", "没有": "有"}.get(match.group(0), "")
        return claim[: match.start()] + kept + claim[match.end() :]
    for plain, negated in _CJK_NEGATABLE:
        if plain in claim:
            return claim.replace(plain, negated, 1)
    return None


def cmrc_claim(question: str, answer: str) -> str:
    """A declarative claim: the answer put in place of the question word (or the answer itself)."""
    answer = answer.strip().rstrip("。")
    if len(answer) >= 12:
        return answer + "。"
    match = _CJK_QUESTION.search(question)
    body = question.strip().rstrip("？?")
    if match is None:
        return f"{body}：{answer}。"
    after = body[match.end() :]
    if match.group(1) and match.group(2):
        after = match.group(2) + after  # "多少分钟" + "4分钟" → "4分钟"; + "4" → "4分钟"
    return _merged(body[: match.start()], answer, after) + "。"


def _merged(before: str, answer: str, after: str) -> str:
    """The frame and the answer without the words a span answer repeats from the frame.

    CMRC answers are spans of the passage and often carry the question's own words ("富国银行
    广场建于哪一年" → "建于1988年"): pasted in as they are, the claim reads "建于建于1988年年",
    which no reader writes and which the verifier rightly finds odd.
    """
    overlap = next((k for k in range(len(answer), 0, -1) if before.endswith(answer[:k])), 0)
    before = before[: len(before) - overlap]
    tail = next((k for k in range(len(after), 0, -1) if answer.endswith(after[:k])), 0)
    if tail == 0 and len(after) >= 2 and answer.endswith(after[-2:]):
        tail = len(after)  # "受到哪些风格的影响" + "受到R&B音乐的影响": the answer ends it
    return before + answer + after[tail:]


def _first_change(
    first: str, changes: dict[str, Callable[[], str | None]]
) -> tuple[str | None, str]:
    """The first change that applies, trying `first` and then the other kinds."""
    for kind in [first, *(k for k in changes if k != first)]:
        if changed := changes[kind]():
            return changed, kind
    return None, ""


def scifact_pairs(data: Path, count: int, rng: random.Random) -> list[Pair]:
    # The title leads the text, as in the first chunk of an ingested paper.
    corpus = {
        row["_id"]: f"{row['title']}\n{row['text']}"
        for row in map(json.loads, (data / "corpus.jsonl").read_text().splitlines())
    }
    claims = []
    for row in map(json.loads, (data / "queries.jsonl").read_text().splitlines()):
        for doc_id, evidence in row["metadata"].items():
            if any(e["label"] == "SUPPORT" for e in evidence) and doc_id in corpus:
                claims.append((row["text"], corpus[doc_id]))
                break
    rng.shuffle(claims)
    names = sorted({m.group(0) for claim, _ in claims for m in _NAME.finditer(claim)})
    pairs: list[Pair] = []
    kinds = itertools.cycle(["number", "name", "negation"])
    for claim, source in claims:
        if len(pairs) >= 2 * count:
            break
        false_claim, kind = _first_change(
            next(kinds),
            {
                "number": lambda c=claim, s=source: changed_number(c, s, rng),
                "name": lambda c=claim, s=source: changed_name(c, s, names, rng),
                "negation": lambda c=claim: changed_negation_en(c),
            },
        )
        if false_claim and false_claim != claim:
            pairs.append(Pair(claim, source, True, "en", "true"))
            pairs.append(Pair(false_claim, source, False, "en", kind))
    return pairs


def chunk_around(passage: str, answer: str, size: int = 400) -> str:
    """The sentences of the passage around the answer, up to about `size` characters: a chunk."""
    sentences = split_sentences(passage)
    at = next((i for i, s in enumerate(sentences) if answer[:6] in s), 0)
    start = end = at
    while True:
        grown = False
        if end + 1 < len(sentences) and len("".join(sentences[start : end + 2])) <= size:
            end, grown = end + 1, True
        if start > 0 and len("".join(sentences[start - 1 : end + 1])) <= size:
            start, grown = start - 1, True
        if not grown:
            return "".join(sentences[start : end + 1])


def cmrc_pairs(data: Path, count: int, rng: random.Random) -> list[Pair]:
    corpus = {
        row["_id"]: row["text"]
        for row in map(json.loads, (data / "corpus.jsonl").read_text().splitlines())
    }
    qrels = {}
    for line in (data / "qrels" / "dev.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, _ = line.split("\t")
        qrels[query_id] = doc_id
    questions = [
        row
        for row in map(json.loads, (data / "queries.jsonl").read_text().splitlines())
        if row["_id"] in qrels and row["metadata"].get("answers")
    ]
    by_passage: dict[str, list[str]] = {}
    for row in questions:
        by_passage.setdefault(qrels[row["_id"]], []).append(row["metadata"]["answers"][0])
    rng.shuffle(questions)
    pairs: list[Pair] = []
    kinds = itertools.cycle(["number", "name", "negation"])
    for row in questions:
        if len(pairs) >= 2 * count:
            break
        passage_id = qrels[row["_id"]]
        source, answer = corpus[passage_id], row["metadata"]["answers"][0]
        claim = cmrc_claim(row["text"], answer)
        source = chunk_around(source, answer)
        # Another question's answer goes into this question's frame. A long answer would be a
        # claim on its own (`cmrc_claim` returns it as is): a true sentence of the passage,
        # not a false claim, so only short answers are swapped in.
        others = [
            a
            for a in by_passage[passage_id]
            if a not in answer and answer not in a and len(a.strip().rstrip("。")) < 12
        ]
        false_claim, kind = _first_change(
            next(kinds),
            {
                "number": lambda c=claim, s=source: changed_number(c, s, rng),
                "name": lambda q=row["text"], o=others: cmrc_claim(q, rng.choice(o)) if o else None,
                "negation": lambda c=claim: changed_negation_zh(c),
            },
        )
        if false_claim and false_claim != claim:
            pairs.append(Pair(claim, source, True, "zh", "true"))
            pairs.append(Pair(false_claim, source, False, "zh", kind))
    return pairs


STANLEY_CUPS = (
    "Team | Code | Stanley Cups\nCanadiens | MTL | 24\nMaple Leafs | TOR | 13\n"
    "Red Wings | DET | 11\nBruins | BOS | 6\nBlackhawks | CHI | 6\nKings | LAK | 2\n"
    "Lightning | TBL | 3\nPanthers | FLA | 1"
)
TRANSPORT = (
    "Le plan de mobilité a été adopté le 20 août 2023. En 2030, 92 % des trajets domicile-travail "
    "devront être couverts par une offre de transport collectif. Le budget atteint 1,2 milliard "
    "d'euros."
)
SOLAR = (
    "The company has produced solar modules since 2002. Thin Film Partnership revenue grew "
    "strongly. Module shipments rose 36% year on year to 4.1 GW."
)
HANDBOOK = (
    "New parents receive 8 weeks of paid leave. Leave must be requested 30 days in advance. "
    "Employees with more than five years of service receive one extra week."
)
FINANCE_ZH = "截至2023年末，公司存货账面价值为9.82亿元，较上年末增长12.5%。应收账款余额为3.4亿元。"
HEADER = "Product | Units | Price\nWidget | 150 | 9.99\nGadget | 75 | 24.50"
REVENUE = "Globex Corporation reported revenue of $4.2 billion in fiscal 2023, up 8%."
HAND_WRITTEN = [
    ("The Maple Leafs have won 1 Stanley Cup.", STANLEY_CUPS, False),
    ("The Maple Leafs have won 13 Stanley Cups.", STANLEY_CUPS, True),
    ("The Canadiens have won 24 Stanley Cups.", STANLEY_CUPS, True),
    ("The Bruins have won 11 Stanley Cups.", STANLEY_CUPS, False),
    ("The Panthers have won one Stanley Cup.", STANLEY_CUPS, True),
    ("En 2030, 20 % des trajets domicile-travail seront couverts.", TRANSPORT, False),
    ("En 2030, 92 % des trajets domicile-travail seront couverts.", TRANSPORT, True),
    ("Le plan a été adopté le 20 août 2023.", TRANSPORT, True),
    ("Le plan a été adopté le 20 mars 2023.", TRANSPORT, False),
    ("Le budget atteint 1,2 milliard d'euros.", TRANSPORT, True),
    ("Module shipments rose 36% in a year.", SOLAR, True),
    ("Thin Film Partnership revenue grew 36%.", SOLAR, False),
    ("Module shipments rose 63% year on year.", SOLAR, False),
    ("Shipments reached 4.1 GW.", SOLAR, True),
    ("Shipments reached 4.7 GW.", SOLAR, False),
    ("New parents get eight weeks of paid leave.", HANDBOOK, True),
    ("New parents get six weeks of paid leave.", HANDBOOK, False),
    ("New parents get eight weeks of unpaid leave.", HANDBOOK, True),  # paraphrase limit: kept
    ("Leave must be requested a month in advance.", HANDBOOK, True),
    ("Leave must be requested 14 days in advance.", HANDBOOK, False),
    ("Leave does not need to be requested in advance.", HANDBOOK, False),
    ("Employees with over 5 years of service get an extra week.", HANDBOOK, True),
    ("公司存货账面价值为9.82亿元。", FINANCE_ZH, True),
    ("公司存货账面价值为9.28亿元。", FINANCE_ZH, False),
    ("存货账面价值较上年末增长12.5%。", FINANCE_ZH, True),
    ("存货账面价值较上年末增长15%。", FINANCE_ZH, False),
    ("应收账款余额为3.4亿元。", FINANCE_ZH, True),
    ("应收账款余额没有变化，为3.4亿元。", FINANCE_ZH, False),
    ("Widgets sold 150 units.", HEADER, True),
    ("Gadgets sold 150 units.", HEADER, False),
    ("Units sold: 150.", "Product | Units | Price", False),
    ("Globex reported revenue of $4.2 billion in fiscal 2023.", REVENUE, True),
    ("Initech Corporation reported revenue of $4.2 billion in fiscal 2023.", REVENUE, False),
    ("Globex Corporation's revenue fell 8% in fiscal 2023.", REVENUE, True),  # paraphrase limit
    ("Globex revenue grew 8% to $4.2 billion.", REVENUE, True),
]


def hand_written_pairs() -> list[Pair]:
    return [
        Pair(
            claim,
            source,
            supported,
            "zh" if re.search(r"[\u4e00-\u9fff]", claim) else "en",
            "hand-true" if supported else "hand-false",
        )
        for claim, source, supported in HAND_WRITTEN
    ]


class CachedEmbedder:
    """Each text embedded once: a true claim and its false twin share every span of the source."""

    def __init__(self, inner: Embedder, cache: Path | None = None) -> None:
        self._inner = inner
        self._cache = cache
        self._vectors: dict[str, list[float]] = {}
        if cache is not None and cache.exists():
            self._vectors = json.loads(cache.read_text())
        self._saved = len(self._vectors)

    @property
    def cached(self) -> set[str]:
        return set(self._vectors)

    def save(self) -> None:
        if self._cache is not None and len(self._vectors) != self._saved:
            partial = self._cache.with_suffix(".partial")
            partial.write_text(json.dumps(self._vectors))
            partial.replace(self._cache)  # a run stopped while saving leaves the cache whole
            self._saved = len(self._vectors)

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    def embed_passages(
        self, texts: Sequence[str], *, background: bool = False
    ) -> list[list[float]]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            vectors = self._inner.embed_passages(missing, background=background)
            self._vectors.update(zip(missing, vectors, strict=True))
        return [self._vectors[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self._inner.count_tokens(text)


# --- The old verifier, as it was before facts were checked ------------------------------------

_OLD_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？]*")


class OldVerifier:
    """Similarity alone: verified if any sentence or sentence pair clears either threshold."""

    def __init__(self, embedder: Embedder, lexical: float, semantic: float) -> None:
        self._embedder, self._lexical, self._semantic = embedder, lexical, semantic

    def verified(self, claim: str, source: str) -> bool:
        sentences = [m.group() for m in _OLD_SENTENCE.finditer(source) if m.group().strip()]
        spans = [s.strip() for s in sentences + [a + b for a, b in itertools.pairwise(sentences)]]
        spans = spans or [source]
        vectors = self._embedder.embed_passages([claim, *spans])
        semantic = max(sum(x * y for x, y in zip(vectors[0], v, strict=True)) for v in vectors[1:])
        lexical = max(lexical_support(claim, span) for span in spans)
        return bool(claim.strip()) and (lexical >= self._lexical or semantic >= self._semantic)


# --- Scoring ----------------------------------------------------------------------------------


def scores(pairs: Sequence[Pair], verdicts: Sequence[bool]) -> dict[str, float | int]:
    tp = sum(v and p.supported for p, v in zip(pairs, verdicts, strict=True))
    fp = sum(v and not p.supported for p, v in zip(pairs, verdicts, strict=True))
    positives = sum(p.supported for p in pairs)
    return {
        "pairs": len(pairs),
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "recall": round(tp / positives, 4) if positives else 0.0,
        "false_verified": fp,
        "verified": round(sum(verdicts) / len(pairs), 4) if pairs else 0.0,
    }


def breakdown(
    pairs: Sequence[Pair], verdicts: Sequence[bool], key: Callable[[Pair], str]
) -> dict[str, dict[str, float | int]]:
    groups: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        groups.setdefault(key(pair), []).append(index)
    return {
        name: scores([pairs[i] for i in idx], [verdicts[i] for i in idx])
        for name, idx in sorted(groups.items())
    }


def report(pairs: Sequence[Pair], verdicts: Sequence[bool]) -> dict[str, object]:
    """Scores overall, per split, per split and language, and per split and kind."""

    def split_language(p: Pair) -> str:
        return f"{p.split}:{p.language}"

    def split_kind(p: Pair) -> str:
        return f"{p.split}:{p.language}:{p.kind}"

    return {
        "all": scores(pairs, verdicts),
        "by_split": breakdown(pairs, verdicts, lambda p: p.split),
        "by_language": breakdown(pairs, verdicts, split_language),
        "by_kind": breakdown(pairs, verdicts, split_kind),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--per-language", type=int, default=150, help="True claims per language.")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="Embedding model.")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/verification.json"))
    parser.add_argument("--cache", type=Path, help="JSON file of span vectors, reused by reruns.")
    parser.add_argument("--no-old", action="store_true", help="Skip the old verifier.")
    parser.add_argument("--split", choices=["calibration", "held-out"], help="Only this half.")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    pairs = [
        *scifact_pairs(args.data / "scifact", args.per_language, rng),
        *cmrc_pairs(args.data / "cmrc2018-zh", args.per_language, rng),
        *hand_written_pairs(),
    ]
    if args.split:
        pairs = [p for p in pairs if p.split == args.split]
    settings = CitationSettings()
    semantic_threshold = settings.semantic_threshold_for(args.model)
    embedder = CachedEmbedder(create_embedder(EmbeddingSettings(model=args.model)), args.cache)
    prefetch(embedder, pairs)
    new = verifier_for(embedder, settings, args.model)
    old = OldVerifier(embedder, settings.lexical_threshold, semantic_threshold)
    started = time.perf_counter()
    supports = []
    for index, pair in enumerate(pairs):
        supports.append(new.support(pair.claim, pair.source))
        if index % 50 == 49:
            embedder.save()
    new_seconds = time.perf_counter() - started
    new_verdicts = [s.verified for s in supports]
    embedder.save()
    old_verdicts = [] if args.no_old else [old.verified(p.claim, p.source) for p in pairs]
    embedder.save()

    result: dict[str, object] = {
        "model": args.model,
        "lexical_threshold": settings.lexical_threshold,
        "semantic_threshold": semantic_threshold,
        "set": dict(Counter(f"{p.split}:{p.language}:{p.kind}" for p in pairs)),
        "new": {
            **report(pairs, new_verdicts),
            "ms_per_claim": round(1000 * new_seconds / len(pairs), 1),
        },
        "old": report(pairs, old_verdicts) if old_verdicts else None,
        "errors": [
            {
                **asdict(p),
                "split": p.split,
                "source": p.source[:300],
                "reason": s.reason,
                "quote": p.source[s.span_start : s.span_end],
            }
            for p, s in zip(pairs, supports, strict=True)
            if s.verified != p.supported
        ],
        "command": (
            f"python bench/verification.py --data {args.data} --per-language {args.per_language} "
            f"--model {args.model} --seed {args.seed} --out {args.out}"
            + (f" --split {args.split}" if args.split else "")
            + (" --no-old" if args.no_old else "")
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(
        f"model {args.model}; {len(pairs)} pairs; {new_seconds * 1000 / len(pairs):.0f} ms a claim"
    )
    print("| group | pairs | precision of verified | recall | wrongly verified | old: P | old: R |")
    print("|---|---|---|---|---|---|---|")
    new_report = result["new"]
    assert isinstance(new_report, dict)
    for section in ("by_split", "by_language", "by_kind"):
        for group, row in new_report[section].items():
            o = old_verdicts and report(pairs, old_verdicts)[section][group]
            olds = f"{o['precision']:.3f} | {o['recall']:.3f}" if o else "- | -"
            print(
                f"| {group} | {row['pairs']} | {row['precision']:.3f} | {row['recall']:.3f} | "
                f"{row['false_verified']} | {olds} |"
            )


def prefetch(embedder: CachedEmbedder, pairs: Sequence[Pair]) -> None:
    """Embed every claim and candidate span in large batches, once: far faster than a few
    texts per claim, and variants of the verifier then need no encoding at all."""
    texts = [p.claim for p in pairs]
    for source in dict.fromkeys(p.source for p in pairs):
        texts.extend(
            f"{s.context}\n{source[s.start : s.end]}" if s.context else source[s.start : s.end]
            for s in candidate_spans(source)
        )
    missing = sorted({t for t in texts if t not in embedder.cached}, key=len)
    for start in range(0, len(missing), 256):
        embedder.embed_passages(missing[start : start + 256])
        embedder.save()
        print(f"prefetched {min(start + 256, len(missing))}/{len(missing)}", flush=True)


def verifier_for(embedder: Embedder, settings: CitationSettings, model: str) -> CitationVerifier:
    if not hasattr(settings, "cjk_semantic_threshold_for"):  # an older checkout: "before"
        return CitationVerifier(
            embedder=embedder,
            lexical_threshold=settings.lexical_threshold,
            semantic_threshold=settings.semantic_threshold_for(model),
        )
    return CitationVerifier(
        embedder=embedder,
        lexical_threshold=settings.lexical_threshold,
        semantic_threshold=settings.semantic_threshold_for(model),
        cjk_semantic_threshold=settings.cjk_semantic_threshold_for(model),
    )


if __name__ == "__main__":
    main()
