"""What an end-user principal may look like: the one rule every front applies.

A principal is a user or group id as the calling app names it (`user:ann`, `group:finance`).
Documents carry a list of them, queries the end user's. Internally a document without an access
list carries the mark `*` in every point's payload, so a principal that *is* such a mark would
make a document public (at upload) or be read as one (in a query): reserved values are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_PRINCIPAL_CHARS = 200
# `*` is the store's mark for "no access list" (core.vectorstore.PUBLIC_PRINCIPAL). Refused
# anywhere in a principal, not only alone: `group:*` reads like a wildcard, and none is supported.
RESERVED_CHARACTERS = "*"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidPrincipalError(ValueError):
    """A principal that breaks the syntax rule; the message says which part."""


def check_principal(value: str) -> str:
    """`value` unchanged when it is a valid principal: 1-200 characters, no control characters,
    no whitespace at either end, no reserved character (`*`). Raises InvalidPrincipalError."""
    if not value:
        raise InvalidPrincipalError("a principal must not be empty")
    if len(value) > MAX_PRINCIPAL_CHARS:
        raise InvalidPrincipalError(
            f"a principal is at most {MAX_PRINCIPAL_CHARS} characters ({len(value)} given)"
        )
    if _CONTROL.search(value):
        raise InvalidPrincipalError("a principal must not hold control characters")
    if value != value.strip():
        raise InvalidPrincipalError(f"principal {value!r} has whitespace at an end")
    if any(c in value for c in RESERVED_CHARACTERS):
        raise InvalidPrincipalError(
            f"principal {value!r}: '*' is reserved (ragkb's internal mark for a document without "
            "an access list; there are no wildcards); omit `principals` to make a document "
            "readable by everyone in the tenant"
        )
    return value


def check_principals(values: Iterable[str]) -> list[str]:
    """Every value checked (the first bad one raises), in the order given."""
    return [check_principal(v) for v in values]


def same_principals(a: Iterable[str] | None, b: Iterable[str] | None) -> bool:
    """Whether two callers are the same end user: equal as sets; None (no end user, a key-level
    caller) only equals None."""
    if a is None or b is None:
        return a is None and b is None
    return set(a) == set(b)


def may_read(caller: Iterable[str] | None, document: Iterable[str] | None) -> bool:
    """Whether a caller with these principals may read a document with this access list (None:
    no end user, who reads everything; a document without a list is read by everyone)."""
    if caller is None or document is None:
        return True
    return bool(set(caller) & set(document))
