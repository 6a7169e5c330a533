"""One file cannot take the service down, and every failure says why (issue 16, sections 1, 6)."""

from __future__ import annotations

import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.chunk import document_text
from ingest.parse import ParseError, parse_document
from ingest.sandbox import ParseLimits, ParserPool, ParseTimeoutError


def test_plain_text_is_read_without_heuristics() -> None:
    """The reported file: 5 MB of `"b " * 2,500,000` kept a worker busy for over 35 minutes in
    unstructured's text heuristics; read like Markdown it is one paragraph, read at once."""
    data = b"b " * 2_500_000
    doc = parse_document("b.txt", data)
    assert document_text(doc) == data.decode().strip()
    assert [e.kind for e in doc.elements] == ["text"]


def test_plain_text_paragraphs_are_elements_and_nothing_is_guessed() -> None:
    doc = parse_document("n.txt", b"# not a heading\n\nSecond paragraph,\nsame paragraph.\n\n\n3")
    assert [(e.kind, e.text) for e in doc.elements] == [
        ("text", "# not a heading"),
        ("text", "Second paragraph,\nsame paragraph."),
        ("text", "3"),
    ]
    # Lone carriage returns (classic Mac OS line ends) separate lines and paragraphs too.
    mac = parse_document("m.txt", b"# not a heading\r\rSecond paragraph,\rsame paragraph.\r\r\r3")
    assert mac.elements == doc.elements


@pytest.fixture(scope="module")
def pool() -> ParserPool:
    return ParserPool(ParseLimits(timeout_s=120, memory_mb=3072))


def test_the_pool_parses_like_parse_document(pool: ParserPool, tmp_path: Path) -> None:
    data = "# Politique\n\nLa façade est très belle.\n".encode()
    assert pool.parse("a.md", data) == parse_document("a.md", data)
    with pytest.raises(ParseError, match="the file is empty"):
        pool.parse("e.txt", b"")
    assert pool.parse("b.txt", b"still works").elements[0].text == "still works"


def test_a_file_past_the_time_limit_fails_with_the_limit_and_the_next_one_parses() -> None:
    fast = ParserPool(ParseLimits(timeout_s=0.5, memory_mb=3072))
    # unstructured's HTML partitioner takes seconds on 2 MB of paragraphs, well past 0.5 s.
    html = "<html><body>" + "<p>Badges are worn at all times.</p>" * 60_000 + "</body></html>"
    with pytest.raises(ParseTimeoutError, match=r"took longer than 0\.5 s to parse"):
        fast.parse("slow.html", html.encode())
    generous = ParserPool(ParseLimits(timeout_s=120, memory_mb=3072))
    assert generous.parse("ok.txt", b"after the timeout").elements[0].text == "after the timeout"
    fast.close()
    generous.close()


def test_a_file_past_the_memory_limit_fails_with_the_limit() -> None:
    """30 MB of JSON strings become ~1 GB of Python objects; the child's address space is capped
    a few hundred MB above what the parsers' libraries take, so the file fails, not the server."""
    tight = ParserPool(ParseLimits(timeout_s=300, memory_mb=1300))
    data = json.dumps([f"value number {i}" for i in range(1_800_000)]).encode()
    with pytest.raises(ParseError, match=r"more than the 1300 MiB memory limit|memory limit 1300"):
        tight.parse("big.json", data)
    assert tight.parse("ok.txt", b"fine").elements[0].text == "fine"  # a fresh child
    tight.close()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        # 200,000 nested brackets: was "internal error (RecursionError)".
        ("deep.json", b"[" * 200_000 + b"]" * 200_000, "nested deeper than the limit of 500"),
        ("deep2.json", b'{"a":' * 600 + b"1" + b"}" * 600, "nested deeper than the limit of 500"),
        # A 200,000-character field: was "internal error (Error)".
        ("long.csv", b'a,b\n1,"' + b"x" * 200_000 + b'"\n', "longer than the limit of 131,072"),
    ],
)
def test_failures_name_the_problem_and_the_limit(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_document(name, data)


def _pgp_mime() -> bytes:
    """A PGP/MIME mail as Thunderbird/Enigmail send it (RFC 3156)."""
    return (
        b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Q3 numbers\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
        b'boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: application/pgp-encrypted\r\n"
        b"Content-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n"
        b'--b1\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n'
        b'Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n'
        b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA5e4Q9zLkX2aAQf/Vx1w2c3+Zm9yZSBjaXBoZXJ0ZXh0\r\n"
        b"=abcd\r\n-----END PGP MESSAGE-----\r\n\r\n--b1--\r\n"
    )


def _wrapped(mail: bytes) -> bytes:
    """`mail`'s body as the only part of a multipart/mixed mail."""
    head, _, body = mail.partition(b"\r\n\r\n")
    content_type = [line for line in head.split(b"\r\n") if line.startswith(b"Content-Type")]
    return (
        b"From: alice@example.com\r\nSubject: Q3\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="w"\r\n\r\n--w\r\n'
        + content_type[0]
        + b"\r\n\r\n"
        + body
        + b"\r\n--w--\r\n"
    )


def _mail(content_type: str, body: bytes | str, **params: str) -> bytes:
    message = EmailMessage(policy=email.policy.default)
    message["Subject"] = "Secret"
    message["From"] = "a@example.com"
    if isinstance(body, str):
        message.set_content(body)
    else:
        maintype, subtype = content_type.split("/")
        message.set_content(body, maintype=maintype, subtype=subtype, params=params)
    return message.as_bytes()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (_pgp_mime(), "PGP/MIME"),
        (_mail("application/pkcs7-mime", b"0\x82\x01\x00", smime_type="enveloped-data"),
         "S/MIME"),
        (_mail("text/plain", "-----BEGIN PGP MESSAGE-----\n\nhQEMA5e4\n-----END PGP "
                             "MESSAGE-----\n"), "inline PGP"),
        # Wrapped in multipart/mixed by the sending client; armour in an HTML-only body.
        (_wrapped(_pgp_mime()), "PGP/MIME"),
        (_mail("text/html", b"<html><body><pre>-----BEGIN PGP MESSAGE-----\nhQEMA5e4\n"
                            b"-----END PGP MESSAGE-----</pre></body></html>"), "inline PGP"),
    ],
)  # fmt: skip
def test_an_encrypted_mail_fails_as_encrypted(data: bytes, kind: str) -> None:
    """Was indexed as done: 3 chunks of headers and ragkb's own "attachment not read" text."""
    with pytest.raises(ParseError, match=rf"^encrypted e-mail \({kind}\)"):
        parse_document("secret.eml", data)


