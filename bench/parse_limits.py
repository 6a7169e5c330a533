"""Parse time and peak memory per MB for each supported format, on files at a given size.

Each file is parsed by `parse_document` in a fresh process (so one format's memory does not
count against the next), after a tiny file of the same format has loaded its libraries: the
figures are the file's own cost. The text is varied prose (words drawn from a fixed vocabulary),
so zip-based formats compress like real documents; plus the adversarial plain-text file of issue
16 (`"b " * N`, one paragraph). What they show sets the defaults of `RAGKB_INGEST__PARSE_TIMEOUT_S`
and `RAGKB_INGEST__PARSE_MEMORY_MB`.

The committed results (the text formats at the 50 MB upload limit; the others at 5 MB, since
generating a 50 MB Office file or PDF takes longer than the question is worth):

    python bench/parse_limits.py --size-mb 50 --timeout-s 300 \
        --formats .txt,.adversarial.txt,.md,.csv,.tsv,.json,.eml \
        --out bench/results/parse-limits.json
    python bench/parse_limits.py --size-mb 5 --timeout-s 300 \
        --formats .html,.pdf,.docx,.pptx,.xlsx,.doc,.odt,.epub \
        --out bench/results/parse-limits.json --append
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "no",
    "will",
    "report",
    "annual",
    "budget",
    "employee",
    "policy",
    "leave",
    "travel",
    "contract",
    "supplier",
    "invoice",
    "warehouse",
    "quarter",
    "revenue",
    "customer",
    "service",
    "security",
    "access",
    "badge",
    "meeting",
    "review",
    "training",
    "office",
    "façade",
    "très",
    "Größe",
    "straße",
    "员工",
    "年假",
    "规定",
]


def prose(chars: int, seed: int = 16) -> list[str]:
    """Paragraphs of varied sentences, `chars` characters in all."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < chars:
        sentences = [
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "."
            for _ in range(rng.randint(3, 6))
        ]
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return paragraphs


def _fit(make: Callable[[int], bytes], size: int) -> bytes:
    """A file of about `size` bytes: made once small, then scaled by the measured ratio."""
    probe = 200_000
    ratio = len(make(probe)) / probe
    data = make(int(size / ratio))
    return data


