"""Reading the values of a row image back, exactly as SQLite stores them. Pure.

``triggers.py`` writes the image (its docstring is the format); this module is its reader, so the
source (and anything else reading images) gets one Python value per SQLite value:

=========  ==========================================================================
SQLite     Python
=========  ==========================================================================
NULL       ``None``
INTEGER    ``int`` (-2**63 .. 2**63-1, exact)
REAL       ``float`` (exact, +/-inf included; ``["real", digits, 768]`` for |x| >= 1e100)
TEXT       ``str`` (``["text", HEX]`` when it holds NUL); text that is not UTF-8 is refused
BLOB       ``bytes`` (``["blob", HEX]``)
=========  ==========================================================================

Raises ImageValueError (a ValueError naming what it found) for what no SQLite value renders to, and
for TEXT that is not valid UTF-8 (the reader decoded it with ``surrogateescape``): no event can carry it
as text, so the source parks the row.
"""

from __future__ import annotations

import math

Value = None | int | float | str | bytes


class ImageValueError(ValueError):
    """An image value that is not a SQLite value this pipeline can carry; the message says which."""


def _text(value: str) -> str:
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = value.encode("utf-8", "surrogateescape")
        raise ImageValueError(f"TEXT that is not valid UTF-8 ({len(raw)} bytes, starting {raw[:16]!r})") from exc
    return value


def value_of(rendered: object) -> Value:
    """One column's value from its rendering in the image (or the value itself, read by columns: a
    BLOB comes as bytes, which no JSON image holds). Raises ImageValueError."""
    if rendered is None or isinstance(rendered, float | bytes):
        return rendered
    if isinstance(rendered, int) and not isinstance(rendered, bool):
        return rendered
    if isinstance(rendered, str):
        return _text(rendered)
    if isinstance(rendered, list) and len(rendered) == 3 and rendered[0] == "real" and rendered[2] == 768:
        return math.ldexp(float(rendered[1]), 768)
    if isinstance(rendered, list) and len(rendered) == 2 and rendered[0] in ("text", "blob"):
        try:
            raw = bytes.fromhex(str(rendered[1]))
        except ValueError as exc:
            raise ImageValueError(f"a malformed {rendered[0]} marker {rendered!r:.80}") from exc
        if rendered[0] == "blob":
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImageValueError(f"TEXT that is not valid UTF-8 ({len(raw)} bytes, starting {raw[:16]!r})") from exc
    raise ImageValueError(f"{rendered!r:.80}, which no SQLite value renders to")


def typed_value_of(rendered: object) -> Value:
    """A ``[typeof, value]`` pair (drifted columns, a non-BLOB ``embeddings.embedding``), or the hex
    string of a BLOB column (or the BLOB itself, read by columns), as its value. Raises ImageValueError."""
    if isinstance(rendered, bytes):
        return rendered
    if isinstance(rendered, str):
        try:
            return bytes.fromhex(rendered)
        except ValueError as exc:
            raise ImageValueError(f"a BLOB column rendered as {rendered[:40]!r}, not hex") from exc
    if isinstance(rendered, list) and len(rendered) == 2 and rendered[0] in ("null", "integer", "real", "text"):
        return value_of(rendered[1])
    raise ImageValueError(f"{rendered!r:.80}, which is not a typed value")


def sqlite_type(value: Value) -> str:
    """The storage class of a value, as SQLite's typeof() names it."""
    return {type(None): "null", int: "integer", float: "real", str: "text", bytes: "blob"}[type(value)]


def is_finite(value: Value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
