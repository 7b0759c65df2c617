"""``ours_in`` finds one of our errors that dlt wrapped, and never takes a bug raised while
one of ours was being handled for ours: its message would hide the bug (and the CLI's log
filter would drop the bug's traceback)."""

from __future__ import annotations

import pytest
from dlt.common.exceptions import DltException

from sendgrid_destination.errors import AuthenticationError, SendGridError, ours_in


def _raised(make: object) -> BaseException:
    try:
        make()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")


def _ours() -> None:
    raise AuthenticationError("SendGrid refused the API key")


def _wrapped_by_dlt_as_cause() -> None:
    try:
        _ours()
    except SendGridError as exc:
        raise DltException("job failed") from exc


def _wrapped_by_dlt_while_handled() -> None:
    try:
        _ours()
    except SendGridError:
        raise DltException("job failed")  # noqa: B904 (as a wrapper may)


def _a_bug_while_ours_was_handled() -> None:
    try:
        _ours()
    except SendGridError:
        None.missing  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize("make", [_ours, _wrapped_by_dlt_as_cause, _wrapped_by_dlt_while_handled])
def test_our_error_is_found_however_dlt_wrapped_it(make: object) -> None:
    assert isinstance(ours_in(_raised(make)), AuthenticationError)


def test_a_bug_raised_while_one_of_our_errors_was_handled_is_not_ours() -> None:
    failure = _raised(_a_bug_while_ours_was_handled)

    assert isinstance(failure, AttributeError)
    assert ours_in(failure) is None
    # Wrapped by dlt, it is still the bug that the chain names.
    try:
        raise DltException("job failed") from failure
    except DltException as wrapped:
        assert ours_in(wrapped) is None
