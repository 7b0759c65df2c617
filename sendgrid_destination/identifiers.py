"""SendGrid's identifier rule, applied to a load's checked rows before anything is sent.

"In order to update a contact, all of its existing identifiers must be present" (upsert
docs): a row that leaves out an identifier its contact has would fail in the job on every
run. The state knows, for contacts sent with several identifiers, every identifier SendGrid
accepted (``identities``). ``resolve_sql`` matches each row to such a contact by any of its
identifiers and gives:

* ``contact_key``: the key the contact is tracked by (stable when a row reaches it through
  another identifier, e.g. the same ``external_id`` and no email); a row matching several
  contacts (``ambiguous``) is refused and stands for none of them: it takes no part in
  "last row wins", and every contact it matches is kept from deletion (``Plan``); its key,
  that of the contact its first identifier matches, only names it in its reject;
* ``fill_<identifier>``: an identifier the contact has and the row leaves empty, taken from
  the state (``fill_missing_identifiers = true``, the default; when false the row is refused,
  naming the identifier);
* ``id_problem`` / ``id_column``: why the row is refused, for rows SendGrid would fail for
  good: an identifier with another value than the contact's (an upsert cannot change an
  identifier: "an email change creates a new contact"), or identifiers of two different
  contacts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sendgrid_destination.contact_model import IDENTIFIER_CHANGE, IDENTIFIERS
from sendgrid_destination.contact_sql import fill_column, ident, literal


@dataclass(frozen=True)
class IdentifierPolicy:
    fill_missing: bool
    columns: Mapping[str, str]  # mapped identifier field -> its source column

    def resolve_sql(self, matched: str) -> str:
        """Over ``matched`` (a load's checked rows with ``known_key``, ``k_<identifier>`` and
        ``matches`` from ``StateStore.identities_sql``): the rows resolved (see module doc)."""
        problems = self._problems()
        fills = ", ".join(
            f"CASE WHEN i_{n} IS NULL THEN k_{n} END AS {ident(fill_column(n))}"
            if self.fill_missing
            else f"NULL::VARCHAR AS {ident(fill_column(n))}"
            for n in IDENTIFIERS
        )
        dropped = ", ".join(
            ["contact_key", "ok", "known_key", "matches"]
            + [f"{p}_{n}" for p in ("i", "k") for n in IDENTIFIERS]
        )
        return (
            f"SELECT * EXCLUDE ({dropped}), {_tracked_key()} AS contact_key, "
            f"ok AND id_problem IS NULL AS ok, matches > 1 AS ambiguous, {fills} FROM (SELECT *, "
            f"CASE WHEN ok THEN {_first(problems, 1)} END AS id_problem, "
            f"CASE WHEN ok THEN {_first(problems, 2)} END AS id_column "
            f"FROM {ident(matched)})"
        )

    def _problems(self) -> list[tuple[str, str, str]]:
        """(condition, reason, column) of each way a row breaks the rule, in order."""
        found = [
            (
                "matches > 1",
                "identifiers: they belong to different contacts in SendGrid, which refuses "
                "such a row; correct the identifiers",
                ", ".join(self.columns.values()),
            )
        ]
        for name in IDENTIFIERS:
            column = self.columns.get(name, "")
            found.append(
                (
                    f"k_{name} IS NOT NULL AND i_{name} IS NOT NULL AND k_{name} <> i_{name}",
                    f"{name}: the contact has another {name} in SendGrid (matched by another "
                    f"identifier) and {IDENTIFIER_CHANGE}: remove the old one in SendGrid "
                    "first (DELETE /v3/marketing/contacts/{id}/identifiers)",
                    column,
                )
            )
            if not self.fill_missing:
                found.append(
                    (
                        f"k_{name} IS NOT NULL AND i_{name} IS NULL",
                        f"{name}: the contact has this identifier in SendGrid and the row "
                        "leaves it empty (fill_missing_identifiers is off), so SendGrid "
                        "would refuse the update",
                        column,
                    )
                )
        return found


def _tracked_key() -> str:
    """A row takes the key of the contact it matches. A row matching several (one carries
    another contact's identifier: a data error) is refused; its ``known_key`` is the one its
    first identifier matches (``StateStore.own_keys_sql``), or none. Whichever it is, the
    row may be another contact's, so it must not decide for it: see the module doc."""
    return "coalesce(known_key, contact_key)"


def _first(problems: list[tuple[str, str, str]], part: int) -> str:
    whens = " ".join(f"WHEN {p[0]} THEN {literal(p[part])}" for p in problems)
    return f"CASE {whens} END"
