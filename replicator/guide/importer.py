"""``replicator import``: load an export (see :mod:`replicator.guide.export`) into a store.

* A path that does not exist becomes a new store with the writer's schema (and its pragmas: WAL).
* A store that already holds entities or relations is refused unless ``merge``: then rows whose id
  is absent are inserted, rows identical to what is there are skipped, and a row that conflicts
  (same id with other content, or a name taken by another id) fails the import, naming the key.
* Everything is one transaction: a bad file or a conflict leaves the store as it was.
* Ids are kept, so relations and embeddings keep pointing at the same entities. If capture is
  installed, its triggers record the inserted rows and the pipeline replicates them.

The whole document is checked before anything is written; every problem raises MigrateError naming
the entry (``entities[3].name``) and what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from replicator.guide.export import FORMAT, FORMAT_VERSION
from replicator.store.schema import DDL, WRITER_PRAGMAS, count_rows
from replicator.validation.errors import MigrateError

_ENTITY_COLUMNS: Final = (
    "id", "name", "entity_type", "observations", "confidence", "strength", "version", "created_at",
    "updated_at", "valid_from", "valid_to", "metadata",
)  # fmt: skip
_RELATION_COLUMNS: Final = (
    "id", "from_entity_id", "to_entity_id", "relation_type", "strength", "confidence", "created_at",
    "updated_at", "valid_from", "valid_to", "metadata",
)  # fmt: skip
_EMBEDDING_COLUMNS: Final = ("entity_id", "embedding", "model_version", "created_at")
_REQUIRED: Final = {
    "entities": ("id", "name", "entity_type", "observations", "created_at", "updated_at"),
    "relations": ("id", "from_entity_id", "to_entity_id", "relation_type", "created_at", "updated_at"),
    "embeddings": ("entity_id", "vector_b64", "created_at"),
}
_INTS: Final = {"id", "from_entity_id", "to_entity_id", "entity_id", "version", "created_at", "updated_at",
                "valid_from", "valid_to"}  # fmt: skip
_FLOATS: Final = {"confidence", "strength"}
_TEXTS: Final = {"name", "entity_type", "relation_type", "model_version", "metadata"}


@dataclass(frozen=True)
class ImportResult:
    created_store: bool
    inserted: dict[str, int]
    skipped: dict[str, int]  # identical rows already present (merge)


def _bad(hint: str, message: str) -> MigrateError:
    return MigrateError(message, hint=hint)


def load_document(path: Path) -> dict[str, Any]:
    """Read and parse an export file. Raises MigrateError naming the line and column of bad JSON."""
    if str(path) != "-" and not path.is_file():
        raise MigrateError(f"no export file at {path}", hint="pass the file written by `replicator export`")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrateError(f"cannot read {path}: {exc}", hint="pass a UTF-8 JSON export") from exc
    return parse_document(text, str(path))


def parse_document(text: str, source: str = "<input>") -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MigrateError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint="pass the file written by `replicator export`, unmodified",
        ) from exc
    check_document(doc, source)
    return doc  # type: ignore[no-any-return]


def _check_value(where: str, name: str, value: Any) -> None:  # noqa: ANN401 - JSON
    hint = "fix the entry or re-export the store"
    if value is None:
        if name in _REQUIRED["entities"] + _REQUIRED["relations"] + _REQUIRED["embeddings"]:
            raise _bad(hint, f"{where}.{name} is null")
        return
    if name in _INTS and (isinstance(value, bool) or not isinstance(value, int)):
        raise _bad(hint, f"{where}.{name} must be an integer, not {json.dumps(value)[:40]}")
    if name in _FLOATS and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _bad(hint, f"{where}.{name} must be a number, not {json.dumps(value)[:40]}")
    if name in _TEXTS and not isinstance(value, str):
        raise _bad(hint, f"{where}.{name} must be a string, not {json.dumps(value)[:40]}")
    if name == "observations" and not (
        isinstance(value, str) or (isinstance(value, list) and all(isinstance(o, str) for o in value))
    ):
        raise _bad(hint, f"{where}.observations must be a list of strings")


def check_document(doc: Any, source: str = "<input>") -> None:  # noqa: ANN401 - untrusted JSON
    """Validate shape, types, unique ids and names, and that relations and embeddings point at
    entities of the file. Raises MigrateError for the first problem."""
    if not isinstance(doc, dict):
        raise _bad(_HINT, f"{source}: the document must be a JSON object with entities and relations")
    _check_metadata(doc.get("metadata"), source)
    for section in ("entities", "relations"):
        if not isinstance(doc.get(section), list):
            raise _bad(_HINT, f"{source}: {section!r} is missing or not a list")
    if "embeddings" in doc and not isinstance(doc["embeddings"], list):
        raise _bad(_HINT, f"{source}: 'embeddings' is not a list")
    for section in ("entities", "relations", "embeddings"):
        for i, row in enumerate(doc.get(section) or []):
            _check_row(section, i, row, source)
    ids = _check_entities(doc["entities"], source)
    _check_relations(doc["relations"], ids, source)
    _check_embeddings(doc.get("embeddings") or [], ids, source)


_HINT: Final = "pass the file written by `replicator export`"


def _check_metadata(meta: object, source: str) -> None:
    if not isinstance(meta, dict):
        return
    if meta.get("format", FORMAT) != FORMAT:
        raise _bad(_HINT, f"{source}: metadata.format is {meta.get('format')!r}, not {FORMAT!r}")
    version = meta.get("version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise _bad(
            "upgrade replicator",
            f"{source}: export format version {version} is newer than this replicator's ({FORMAT_VERSION})",
        )


def _check_row(section: str, i: int, row: object, source: str) -> None:
    where = f"{source}: {section}[{i}]"
    if not isinstance(row, dict):
        raise _bad(_HINT, f"{where} is not an object")
    for name in _REQUIRED[section]:
        if name not in row:
            raise _bad(_HINT, f"{where} has no {name!r}")
    for name, value in row.items():
        _check_value(where, name, value)


def _check_entities(entities: list[dict[str, Any]], source: str) -> set[int]:
    ids: set[int] = set()
    names: set[str] = set()
    for i, e in enumerate(entities):
        if e["id"] in ids:
            raise _bad(_HINT, f"{source}: entities[{i}].id {e['id']} appears twice")
        if e["name"] in names:
            raise _bad(_HINT, f"{source}: entities[{i}].name {e['name']!r} appears twice (names are unique)")
        ids.add(e["id"])
        names.add(e["name"])
    return ids


def _check_relations(relations: list[dict[str, Any]], ids: set[int], source: str) -> None:
    rel_ids: set[int] = set()
    triples: set[tuple[int, int, str]] = set()
    for i, r in enumerate(relations):
        for end in ("from_entity_id", "to_entity_id"):
            if r[end] not in ids:
                raise _bad(_HINT, f"{source}: relations[{i}].{end} {r[end]} is not an entity of the file")
        triple = (r["from_entity_id"], r["to_entity_id"], r["relation_type"])
        if r["id"] in rel_ids or triple in triples:
            raise _bad(_HINT, f"{source}: relations[{i}] (id {r['id']}) duplicates another relation")
        rel_ids.add(r["id"])
        triples.add(triple)


def _check_embeddings(embeddings: list[dict[str, Any]], ids: set[int], source: str) -> None:
    seen: set[int] = set()
    for i, emb in enumerate(embeddings):
        where = f"{source}: embeddings[{i}]"
        if emb["entity_id"] not in ids:
            raise _bad(_HINT, f"{where}.entity_id {emb['entity_id']} is not an entity of the file")
        if emb["entity_id"] in seen:
            raise _bad(_HINT, f"{where}.entity_id {emb['entity_id']} appears twice")
        seen.add(emb["entity_id"])
        try:
            base64.b64decode(emb["vector_b64"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise _bad(_HINT, f"{where}.vector_b64 is not base64 ({exc})") from exc


def _entity_row(e: Mapping[str, Any]) -> tuple[Any, ...]:
    obs = e["observations"]
    values = {
        "confidence": 1.0, "strength": 1.0, "version": 1, "valid_from": None, "valid_to": None, "metadata": None,
        **e,
        "observations": obs if isinstance(obs, str) else json.dumps(obs),
    }  # fmt: skip
    return tuple(values[c] for c in _ENTITY_COLUMNS)


def _relation_row(r: Mapping[str, Any]) -> tuple[Any, ...]:
    values = {"strength": 1.0, "confidence": 1.0, "valid_from": None, "valid_to": None, "metadata": None, **r}
    return tuple(values[c] for c in _RELATION_COLUMNS)


def _embedding_row(e: Mapping[str, Any]) -> tuple[Any, ...]:
    return (e["entity_id"], base64.b64decode(e["vector_b64"]), e.get("model_version") or "all-MiniLM-L6-v2",
            e["created_at"])  # fmt: skip


def _insert(
    conn: sqlite3.Connection, table: str, key: str, columns: Sequence[str], rows: list[tuple[Any, ...]], *, merge: bool
) -> tuple[int, int]:
    """Insert rows; with merge, skip identical rows already present and fail on a conflicting one."""
    inserted = skipped = 0
    select = f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = ?"
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    for row in rows:
        if merge:
            present = conn.execute(select, (row[0],)).fetchone()
            if present is not None:
                if tuple(present) != row:
                    raise MigrateError(
                        f"{table} {key} {row[0]} already exists in the store with other content",
                        hint="import into an empty store, or remove the conflicting rows; nothing was written",
                    )
                skipped += 1
                continue
        try:
            conn.execute(insert, row)
        except sqlite3.IntegrityError as exc:
            raise MigrateError(
                f"{table} {key} {row[0]} conflicts with the store ({exc})",
                hint="a unique name or (from, to, type) is taken by another row; nothing was written",
            ) from exc
        inserted += 1
    return inserted, skipped


def import_document(
    store_path: Path, doc: dict[str, Any], *, merge: bool = False, timeout_s: float = 5.0
) -> ImportResult:
    """Write an export into the store (checked first), in one IMMEDIATE transaction. Raises
    MigrateError (bad document, non-empty store without merge, conflicts, locked store); on error the
    store is as it was, and a store file this call created is removed."""
    check_document(doc)
    if store_path.is_dir():
        raise MigrateError(f"{store_path} is a directory", hint="pass the store file, e.g. ./data/memory.db")
    created = not store_path.exists()
    try:
        conn = _open(store_path, created=created, timeout_s=timeout_s)
        try:
            counts = _write(conn, store_path, doc, merge=merge)
        finally:
            conn.close()
    except BaseException:
        if created:  # a failed import into a new path leaves no file behind
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{store_path}{suffix}").unlink(missing_ok=True)
        raise
    return ImportResult(
        created_store=created,
        inserted={t: c[0] for t, c in counts.items()},
        skipped={t: c[1] for t, c in counts.items()},
    )


def _open(store_path: Path, *, created: bool, timeout_s: float) -> sqlite3.Connection:
    """A writer-like connection (the writer's pragmas); refuses a SQLite file that is another app's."""
    try:
        conn = sqlite3.connect(store_path, timeout=timeout_s, isolation_level=None)
        for pragma in WRITER_PRAGMAS:
            conn.execute(pragma)
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise MigrateError(f"{store_path} is not a SQLite database ({exc})", hint="check --db") from exc
    if not created and tables and not {"entities", "relations", "embeddings"} <= tables:
        conn.close()
        raise MigrateError(
            f"{store_path} is SQLite but not a Caxton memory store",
            hint="import into a new path or an existing memory.db",
        )
    return conn


def _refuse_non_empty(conn: sqlite3.Connection, store_path: Path) -> None:
    held = sum(count_rows(conn, ("entities", "relations")).values())
    if held:
        raise MigrateError(
            f"{store_path} already holds {held} entities and relations",
            hint="import into a new or empty store, or pass --merge to add what is missing",
        )


def _write(
    conn: sqlite3.Connection, store_path: Path, doc: dict[str, Any], *, merge: bool
) -> dict[str, tuple[int, int]]:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise MigrateError(f"{store_path} is locked ({exc})", hint="retry when the writer is idle") from exc
    try:
        for statement in DDL.split(";"):
            if statement.strip():
                conn.execute(statement)  # not executescript: it would commit our transaction
        if not merge:
            _refuse_non_empty(conn, store_path)
        entities = [_entity_row(e) for e in doc["entities"]]
        relations = [_relation_row(r) for r in doc["relations"]]
        embeddings = [_embedding_row(e) for e in doc.get("embeddings") or []]
        counts = {
            "entities": _insert(conn, "entities", "id", _ENTITY_COLUMNS, entities, merge=merge),
            "relations": _insert(conn, "relations", "id", _RELATION_COLUMNS, relations, merge=merge),
            "embeddings": _insert(conn, "embeddings", "entity_id", _EMBEDDING_COLUMNS, embeddings, merge=merge),
        }
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return counts
