"""Schema 8 keeps a content hash as a number: the lower 64 bits of the MD5 that schemas 5 to 7
kept as 32 hex digits. Opening an older file converts its digests in place, exactly, in both
tables that hold them, and leaves the SHA-256s of files before schema 5 as text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pyarrow as pa

from sendgrid_destination.state import SCHEMA_VERSION, StateStore
from tests.planning import content_digest

TEXTS = [f'\n{{"email":"u{i}@x.co"}},' for i in range(5)]
KEYS = [f"email:u{i}@x.co" for i in range(5)]


def _rendered(n: int) -> pa.Table:
    """``RENDERED``-like rows for ``record_sent`` and ``defer``."""
    return pa.table(
        {
            "row_number": pa.array(range(n), pa.int64()),
            "contact_key": KEYS[:n],
            "fingerprint": pa.array(range(n), pa.uint64()),
            "is_new": [True] * n,
            "contact_json": [t[1:] for t in TEXTS[:n]],
            "content_hash": pa.array([content_digest(t) for t in TEXTS[:n]], pa.uint64()),
            "ids": pa.nulls(n, pa.string()),
            "list_scope": [""] * n,
        }
    )


def _as_schema_7(path: Path, sha256_keys: list[str]) -> None:
    """The file as schema 7 left it: hex MD5s (a SHA-256 for ``sha256_keys``, as a file of
    schema 4 left them), no ``content_md5``, deferred hashes as text."""
    hexes = {k: hashlib.md5(t.encode()).hexdigest() for k, t in zip(KEYS, TEXTS, strict=True)}
    hexes |= {k: hashlib.sha256(b"old").hexdigest() for k in sha256_keys}
    con = duckdb.connect(str(path))
    try:
        con.register("hexes", pa.table({"k": list(hexes), "h": list(hexes.values())}))
        for sql in (
            "UPDATE contacts SET content_hash = h FROM hexes WHERE contact_key = k",
            "DROP VIEW contact_status",
            "ALTER TABLE contacts DROP COLUMN content_md5",
            "ALTER TABLE deferred ALTER content_hash TYPE VARCHAR USING NULL",
            "UPDATE deferred SET content_hash = h FROM hexes WHERE contact_key = k",
            "UPDATE meta SET value = '7' WHERE key = 'schema_version'",
        ):
            con.execute(sql)
    finally:
        con.close()


def test_the_hex_md5s_of_a_schema_7_file_become_the_numbers_the_render_computes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.duckdb"
    with StateStore.open(path) as store:
        store.record_sent(run_id="r1", stream="s", job_id="j1", contacts=_rendered(5), body_bytes=1)
        store.defer("r1", "s", _rendered(2))
    _as_schema_7(path, sha256_keys=[KEYS[4]])

    with StateStore.open(path) as store:
        contacts = store.con.execute(
            "SELECT contact_key, content_md5, content_hash FROM contacts ORDER BY contact_key"
        ).fetchall()
        deferred = store.deferred("s")
        version = store.con.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchall()

    digests = [content_digest(t) for t in TEXTS]
    assert contacts[:4] == [(k, d, None) for k, d in zip(KEYS[:4], digests, strict=False)]
    assert contacts[4] == (KEYS[4], None, hashlib.sha256(b"old").hexdigest())
    assert deferred["content_hash"].to_pylist() == digests[:2]
    assert version == [(str(SCHEMA_VERSION),)]


def test_a_file_already_at_schema_8_is_opened_without_touching_its_hashes(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    with StateStore.open(path) as store:
        store.record_sent(run_id="r1", stream="s", job_id="j1", contacts=_rendered(3), body_bytes=1)
    with StateStore.open(path) as store:
        rows = store.con.execute(
            "SELECT content_md5, content_hash FROM contacts ORDER BY contact_key"
        ).fetchall()

    assert rows == [(content_digest(t), None) for t in TEXTS[:3]]
