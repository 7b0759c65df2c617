"""The lists contacts are put in, resolved against the account before any upsert.

SendGrid answers an upsert naming an unknown list with a 400 for the whole request, which no
split of the body can fix, so everything is checked once, from one read of every list
(``GET /v3/marketing/lists``, every page):

* ``list_ids`` must exist;
* list names (the ``lists`` setting, and every name a ``list_column`` uses) resolve to IDs by
  exact name. A name the account does not hold stops the run, naming it, unless
  ``create_missing_lists`` (then it is created); a name two lists share stops the run, naming
  both IDs (SendGrid allows it; which one was meant cannot be guessed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.errors import ConfigurationError

# SendGrid's: "You can create a maximum of 1000 lists"; a name is 1 to 100 characters.
MAX_LISTS = 1000
MAX_LIST_NAME = 100
# What an error shows of the names it cannot resolve.
_SHOWN_NAMES = 5
_SHOWN_CHARS = 40


@dataclass(frozen=True)
class ResolvedLists:
    """Every synced contact's list IDs, and the ID of each name a list column uses."""

    static_ids: tuple[str, ...] = ()
    ids_by_name: dict[str, str] | None = None
    created: tuple[str, ...] = ()  # names created by this run


def check_list_ids(client: SendGridClient, list_ids: Sequence[str]) -> None:
    resolve_lists(client, list_ids=list_ids)


def resolve_lists(
    client: SendGridClient,
    *,
    list_ids: Sequence[str] = (),
    names: Sequence[str] = (),
    column_names: Iterable[str] = (),
    create_missing: bool = False,
) -> ResolvedLists:
    """``list_ids`` checked, ``names`` (every contact's) and ``column_names`` (a list
    column's) resolved to IDs; see the module docstring for what stops the run."""
    wanted = sorted(set(names) | set(column_names))
    if not list_ids and not wanted:
        return ResolvedLists()
    by_name: defaultdict[str, list[str]] = defaultdict(list)
    known: set[str] = set()
    for lst in client.lists():
        known.add(lst.id)
        by_name[lst.name].append(lst.id)
    _check_ids(list_ids, known)
    _check_unique(wanted, by_name)
    missing = [name for name in wanted if name not in by_name]
    if missing and not create_missing:
        raise ConfigurationError(
            f"List(s) not found in this SendGrid account: {_shown(missing, set(names))}. "
            "Create them in SendGrid (Marketing > Contacts > Lists), correct the names (they "
            "must match exactly, case included), or set create_missing_lists = true."
        )
    _check_creatable(missing, len(known))
    ids = {name: by_name[name][0] for name in wanted if name in by_name}
    for name in missing:
        ids[name] = client.create_list(name).id
    static = dict.fromkeys([*list_ids, *(ids[n] for n in names)])
    return ResolvedLists(tuple(static), {n: ids[n] for n in column_names}, tuple(missing))


def _check_ids(list_ids: Sequence[str], known: set[str]) -> None:
    missing = [list_id for list_id in list_ids if list_id not in known]
    if missing:
        raise ConfigurationError(
            f"list_ids not found in this SendGrid account: {', '.join(missing)}. Copy the "
            "IDs from Marketing > Contacts > Lists (the ID is in the list's URL)."
        )


def _check_unique(wanted: Sequence[str], by_name: dict[str, list[str]]) -> None:
    shared = {name: by_name[name] for name in wanted if len(by_name.get(name, ())) > 1}
    if shared:
        detail = "; ".join(f"{name!r}: {', '.join(ids)}" for name, ids in shared.items())
        raise ConfigurationError(
            f"Several lists of this account have the same name ({detail}). Rename all but "
            "one in SendGrid, or name the list by its ID in list_ids."
        )


def _check_creatable(missing: Sequence[str], existing: int) -> None:
    """Refuse, before creating any, lists SendGrid would refuse part-way: a name over 100
    characters, or more lists than an account may hold (a list column naming the wrong
    column, e.g. of emails, would otherwise create a list per row)."""
    too_long = sum(len(name) > MAX_LIST_NAME for name in missing)
    if too_long:
        raise ConfigurationError(
            f"{too_long} list name(s) to create are longer than SendGrid's {MAX_LIST_NAME} "
            "characters: check that list_column names the column of list names."
        )
    if existing + len(missing) > MAX_LISTS:
        raise ConfigurationError(
            f"{len(missing)} lists to create, beside the account's {existing}, exceed "
            f"SendGrid's {MAX_LISTS} lists per account; nothing was created. Check that "
            "list_column names the column of list names."
        )


def _shown(names: Sequence[str], configured: set[str]) -> str:
    """The names, the first few only and each cut short: names a list column holds are data,
    and a column named by mistake (of emails, say) must not pour into a log line. A name from
    the rows that looks like an email address or a phone number is counted, never shown."""
    private = [n for n in names if n not in configured and _personal(n)]
    shown = [
        repr(n if len(n) <= _SHOWN_CHARS else n[:_SHOWN_CHARS] + "...")
        for n in names
        if n not in private
    ]
    more = len(shown) - _SHOWN_NAMES
    text = ", ".join(shown[:_SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")
    if private:
        text += (
            f"{'; and ' if shown else ''}{len(private)} name(s) that look like email addresses "
            "or phone numbers, not shown (check that list_column names the column of list "
            "names)"
        )
    return text


def _personal(name: str) -> bool:
    """Whether a name from the rows looks like an email address or a phone number."""
    if "@" in name:
        return True
    digits = sum(c.isdigit() for c in name)
    return digits >= 7 and all(c.isdigit() or c in "+-(). " for c in name)
