"""What the events' field values mean, for everyone who reads them (sinks, validation). Pure.

A field of an Entity / Relation / Embedding record holds the store's value exactly as SQLite stores
it (docs/events.md, "Values"): ``None``, ``int``, ``float`` (inf included), ``str`` or ``bytes``.
``observations`` is the decoded list when the writer stored a JSON array of strings, else its exact
TEXT (``str``) or BLOB (``bytes``). The embedding text, though, is always built from a lenient reading
(``observation_list``, ``text_of``), the rule the source applied before values were exact, so vectors
stay what they were for rows with odd values.
"""

from __future__ import annotations

import json

from replicator.embedding import entity_text

Observations = list[str] | tuple[str, ...] | str | bytes


def parse_observations(text: object) -> tuple[list[str], bool]:
    """The writer's observations text -> (list, True) for a JSON array of strings; otherwise the
    lenient list -> (list, False): a JSON array has its non-string items as their JSON text, anything
    else (invalid JSON, an object, a number) becomes one item holding the raw text."""
    if text is None:
        return [], True
    if isinstance(text, bytes):
        return [text.decode("utf-8", "backslashreplace")], False
    if not isinstance(text, str):
        return [json.dumps(text)], False
    try:
        value = json.loads(text)
    except ValueError:
        return [text], False
    if not isinstance(value, list):
        return [text], False
    items = [item if isinstance(item, str) else json.dumps(item) for item in value]
    return items, all(isinstance(item, str) for item in value)


def observations_value(stored: object) -> Observations:
    """The event value of the store's ``observations`` column: the list for a JSON array of strings,
    otherwise the TEXT or BLOB exactly as stored."""
    if isinstance(stored, str):
        items, ok = parse_observations(stored)
        return items if ok else stored
    if isinstance(stored, bytes):
        return stored
    raise TypeError(f"observations holds {type(stored).__name__} {stored!r:.40}, not TEXT or BLOB")


def observation_list(value: object) -> list[str]:
    """The observations as a list of strings, leniently (for the embedding text)."""
    if isinstance(value, list | tuple):
        return [text_of(v) for v in value]
    return parse_observations(value)[0]


def text_of(value: object) -> str:
    """A value as text, leniently: a BLOB decoded as UTF-8 with escapes, a number as its JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return "" if value is None else json.dumps(value)


def embedding_text(name: object, entity_type: object, observations: object) -> str:
    """The text an entity's vector embeds (STORE.md), from values of any storage class."""
    return entity_text(text_of(name), text_of(entity_type), observation_list(observations))
