"""A fidelity corpus: for each format, a generated file whose true text is known.

Each case is (file name, bytes, true text): the true text is what a person reads in the file,
after ragkb's normalisation policy (ingest/normalize.py), so the extracted text must contain it
(whitespace normalised). French, German and Chinese text; ligatures, soft hyphens, zero-width
spaces and line-break hyphenation where the format can carry them.
"""

from __future__ import annotations

import json
from pathlib import Path

FRENCH = "La façade de l'hôtel était très belle : où est le théâtre ? Déjà vu, garçon naïf."
GERMAN = "Die Größe der Straße überrascht: Übermaß und Fußgängerzone sind schön."
# Full-width punctuation stays full-width (NFKC would make it ASCII).
CHINESE = "员工每年享有二十五天带薪年假，这是公司的规定：请提前申请！"
# As written in the file (TeX-style ligature glyphs, a soft hyphen, a zero-width space) …
LIGATURES_RAW = "The o\ufb03ce \ufb01tted the \ufb01eld with e\ufb03cient \ufb02ow and sta\ufb00."
INVISIBLE_RAW = "A docu\u00adment with zero\u200bwidth spaces."
# … and as it reads.
LIGATURES = "The office fitted the field with efficient flow and staff."
INVISIBLE = "A document with zerowidth spaces."
HYPHENATED_RAW = "The annual perfor-\nmance review is held in May."
HYPHENATED = "The annual performance review is held in May."

Case = tuple[str, bytes, list[str]]


def text_cases() -> list[Case]:
    """Plain-text formats: every text, in UTF-8 and in the legacy code pages clients still send."""
    utf8_body = "\n\n".join([FRENCH, GERMAN, CHINESE, LIGATURES_RAW, INVISIBLE_RAW, HYPHENATED_RAW])
    utf8_truth = [FRENCH, GERMAN, CHINESE, LIGATURES, INVISIBLE, HYPHENATED]
    western = "\n\n".join([FRENCH, GERMAN, "Cœur, « guillemets » et 5 € — fin."])
    western_truth = [FRENCH, GERMAN, "Cœur, « guillemets » et 5 € — fin."]
    html = (
        "<html><head><title>t</title></head><body>"
        + "".join(f"<p>{p}</p>" for p in [FRENCH, GERMAN, CHINESE, LIGATURES_RAW, INVISIBLE_RAW])
        + "</body></html>"
    )
    html_truth = [FRENCH, GERMAN, CHINESE, LIGATURES, INVISIBLE]
    western_html = "<html><body>" + "".join(f"<p>{p}</p>" for p in western_truth) + "</body></html>"
    return [
        ("utf8.txt", utf8_body.encode(), utf8_truth),
        ("cp1252.txt", western.encode("cp1252"), western_truth),
        ("latin1.txt", "\n\n".join([FRENCH, GERMAN]).encode("latin-1"), [FRENCH, GERMAN]),
        ("short-latin1.txt", "façade très".encode("latin-1"), ["façade très"]),
        ("gb18030.txt", CHINESE.encode("gb18030"), [CHINESE]),
        ("page.md", ("# Titre\n\n" + utf8_body).encode(), utf8_truth),
        ("utf8.html", html.replace("<head>", '<head><meta charset="utf-8">').encode(), html_truth),
        # No charset declared: the bytes decide.
        ("cp1252.html", western_html.encode("cp1252"), western_truth),
        # A declared charset is believed.
        (
            "declared.html",
            western_html.replace(
                "<body>",
                '<head><meta http-equiv="Content-Type" '
                'content="text/html; charset=windows-1252"></head><body>',
            ).encode("cp1252"),
            western_truth,
        ),
        ("table.csv", _csv(",").encode(), _table_truth()),
        ("table-cp1252.csv", _csv(",", chinese=False).encode("cp1252"), _table_truth(False)),
        ("table.tsv", _csv("\t").encode(), _table_truth()),
        (
            "data.json",
            json.dumps(
                {"fr": FRENCH, "de": GERMAN, "zh": CHINESE, "lig": LIGATURES_RAW},
                ensure_ascii=False,
            ).encode(),
            [FRENCH, GERMAN, CHINESE, LIGATURES],
        ),
        ("mail.eml", _eml("utf-8"), [FRENCH, GERMAN, CHINESE, LIGATURES]),
        ("mail-latin1.eml", _eml("iso-8859-1"), [FRENCH, GERMAN]),
        # Bodies whose charset is missing, unknown or wrong are decoded as a .txt file is.
        *[
            (f"mail-{label}.eml", _raw_eml(content_type, body), truth)
            for label, content_type, body, truth in _raw_mail_bodies()
        ],
        # Single words and UTF-16 without a byte-order mark (Notepad's "Unicode" as some
        # tools write it) are not read as Chinese or refused as binary.
        *[(f"word-{i}.txt", w.encode(enc), [w]) for i, (w, enc) in enumerate(_SHORT_WORDS)],
        ("utf16le.txt", "\n\n".join([FRENCH, GERMAN]).encode("utf-16-le"), [FRENCH, GERMAN]),
        ("utf16be.txt", "\n\n".join([FRENCH, CHINESE]).encode("utf-16-be"), [FRENCH, CHINESE]),
        ("utf16le-zh.txt", CHINESE.encode("utf-16-le"), [CHINESE]),
    ]