def test_a_signed_mail_is_read() -> None:
    data = (
        b"From: a@example.com\r\nSubject: Signed\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pgp-signature"; '
        b'micalg=pgp-sha256; boundary="s1"\r\n\r\n'
        b"--s1\r\nContent-Type: text/plain\r\n\r\nThe gate code changes on Monday.\r\n"
        b'--s1\r\nContent-Type: application/pgp-signature; name="signature.asc"\r\n\r\n'
        b"-----BEGIN PGP SIGNATURE-----\r\nabc\r\n-----END PGP SIGNATURE-----\r\n--s1--\r\n"
    )
    text = document_text(parse_document("signed.eml", data))
    assert "The gate code changes on Monday." in text
    assert "not read" not in text


def test_an_opaque_signed_mail_says_its_body_is_inside_the_signature() -> None:
    data = _mail("application/pkcs7-mime", b"0\x82\x01\x00", **{"smime-type": "signed-data"})
    with pytest.raises(ParseError, match=r"^S/MIME opaque-signed e-mail"):
        parse_document("signed.eml", data)


def test_forwarded_mails_and_unnamed_text_parts_are_read() -> None:
    """A forwarded mail (message/rfc822) was dropped without a word; an inline text part
    without a file name was "unsupported file type '(none)'"."""
    inner = EmailMessage(policy=email.policy.default)
    inner["Subject"] = "Visitor rules"
    inner.set_content("Visitors sign in at reception.")
    outer = EmailMessage(policy=email.policy.default)
    outer["Subject"] = "Fwd: Visitor rules"
    outer.set_content("See the forwarded mail.")
    outer.add_attachment(inner)
    outer.add_attachment("Parking costs 40 EUR a month.", subtype="plain", disposition="inline")
    doc = parse_document("fwd.eml", outer.as_bytes())
    texts = [e.text for e in doc.elements]
    assert "Visitors sign in at reception." in texts
    assert "Parking costs 40 EUR a month." in texts
    assert doc.notes == ()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        # markdown-it's commonmark preset dropped every item below the 10th level of a nested
        # list and a quote 20 deep whole ("no text could be extracted").
        ("list.md", "".join("  " * i + f"- item{i}\n" for i in range(60)).encode(), "item59"),
        ("quote.md", b"> " * 5000 + b"quoted words", "quoted words"),
        # libxml2 stops at 255 nested elements: all the page's text was lost, or the
        # paragraphs after the 255th unclosed <font>.
        ("divs.html", b"<p>first</p>" + b"<div>" * 300 + b"deep words" + b"</div>" * 300,
         "deep words"),
        ("fonts.html", b"".join(b"<font size=2>para%d " % i for i in range(400)), "para399"),
    ],
)  # fmt: skip
def test_deeply_nested_text_is_read(name: str, data: bytes, expected: str) -> None:
    assert expected in document_text(parse_document(name, data))


def test_mime_parts_nested_past_the_recursion_limit_name_it() -> None:
    data = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n" + b"".join(
        f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n".encode()
        for i in range(3000)
    )
    with pytest.raises(ParseError, match=r"nested deeper than its parser can follow \(the limit"):
        parse_document("deep.eml", data)


def test_unstructureds_classifiers_see_a_bounded_text() -> None:
    """HTML, DOCX, PPTX and PDF pages still go through unstructured's title/narrative
    heuristics; spaCy (pos_tag) sees at most HEURISTIC_CHARS of a text, the rest is split by
    regular expressions."""
    import importlib

    from ingest.heuristics import HEURISTIC_CHARS, cap_heuristics

    cap_heuristics()
    text_type = importlib.import_module("unstructured.partition.text_type")
    long_text = "The office is open. " * 5_000
    tags = text_type.pos_tag(long_text)
    assert 0 < len(tags) <= HEURISTIC_CHARS // 2  # tokens of the first 200 characters only
    assert len(text_type.sent_tokenize(long_text)) == 5_000
    assert text_type.is_possible_narrative_text(long_text)  # still classified
