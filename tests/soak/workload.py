"""The soak's warehouse: a seeded table of contacts that changes between runs, and what a
correct destination must have made of it.

``Warehouse(seed).snapshot(final=...)`` returns the next state of the source table (a new
``Snapshot`` each call): contacts keep their email (the key) and change their values; new ones
arrive; some keys appear several times in one load (the last row is the contact's value, the
earlier ones are decoys, valid or not); and bad rows are mixed in: invalid and look-alike
emails, rows without an email, too-long names, NaN and infinite numbers, text that is not
UTF-8. In every snapshot but the final one, a few real contacts also have an invalid last row
(they are refused in that load and keep their earlier value). A good contact's last row always
has every field set, so the emulator's merge of successive versions equals the last one.

``Snapshot.expected_contacts`` is what the emulator must hold for the snapshot's contacts once
it is loaded (lower-cased email -> fields), ``Snapshot.refused_rows`` every row the load must
reject (row number -> contact key, ``None`` without an email): the invalid rows that are their
key's last row. The rules are the README's: emails trimmed and lower-cased (ASCII letters
only), last row wins before validation, names at most 50 characters, Numbers finite.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pyarrow as pa

from sendgrid_destination.contact_model import EMAIL_RE, FieldType

# The mapping the soak loads with, and the custom fields it names (created up front).
MAPPING = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "custom_fields": {"score": "score", "plan": "plan"},
}
CUSTOM_FIELDS: dict[str, FieldType] = {"score": "Number", "plan": "Text"}

SCHEMA = pa.schema(
    [
        ("email", pa.string()),
        ("first_name", pa.string()),
        ("last_name", pa.string()),
        ("score", pa.float64()),
        ("plan", pa.string()),
    ]
)

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzéüñ日本😀 '-"
PLANS = ("free", "pro", "team", "enterprise", 'pro "annual"', "été")
BLANKS = (" ", "\t", "\u00a0")
BAD_EMAILS = ("nobody", "a@b", "x y@z.co", "@x.co", "a@x.c", "a@@x.co", "trailing@dot.")
# Non-ASCII look-alikes of real keys (the Kelvin sign, a dotted capital I): refused, never
# folded onto kate@ or info@.
LOOK_ALIKES = ("\u212aate@example.com", "\u0130nfo@example.com")
NOT_UTF8 = (b"B\xff\xfeb", b"\xc3\x28", b"ok\xed\xa0\x80")


@dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    score: float
    plan: str


@dataclass
class Row:
    email: str | None
    first_name: str | bytes | None  # bytes: not valid UTF-8
    last_name: str | None
    score: float | None
    plan: str | None

    @property
    def key(self) -> str | None:
        """The contact key the destination computes: trimmed, ASCII letters lower-cased."""
        if self.email is None:
            return None
        cleaned = self.email.strip("".join(BLANKS) + "\n\r\f\v")
        ascii_lower = cleaned.translate(str.maketrans(_UPPER, _UPPER.lower()))
        return f"email:{ascii_lower}" if ascii_lower else None

    @property
    def valid(self) -> bool:
        key = self.key
        email = key.removeprefix("email:") if key else None
        return (
            email is not None
            and EMAIL_RE.fullmatch(email) is not None
            and len(email) <= 254
            and not isinstance(self.first_name, bytes)
            and len(self.first_name or "") <= 50
            and len(self.last_name or "") <= 50
            and (self.score is None or math.isfinite(self.score))
        )


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# What the README trims from names: surrounding whitespace, no-break spaces included.
_NAME_BLANKS = " \t\n\r\f\v\u00a0"


def _as_sent(person: Person) -> Person:
    """A person as SendGrid holds them after a sync: names trimmed (a name may end in a blank)."""
    first, last = person.first_name.strip(_NAME_BLANKS), person.last_name.strip(_NAME_BLANKS)
    return Person(first, last, person.score, person.plan)


@dataclass
class Snapshot:
    number: int
    rows: list[Row]
    expected_contacts: dict[str, Person]
    refused_rows: dict[int, str | None] = field(default_factory=dict)

    def table(self) -> pa.Table:
        names = [
            r.first_name if isinstance(r.first_name, bytes | None) else r.first_name.encode()
            for r in self.rows
        ]
        return pa.table(
            {
                "email": pa.array([r.email for r in self.rows], pa.string()),
                "first_name": pa.array(names, pa.binary()).view(pa.string()),
                "last_name": pa.array([r.last_name for r in self.rows], pa.string()),
                "score": pa.array([r.score for r in self.rows], pa.float64()),
                "plan": pa.array([r.plan for r in self.rows], pa.string()),
            },
            schema=SCHEMA,
        )


class Warehouse:
    """The source table over time; every change comes from one seeded ``random.Random``."""

    def __init__(self, seed: int, contacts: int, bad_keys: int = 12) -> None:
        self.rng = random.Random(seed)
        self.people: dict[str, Person] = {}
        self.bad_keys = bad_keys
        self.snapshots = 0
        for email in ("kate@example.com", "info@example.com"):
            self.people[email] = self._person()
        self._add_people(contacts - len(self.people))

    def snapshot(self, *, final: bool = False) -> Snapshot:
        """The next state of the table (the final one has no real contact refused)."""
        self.snapshots += 1
        self._add_people(self.rng.randint(3, 12))
        self._change_people(self.rng.uniform(0.03, 0.15))
        rows: list[Row] = []
        decoys_first = []
        refused_people: set[str] = set()
        for email, person in self.people.items():
            if self.rng.random() < 0.04:
                decoys_first.append(self._decoy(email))
            if self.rng.random() < 0.04:
                rows.append(self._decoy(email))
            if not final and self.rng.random() < 0.03:
                rows.append(self._broken(self._spelled(email), person))
                refused_people.add(email)
            else:
                rows.append(self._row(self._spelled(email), person))
        rows = decoys_first + rows
        for bad in self._bad_rows():
            rows.insert(self.rng.randint(0, len(rows)), bad)
        snapshot = Snapshot(self.snapshots, rows, {})
        last = {row.key: i for i, row in enumerate(rows) if row.key is not None}
        for i, row in enumerate(rows):
            if row.key is not None and last[row.key] != i:
                continue  # superseded by its key's last row: neither sent nor refused
            if not row.valid:
                snapshot.refused_rows[i] = row.key
        snapshot.expected_contacts = {
            e: _as_sent(p) for e, p in self.people.items() if e not in refused_people
        }
        return snapshot

    # -- values ------------------------------------------------------------------------------

    def _person(self) -> Person:
        return Person(
            self._text(1, 50),
            self._text(1, 50),
            float(self.rng.randint(-(10**6), 10**6)) / 100,
            self.rng.choice(PLANS),
        )

    def _text(self, low: int, high: int) -> str:
        # Never blank after trimming (a blank name would be omitted, not sent).
        return "x" + "".join(self.rng.choices(NAME_CHARS, k=self.rng.randint(low, high) - 1))

    def _add_people(self, count: int) -> None:
        start = len(self.people)
        for i in range(start, start + count):
            self.people[f"user{i}@example.com"] = self._person()

    def _change_people(self, share: float) -> None:
        for email in self.rng.sample(sorted(self.people), int(len(self.people) * share)):
            old = self.people[email]
            new = self._person()
            # Some changes touch one field only.
            if self.rng.random() < 0.5:
                new = Person(old.first_name, old.last_name, new.score, old.plan)
            self.people[email] = new

    def _spelled(self, email: str) -> str:
        """The same address as the warehouse might hold it: capitals, surrounding blanks."""
        if self.rng.random() < 0.8:
            return email
        cased = "".join(c.upper() if self.rng.random() < 0.5 else c for c in email)
        return self.rng.choice(BLANKS) + cased + self.rng.choice(("", " "))

    def _row(self, email: str | None, person: Person) -> Row:
        return Row(email, person.first_name, person.last_name, person.score, person.plan)

    def _decoy(self, email: str) -> Row:
        """An earlier row of a real key: valid or not, it must lose to the key's last row."""
        person = self._person()
        row = self._row(self._spelled(email), person)
        return self._broken(row.email, person) if self.rng.random() < 0.5 else row

    def _broken(self, email: str | None, person: Person) -> Row:
        row = self._row(email, person)
        kind = self.rng.choice(("long_name", "long_last", "nan", "inf", "not_utf8"))
        if kind == "long_name":
            row.first_name = "y" * self.rng.randint(51, 80)
        elif kind == "long_last":
            row.last_name = "z" * self.rng.randint(51, 80)
        elif kind in ("nan", "inf"):
            row.score = math.nan if kind == "nan" else self.rng.choice((math.inf, -math.inf))
        else:
            row.first_name = self.rng.choice(NOT_UTF8)
        return row

    def _bad_rows(self) -> list[Row]:
        """Rows refused whatever else happens: keys that are never valid."""
        n = self.snapshots
        rows = [
            self._row(f"{self.rng.choice(BAD_EMAILS)}#{n}.{i}", self._person()) for i in range(3)
        ]
        rows += [self._row(email, self._person()) for email in LOOK_ALIKES]
        rows += [self._row(None, self._person()) for _ in range(2)]
        rows += [self._broken(f"bad{i}@example.net", self._person()) for i in range(self.bad_keys)]
        return rows