_SHORT_WORDS = [("très", "latin-1"), ("Noël", "cp1252"), ("café", "latin-1"),
                ("Müller", "cp1252"), ("ça va", "latin-1"), ("fête", "cp1252")]  # fmt: skip
_SMART = "“très” 5 € – œuvre"


def _raw_mail_bodies() -> list[tuple[str, str, bytes, list[str]]]:
    french_html = f"<html><body><p>{FRENCH}</p><p>{_SMART}</p></body></html>"
    return [
        ("no-charset", "text/plain", FRENCH.encode("latin-1"), [FRENCH]),
        ("unknown-8bit", "text/plain; charset=unknown-8bit", FRENCH.encode("cp1252"), [FRENCH]),
        ("bad-label", "text/plain; charset=x-nonesuch", GERMAN.encode("latin-1"), [GERMAN]),
        # Labelled Latin-1, written by Windows: cp1252's quotes, euro and œ.
        ("latin1-label", "text/plain; charset=iso-8859-1", _SMART.encode("cp1252"), [_SMART]),
        ("html-no-charset", "text/html", french_html.encode("cp1252"), [FRENCH, _SMART]),
    ]


def _raw_eml(content_type: str, body: bytes) -> bytes:
    headers = ["Subject: Note", f"Content-Type: {content_type}", "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _csv(delimiter: str, *, chinese: bool = True) -> str:
    rows = [["ville", "remarque"], ["Besançon", "très belle façade"], ["München", "Größe"]]
    if chinese:
        rows.append(["北京", "首都，很大"])
    return "\n".join(delimiter.join(row) for row in rows) + "\n"


def _table_truth(chinese: bool = True) -> list[str]:
    # Each row carries its column names (the table rule of README "Supported files").
    truth = ["ville: Besançon | remarque: très belle façade", "ville: München | remarque: Größe"]
    return truth + (["ville: 北京 | remarque: 首都，很大"] if chinese else [])


def _eml(charset: str) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = "Réunion à München"
    message["From"] = "rh@example.com"
    message["To"] = "tous@example.com"
    if charset == "utf-8":
        body = "\n\n".join([FRENCH, GERMAN, CHINESE, LIGATURES_RAW])
    else:
        body = "\n\n".join([FRENCH, GERMAN])
    message.set_content(body, charset=charset, cte="quoted-printable")
    return message.as_bytes()


def office_cases(folder: Path) -> list[Case]:
    """DOCX, PPTX, XLSX and PDF, each made by its own library with the true text in it."""
    from tests.docgen import make_docx, make_pptx, make_xlsx

    paragraphs = [FRENCH, GERMAN, CHINESE, LIGATURES_RAW, INVISIBLE_RAW]
    truth = [FRENCH, GERMAN, CHINESE, LIGATURES, INVISIBLE]
    docx = make_docx(folder / "f.docx", [("Überblick", paragraphs)])
    pptx = make_pptx(folder / "f.pptx", [("Façade", p) for p in paragraphs])
    xlsx = make_xlsx(folder / "f.xlsx", {"Données": [["texte"], *[[p] for p in paragraphs]]})
    return [
        ("f.docx", docx.read_bytes(), ["Überblick", *truth]),
        ("f.pptx", pptx.read_bytes(), ["Façade", *truth]),
        ("f.xlsx", xlsx.read_bytes(), ["Données", *truth]),
        (
            "f.pdf",
            make_text_pdf(folder / "f.pdf").read_bytes(),
            [FRENCH, GERMAN, CHINESE, LIGATURES, HYPHENATED],
        ),
    ]


def make_text_pdf(path: Path) -> Path:
    """A PDF with a text layer as TeX and office suites write one: Latin text in an embedded
    TrueType font that has ligature glyphs (ﬁ ﬂ ﬀ ﬃ), Chinese in a CID font, and a word
    hyphenated at a line end."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(TTFont("DejaVu", _dejavu()))
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    pdf = canvas.Canvas(str(path), pagesize=A4)
    y = 780
    for line, font in [
        (FRENCH, "DejaVu"),
        (GERMAN, "DejaVu"),
        (CHINESE, "STSong-Light"),
        (LIGATURES_RAW, "DejaVu"),
        *[(part, "DejaVu") for part in HYPHENATED_RAW.split("\n")],
    ]:
        pdf.setFont(font, 10)
        pdf.drawString(40, y, line)
        y -= 16
    pdf.showPage()
    pdf.save()
    return path


def _dejavu() -> str:
    for candidate in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ):
        if Path(candidate).is_file():
            return candidate
    import reportlab

    # reportlab ships Vera, which has the fi/fl ligature glyphs too.
    return str(Path(reportlab.__file__).parent / "fonts" / "Vera.ttf")


def legacy_cases(folder: Path) -> list[Case]:
    """.doc .ppt .xls .msg .epub .odt .ods .rtf, each written with the true text in it (the OLE and
    zip formats by tests.docgen, .xls by xlwt, RTF with `\\uN` and `\\'hh` escapes)."""
    import xlwt

    from tests.docgen import make_doc, make_epub, make_msg, make_odt, make_ppt

    paragraphs = [FRENCH, GERMAN, CHINESE, LIGATURES_RAW, INVISIBLE_RAW]
    truth = [FRENCH, GERMAN, CHINESE, LIGATURES, INVISIBLE]
    book = xlwt.Workbook()
    sheet = book.add_sheet("Données")
    for row, value in enumerate(["texte", *paragraphs]):
        sheet.write(row, 0, value)
    book.save(str(folder / "f.xls"))
    epub = make_epub(folder / "f.epub", "Überblick", [("Überblick", p) for p in paragraphs])
    odt = make_odt(folder / "f.odt", "".join(f"<text:p>{p}</text:p>" for p in paragraphs))
    rtf = "{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0 Arial;}}\\f0 "
    rtf += "\\par ".join(_rtf_escaped(p) for p in [*paragraphs, _SMART]) + "\\par}"
    return [
        ("f.doc", make_doc(paragraphs), truth),
        ("cp1252.doc", make_doc([FRENCH, GERMAN, _SMART]), [FRENCH, GERMAN, _SMART]),
        ("f.ppt", make_ppt([("Façade", p) for p in paragraphs]), ["Façade", *truth]),
        ("f.xls", (folder / "f.xls").read_bytes(), ["Données", *truth]),
        (
            "f.msg",
            make_msg("Réunion à München", "\r\n\r\n".join(paragraphs)),
            ["Réunion à München", *truth],
        ),
        ("f.epub", epub.read_bytes(), ["Überblick", *truth]),
        ("cp1252.epub", _cp1252_epub(folder), [FRENCH, _SMART]),
        ("f.odt", odt.read_bytes(), truth),
        ("f.ods", _ods(folder, paragraphs), ["Données", *truth]),
        ("f.rtf", rtf.encode("ascii"), [*truth, _SMART]),
    ]


def _ods(folder: Path, paragraphs: list[str]) -> bytes:
    from tests.docgen import make_ods

    rows = "".join(
        f"<table:table-row><table:table-cell><text:p>{p}</text:p></table:table-cell>"
        "</table:table-row>"
        for p in ["texte", *paragraphs]
    )
    return make_ods(folder / "f.ods", f'<table:table table:name="Données">{rows}</table:table>')


def _rtf_escaped(text: str) -> str:
    """RTF text: cp1252 bytes as `\\'hh`, other characters as `\\uN?` (signed 16-bit)."""
    out = []
    for ch in text:
        if ord(ch) < 128:
            out.append(ch)
            continue
        try:
            out.append("".join(f"\\'{b:02x}" for b in ch.encode("cp1252")))
        except UnicodeEncodeError:
            code = ord(ch)
            out.append(f"\\u{code - 65536 if code > 32767 else code}?")
    return "".join(out)


def _cp1252_epub(folder: Path) -> bytes:
    """An EPUB whose chapter is windows-1252, as its XML declaration says."""
    import zipfile

    from tests.docgen import make_epub

    plain = make_epub(folder / "plain.epub", "T", [("Chap", "x")])
    chapter = (
        '<?xml version="1.0" encoding="windows-1252"?><html xmlns="http://www.w3.org/1999/xhtml">'
        f"<head><title>Chap</title></head><body><p>{FRENCH}</p><p>{_SMART}</p></body></html>"
    ).encode("cp1252")
    out = folder / "cp1252.epub"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            target.writestr(info, chapter if info.filename.endswith("c0.xhtml") else content)
    return out.read_bytes()