def make_file(suffix: str, size: int, folder: Path) -> bytes:
    if suffix == ".txt":
        return _fit(lambda n: "\n\n".join(prose(n)).encode(), size)
    if suffix == ".adversarial.txt":
        return b"b " * (size // 2)
    if suffix == ".md":
        return _fit(
            lambda n: "\n\n".join(
                f"## Section {i}\n\n{p}" if i % 10 == 0 else p for i, p in enumerate(prose(n))
            ).encode(),
            size,
        )
    if suffix == ".html":
        return _fit(
            lambda n: (
                "<html><body>" + "".join(f"<p>{p}</p>" for p in prose(n)) + "</body></html>"
            ).encode(),
            size,
        )
    if suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"

        def rows(n: int) -> bytes:
            # Every word of the prose, six to a row (not six a paragraph: generating ten times
            # the prose for a 50 MB table took longer than parsing it).
            words = " ".join(prose(n)).split()
            lines = (sep.join(words[i : i + 6]) for i in range(0, len(words), 6))
            return "\n".join(lines).encode()

        return _fit(rows, size)
    if suffix == ".json":
        return _fit(
            lambda n: json.dumps(
                {"items": [{"id": i, "text": p} for i, p in enumerate(prose(n))]}
            ).encode(),
            size,
        )
    if suffix == ".eml":
        from email.message import EmailMessage

        def eml(n: int) -> bytes:
            message = EmailMessage()
            message["Subject"] = "Report"
            message.set_content("\n\n".join(prose(n)))
            return message.as_bytes()

        return _fit(eml, size)
    if suffix == ".pdf":
        return _fit(lambda n: _pdf(prose(n), folder), size)
    if suffix == ".docx":
        from tests.docgen import make_docx

        return _fit(
            lambda n: make_docx(folder / "f.docx", [("Report", prose(n))]).read_bytes(), size
        )
    if suffix == ".pptx":
        from tests.docgen import make_pptx

        return _fit(
            lambda n: make_pptx(
                folder / "f.pptx", [(f"Slide {i}", p) for i, p in enumerate(prose(n))]
            ).read_bytes(),
            size,
        )
    if suffix == ".xlsx":
        from tests.docgen import make_xlsx

        return _fit(
            lambda n: make_xlsx(
                folder / "f.xlsx", {"Data": [p.split()[:6] for p in prose(n)]}
            ).read_bytes(),
            size,
        )
    if suffix == ".doc":
        from tests.docgen import make_doc

        return _fit(lambda n: make_doc(prose(n)), size)
    if suffix == ".odt":
        from tests.docgen import make_odt

        return _fit(
            lambda n: make_odt(
                folder / "f.odt", "".join(f"<text:p>{p}</text:p>" for p in prose(n))
            ).read_bytes(),
            size,
        )
    if suffix == ".epub":
        from tests.docgen import make_epub

        def epub(n: int) -> bytes:
            paragraphs = prose(n)
            chapters = [
                (f"Chapter {i}", " ".join(paragraphs[i : i + 20]))
                for i in range(0, len(paragraphs), 20)
            ]
            return make_epub(folder / "f.epub", "Book", chapters).read_bytes()

        return _fit(epub, size)
    raise ValueError(suffix)


def _pdf(paragraphs: list[str], folder: Path) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    path = folder / "f.pdf"
    pdf = canvas.Canvas(str(path), pagesize=A4)
    y = 800
    for paragraph in paragraphs:
        words = paragraph.encode("latin-1", "replace").decode("latin-1").split()
        for start in range(0, len(words), 12):
            if y < 60:
                pdf.showPage()
                y = 800
            pdf.setFont("Helvetica", 10)
            pdf.drawString(40, y, " ".join(words[start : start + 12]))
            y -= 13
        y -= 8
    pdf.showPage()
    pdf.save()
    return path.read_bytes()


FORMATS = [
    ".txt",
    ".adversarial.txt",
    ".md",
    ".html",
    ".csv",
    ".tsv",
    ".json",
    ".eml",
    ".pdf",
    ".docx",
    ".pptx",
    ".xlsx",
    ".doc",
    ".odt",
    ".epub",
]


def measure_one(path: Path, name: str, warmup: Path) -> dict[str, object]:
    """In this process: parse the warm-up file, then `path`; time, the RSS before (the file's
    bytes read) and the peak RSS while parsing."""
    from ingest.parse import ParseError, parse_document

    parse_document(name, warmup.read_bytes())
    data = path.read_bytes()
    # ru_maxrss survives exec (this process started as a fork of the one that generated the
    # files: its peak was the parent's); VmHWM is this program's own, and can be reset.
    _reset_peak()
    baseline = _status_mb("VmRSS")
    started = time.perf_counter()
    error = None
    elements = 0
    try:
        elements = len(parse_document(name, data).elements)
    except ParseError as exc:
        error = str(exc)
    seconds = time.perf_counter() - started
    peak = _status_mb("VmHWM")
    return {
        "seconds": seconds,
        "peak_rss_mb": peak,
        "baseline_rss_mb": baseline,
        "elements": elements,
        "error": error,
    }


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Set VmHWM back to the current RSS (Linux: `5` to /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=5.0)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--append", action="store_true", help="add the rows to --out's")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # path name warmup (internal)
    args = parser.parse_args()
    if args.one:
        path, name, warmup = args.one
        print(json.dumps(measure_one(Path(path), name, Path(warmup))))
        return
    size = int(args.size_mb * 1024 * 1024)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for suffix in args.formats.split(","):
            name = "f" + (".txt" if suffix == ".adversarial.txt" else suffix)
            data = make_file(suffix, size, folder)
            path = folder / ("big" + suffix)
            path.write_bytes(data)
            warmup = folder / ("warm" + suffix)
            warmup.write_bytes(
                make_file(suffix, 20_000, folder) if suffix != ".adversarial.txt" else b"b b b"
            )
            command = [sys.executable, __file__, "--one", str(path), name, str(warmup)]
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=args.timeout_s, check=True
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
            except subprocess.TimeoutExpired:
                result = {"seconds": None, "peak_rss_mb": None, "error": "timeout"}
            except subprocess.CalledProcessError as exc:
                result = {"seconds": None, "peak_rss_mb": None, "error": exc.stderr[-300:]}
            mb = len(data) / 1024 / 1024
            row = {"format": suffix, "size_mb": round(mb, 2), **result}
            if result.get("seconds") is not None:
                row["s_per_mb"] = round(float(result["seconds"]) / mb, 3)
                extra = float(result["peak_rss_mb"]) - float(result["baseline_rss_mb"])
                row["extra_rss_mb_per_mb"] = round(max(0.0, extra) / mb, 1)
            rows.append(row)
            print(_line(row), flush=True)
    if args.out:
        command = "python bench/parse_limits.py " + " ".join(sys.argv[1:])
        report: dict[str, list[object]] = {"commands": [], "rows": []}
        if args.append and args.out.exists():
            report = json.loads(args.out.read_text())
        report["commands"].append(command)
        report["rows"].extend(rows)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def _line(row: dict[str, object]) -> str:
    def fmt(key: str, spec: str) -> str:
        value = row.get(key)
        return format(value, spec) if isinstance(value, int | float) else "-"

    return (
        f"{row['format']:<18} {fmt('size_mb', '6.2f')} MB  {fmt('seconds', '8.2f')} s  "
        f"{fmt('s_per_mb', '7.3f')} s/MB  peak {fmt('peak_rss_mb', '7.0f')} MB  "
        f"(+{fmt('extra_rss_mb_per_mb', '6.1f')} MB/MB)  {row.get('error') or ''}"
    )


if __name__ == "__main__":
    main()
