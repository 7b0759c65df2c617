"""SendGridClient against the emulator over real loopback HTTP, on a shared FakeClock."""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from dlt.common.destination.exceptions import (
    DestinationTerminalException,
    DestinationTransientException,
)

from sendgrid_destination._version import __version__
from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.models import CustomField
from sendgrid_destination.clock import FakeClock
from sendgrid_destination.emulator import RateLimit
from sendgrid_destination.errors import (
    AuthenticationError,
    BodyTooLargeError,
    ContactsRejectedError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestRejectedError,
    SendGridError,
    ServerError,
    TransportError,
)

PUT = "PUT /v3/marketing/contacts"
IMPORTS = "GET /v3/marketing/contacts/imports/{id}"
LISTS = "GET /v3/marketing/lists"
TEMPORARY_BLOCK = {"errors": [{"field": None, "message": "Too many bad requests. Temporary block"}]}
EMAIL_LIKE = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)*")

MakeClient = Callable[..., SendGridClient]


def body_for(*emails: str) -> bytes:
    return json.dumps({"contacts": [{"email": email} for email in emails]}).encode()


def statuses(emu: Any, route: str = PUT) -> list[int | None]:
    return [r.status for r in emu.requests if r.route == route]


def poll_until_terminal(client: SendGridClient, job_id: str) -> list[str]:
    seen = []
    for _ in range(10):
        job = client.import_status(job_id)
        seen.append(job.status)
        if job.is_terminal:
            return seen
    raise AssertionError(f"job never finished: {seen}")


# --- success path and headers ---------------------------------------------------------------


def test_an_accepted_upsert_returns_the_job_id_from_the_202(
    emu: Any, client: SendGridClient
) -> None:
    body = body_for("a@x.com", "b@x.com")
    job_id = client.upsert_contacts(body)
    assert job_id in {job["id"] for job in emu.jobs()}
    [request] = emu.requests
    assert (request.route, request.status, request.contact_count) == (PUT, 202, 2)
    assert request.body_bytes == len(body)
    assert client.stats.requests_by_route[PUT] == 1
    assert client.stats.bytes_sent == len(body)
    assert client.stats.responses_by_status[202] == 1


def test_api_requests_carry_user_agent_accept_content_type_and_on_behalf_of(
    emu: Any, make_client: MakeClient
) -> None:
    client = make_client(emu.base_url, on_behalf_of="subuser-1")
    client.upsert_contacts(body_for("a@x.com"))
    headers = {k.lower(): v for k, v in emu.requests[0].headers.items()}
    assert headers["user-agent"] == f"sendgrid-destination/{__version__}"
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"
    assert headers["on-behalf-of"] == "subuser-1"


# --- rate limits ----------------------------------------------------------------------------


class CompetingClock:
    """Every time the client wakes up, a competing process grabs the new window first."""

    def __init__(self, clock: FakeClock, competitor: Callable[[], object], wakes: int) -> None:
        self._clock = clock
        self._competitor = competitor
        self._wakes_left = wakes

    def now(self) -> float:
        return self._clock.now()

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)
        if self._wakes_left > 0:
            self._wakes_left -= 1
            self._competitor()


def test_a_429_storm_waits_until_each_reset_then_succeeds(
    start_emulator: Callable[..., Any],
    make_client: MakeClient,
    clock: FakeClock,
    replica: Callable[[], random.Random],
) -> None:
    # 30 s windows: a 60 s one plus jitter would be clamped to max_backoff_seconds (60).
    emu = start_emulator(rate_limits={PUT: RateLimit(limit=1, window_seconds=30)})
    competitor = make_client(emu.base_url)
    competitor.upsert_contacts(body_for("other@x.com"))  # spends the first window
    client = make_client(
        emu.base_url,
        clock=CompetingClock(clock, lambda: competitor.upsert_contacts(body_for("o@x.com")), 3),
    )
    start = clock.now()

    client.upsert_contacts(body_for("a@x.com"))

    assert statuses(emu) == [202, 429, 202, 429, 202, 429, 202, 429, 202]
    # Each 429 said "reset at the end of this window": we woke just after, plus jitter < 1 s.
    jitter, now, expected = replica(), start, []
    for _ in range(4):
        reset = (now // 30 + 1) * 30
        expected.append(reset - now + jitter.uniform(0.0, 1.0))
        now += expected[-1]
    assert clock.sleeps == pytest.approx(expected)
    assert client.stats.rate_limit_wait_seconds == pytest.approx(sum(expected))
    assert client.stats.retries == 4


@pytest.mark.parametrize(
    ("reset", "expected_ceilings"),
    [("5", None), ("soon", [1.0, 2.0])],
    ids=["delta-form-waits-that-many-seconds", "garbage-falls-back-to-backoff"],
)
def test_a_429_honours_a_delta_reset_and_backs_off_without_a_usable_one(
    reset: str,
    expected_ceilings: list[float] | None,
    emu: Any,
    client: SendGridClient,
    clock: FakeClock,
    replica: Callable[[], random.Random],
) -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    emu.faults.add(PUT, status=429, headers=headers, times=2)

    assert client.upsert_contacts(body_for("a@x.com"))

    rng = replica()
    if expected_ceilings is None:
        assert clock.sleeps == pytest.approx([5 + rng.uniform(0, 1), 5 + rng.uniform(0, 1)])
    else:
        assert clock.sleeps == [rng.uniform(0, ceiling) for ceiling in expected_ceilings]


def test_pacing_waits_for_the_reset_when_remaining_hits_zero_instead_of_drawing_a_429(
    start_emulator: Callable[..., Any], make_client: MakeClient, clock: FakeClock
) -> None:
    emu = start_emulator(rate_limits={PUT: RateLimit(limit=2, window_seconds=60)})
    client = make_client(emu.base_url)

    for email in ("a@x.com", "b@x.com", "c@x.com"):
        client.upsert_contacts(body_for(email))

    assert statuses(emu) == [202, 202, 202]
    assert clock.sleeps == [60.0]
    assert client.stats.rate_limit_wait_seconds == 60.0
    assert client.stats.retries == 0


def test_pacing_is_shared_by_threads_and_kept_per_route(
    start_emulator: Callable[..., Any], make_client: MakeClient, clock: FakeClock
) -> None:
    emu = start_emulator(
        rate_limits={PUT: RateLimit(limit=1, window_seconds=60)}, job_polls_until_done=1
    )
    client = make_client(emu.base_url)
    job_id = client.upsert_contacts(body_for("a@x.com"))

    client.import_status(job_id)  # another route's budget is untouched: no wait
    assert clock.sleeps == []

    worker = threading.Thread(target=client.upsert_contacts, args=(body_for("b@x.com"),))
    worker.start()
    worker.join(timeout=10)
    assert statuses(emu) == [202, 202]
    assert clock.sleeps == [60.0]


# --- server errors, transport failures and exhaustion ---------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504], ids=["500", "502", "503", "504"])
def test_a_5xx_burst_is_survived_with_exponential_backoff(
    status: int,
    emu: Any,
    client: SendGridClient,
    clock: FakeClock,
    replica: Callable[[], random.Random],
) -> None:
    emu.faults.add(PUT, status=status, times=3)

    job_id = client.upsert_contacts(body_for("a@x.com"))

    assert job_id
    assert statuses(emu) == [status, status, status, 202]
    rng = replica()
    assert clock.sleeps == [rng.uniform(0, 1), rng.uniform(0, 2), rng.uniform(0, 4)]
    assert client.stats.retries == 3
    assert client.stats.backoff_wait_seconds == pytest.approx(sum(clock.sleeps))
    assert client.stats.responses_by_status == {status: 3, 202: 1}


def test_dropped_connections_are_retried(
    emu: Any, client: SendGridClient, clock: FakeClock
) -> None:
    emu.faults.add(PUT, action="drop", times=2)

    assert client.upsert_contacts(body_for("a@x.com"))
    assert client.stats.transport_errors == 2
    assert len(clock.sleeps) == 2
    assert len(emu.jobs()) == 1


def test_a_response_lost_after_acceptance_is_resent_because_upserts_are_idempotent(
    emu: Any, client: SendGridClient
) -> None:
    emu.faults.add(PUT, action="drop_after", times=1)

    job_id = client.upsert_contacts(body_for("a@x.com"))

    assert len(emu.jobs()) == 2  # SendGrid saw it twice; the same data lands once
    assert job_id == emu.jobs()[-1]["id"]


CREATE_LIST = "POST /v3/marketing/lists"
CREATE_FIELD = "POST /v3/marketing/field_definitions"


def _create(client: SendGridClient, what: str) -> str:
    """Create the list VIP or the Text field tier; return its id."""
    if what == "list":
        return client.create_list("VIP").id
    return client.create_custom_field("tier", "Text").id


def _made(client: SendGridClient, what: str) -> list[str]:
    """The ids of the lists named VIP, or of the fields named tier, the account holds."""
    if what == "list":
        return [found.id for found in client.lists() if found.name == "VIP"]
    return [f.id for f in client.field_definitions().custom if f.name == "tier"]


@pytest.mark.parametrize("what", ["list", "field"])
@pytest.mark.parametrize("unique_names", [True, False], ids=["unique-names", "duplicates-allowed"])
def test_a_create_whose_answer_was_lost_is_looked_up_not_sent_again(
    start_emulator: Callable[..., Any], make_client: MakeClient, what: str, unique_names: bool
) -> None:
    # SendGrid created it, and the answer never arrived. Sent again blindly, the field was
    # refused as existing (the load failed) and a second list of the name was made.
    emu = start_emulator(unique_list_names=unique_names)
    client = make_client(emu.base_url)
    emu.faults.add(CREATE_LIST if what == "list" else CREATE_FIELD, action="drop_after")

    made = _create(client, what)

    assert _made(client, what) == [made]
    assert len(statuses(emu, CREATE_LIST if what == "list" else CREATE_FIELD)) == 1  # one POST


@pytest.mark.parametrize("what", ["list", "field"])
def test_a_create_answered_5xx_is_sent_again_only_once_nothing_was_made(
    emu: Any, client: SendGridClient, what: str
) -> None:
    route = CREATE_LIST if what == "list" else CREATE_FIELD
    emu.faults.add(route, status=500, times=2)

    made = _create(client, what)

    assert _made(client, what) == [made]
    assert statuses(emu, route) == [500, 500, 201 if what == "list" else 200]


def test_a_create_refused_as_existing_after_an_unknown_outcome_takes_the_one_made(
    emu: Any, client: SendGridClient
) -> None:
    # The first POST made the field but its answer was lost; the lookup after it did not
    # see the field yet (a stale answer), so the POST went again and was refused as
    # existing: the field is there, and the load must not fail.
    emu.faults.add(CREATE_FIELD, action="drop_after")
    stale = {"custom_fields": [], "reserved_fields": []}
    emu.faults.add("GET /v3/marketing/field_definitions", status=200, body=stale)

    made = client.create_custom_field("tier", "Text")

    assert _made(client, "field") == [made.id]
    assert statuses(emu, CREATE_FIELD)[1:] == [400]


def test_a_create_that_never_gets_an_answer_is_a_transient_error_after_three_posts(
    emu: Any, client: SendGridClient, clock: FakeClock
) -> None:
    emu.faults.add(CREATE_LIST, status=503, times=3)

    with pytest.raises(OutcomeUnknownError) as raised:
        client.create_list("VIP")

    assert isinstance(raised.value, DestinationTransientException)
    assert statuses(emu, CREATE_LIST) == [503, 503, 503]
    assert _made(client, "list") == []
    # Each unknown outcome waited the retry loop's backoff before looking, counted.
    assert len(clock.sleeps) == 3 and client.stats.retries == 3


def test_a_hanging_response_times_out_and_is_retried(
    emu: Any, make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client(emu.base_url, read_timeout=0.3)
    emu.faults.add(PUT, action="hang", times=1)

    started = time.monotonic()
    assert client.upsert_contacts(body_for("a@x.com"))

    assert time.monotonic() - started < 5
    assert client.stats.transport_errors == 1
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"status": 503}, ServerError),
        ({"status": 429}, RateLimitedError),
        ({"status": 403, "body": TEMPORARY_BLOCK}, RateLimitedError),
        ({"action": "drop"}, TransportError),
    ],
    ids=[
        "5xx-raises-server-error",
        "429-raises-rate-limited",
        "temporary-block-raises-rate-limited",
        "drops-raise-transport-error",
    ],
)
def test_retries_exhausted_raise_the_matching_transient_error(
    fault: dict[str, Any],
    error: type[SendGridError],
    emu: Any,
    make_client: MakeClient,
    clock: FakeClock,
) -> None:
    client = make_client(emu.base_url, max_attempts=3)
    emu.faults.add(PUT, times=10, **fault)

    with pytest.raises(error) as caught:
        client.upsert_contacts(body_for("a@x.com"))

    assert isinstance(caught.value, DestinationTransientException)
    assert caught.value.route == PUT
    assert len(emu.requests) == 3
    assert len(clock.sleeps) == 2


def test_a_temporary_block_403_is_transient_and_retried(
    emu: Any, client: SendGridClient, clock: FakeClock
) -> None:
    emu.faults.add(PUT, status=403, body=TEMPORARY_BLOCK, times=2)

    assert client.upsert_contacts(body_for("a@x.com"))
    assert statuses(emu) == [403, 403, 202]
    assert len(clock.sleeps) == 2


# --- terminal errors ------------------------------------------------------------------------


def test_a_401_is_terminal_and_names_the_settings_to_check(
    emu: Any, make_client: MakeClient, clock: FakeClock
) -> None:
    wrong_key = "SG.wrong-key-0123456789"
    client = make_client(emu.base_url, api_key=wrong_key)

    with pytest.raises(AuthenticationError) as caught:
        client.upsert_contacts(body_for("a@x.com"))

    message = str(caught.value)
    assert isinstance(caught.value, DestinationTerminalException)
    assert caught.value.status == 401
    for hint in (
        "DESTINATION__SENDGRID__API_KEY",
        "[destination.sendgrid]",
        ".dlt/secrets.toml",
        "https://api.eu.sendgrid.com",
        "On-Behalf-Of",
    ):
        assert hint in message
    assert wrong_key not in message and wrong_key not in repr(caught.value)
    assert len(emu.requests) == 1
    assert clock.sleeps == []


def test_a_scope_403_is_terminal_and_asks_for_marketing_full_access(
    start_emulator: Callable[..., Any], make_client: MakeClient, clock: FakeClock
) -> None:
    emu = start_emulator(forbidden_keys=["SG.read-only-key"])
    client = make_client(emu.base_url, api_key="SG.read-only-key")

    with pytest.raises(AuthenticationError, match=r"Marketing \(Full Access\)") as caught:
        client.upsert_contacts(body_for("a@x.com"))

    assert caught.value.status == 403
    assert len(emu.requests) == 1
    assert clock.sleeps == []


def test_a_400_with_contact_errors_maps_them_to_request_indexes_without_echoing_emails(
    emu: Any, client: SendGridClient
) -> None:
    contacts = [
        {"email": "ok@x.com"},
        {"email": "x@y"},
        {"email": "fine@x.com"},
        {"first_name": "N"},
    ]

    with pytest.raises(ContactsRejectedError) as caught:
        client.upsert_contacts(json.dumps({"contacts": contacts}).encode())

    error = caught.value
    assert sorted(error.errors_by_contact()) == [1, 3]
    assert error.errors_by_contact()[1][0].message == "email 'x@y' is not valid"
    assert error.unindexed_errors == []
    assert "indexes [1, 3]" in str(error)
    assert "x@y" not in str(error) and "x@y" not in repr(error)
    assert len(emu.requests) == 1


def test_a_400_that_names_no_contact_is_kept_as_an_unindexed_error(
    emu: Any, client: SendGridClient
) -> None:
    body = json.dumps({"contacts": [{"email": "a@x.com", "custom_fields": []}]}).encode()

    with pytest.raises(ContactsRejectedError) as caught:
        client.upsert_contacts(body)

    assert caught.value.errors_by_contact() == {}
    assert [e.message for e in caught.value.unindexed_errors] == ["invalid input"]
    assert "the request as a whole" in str(caught.value)


def test_other_4xx_raise_request_rejected_with_status_route_and_message(
    emu: Any, client: SendGridClient
) -> None:
    emu.faults.add(PUT, status=422, body={"errors": [{"message": "unprocessable entity"}]})

    with pytest.raises(RequestRejectedError) as caught:
        client.upsert_contacts(body_for("a@x.com"))

    assert not isinstance(caught.value, ContactsRejectedError)
    assert (caught.value.status, caught.value.route) == (422, PUT)
    assert "unprocessable entity" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (413, "payload too large"),
        (400, "Message size exceeds the 4MB limit"),
        (400, "request body too large"),
    ],
    ids=["413", "400-message-size-exceeds", "400-body-too-large"],
)
def test_a_body_refused_as_too_large_raises_a_transient_body_too_large_error_without_retrying(
    status: int, message: str, emu: Any, client: SendGridClient, clock: FakeClock
) -> None:
    emu.faults.add(PUT, status=status, body={"errors": [{"field": None, "message": message}]})
    body = body_for("a@x.com", "b@x.com")

    with pytest.raises(BodyTooLargeError) as caught:
        client.upsert_contacts(body)

    error = caught.value
    assert isinstance(error, DestinationTransientException)
    assert not isinstance(error, RequestRejectedError | DestinationTerminalException)
    assert (error.status, error.route, error.body_bytes) == (status, PUT, len(body))
    assert f"{len(body):,} bytes" in str(error)
    assert statuses(emu) == [status] and clock.sleeps == []


def test_a_body_over_the_emulators_six_megabytes_raises_body_too_large(
    emu: Any, client: SendGridClient
) -> None:
    body = json.dumps({"contacts": [{"email": "a@x.com", "first_name": "x" * 6_000_000}]})

    with pytest.raises(BodyTooLargeError) as caught:
        client.upsert_contacts(body.encode())

    assert caught.value.status == 413
    assert caught.value.body_bytes == len(body)


def test_an_upsert_answer_without_a_job_id_is_a_transient_server_error(
    emu: Any, make_client: MakeClient
) -> None:
    client = make_client(emu.base_url, max_attempts=1)
    emu.faults.add(PUT, status=202, body={"accepted": True})

    with pytest.raises(ServerError, match="without a job_id"):
        client.upsert_contacts(body_for("a@x.com"))


# --- import jobs ----------------------------------------------------------------------------


def test_import_status_goes_from_pending_to_completed_with_counts(
    emu: Any, client: SendGridClient
) -> None:
    job_id = client.upsert_contacts(body_for("a@x.com", "b@x.com"))

    first = client.import_status(job_id)
    assert (first.id, first.status, first.is_terminal) == (job_id, "pending", False)
    assert first.requested_count == 2 and first.created_count == 0

    assert poll_until_terminal(client, job_id)[-1] == "completed"
    done = client.import_status(job_id)
    assert (done.created_count, done.updated_count, done.errored_count) == (2, 0, 0)
    assert done.job_type == "upsert_contacts"
    assert done.errors_url is None


def test_an_errored_job_reports_counts_and_an_errors_url_with_the_rows(
    emu: Any, client: SendGridClient
) -> None:
    emu.force_contact_errors({"b@x.com": "email is on a suppression list"})
    job_id = client.upsert_contacts(body_for("a@x.com", "b@x.com"))

    assert poll_until_terminal(client, job_id)[-1] == "errored"
    job = client.import_status(job_id)
    assert (job.created_count, job.errored_count) == (1, 1)
    assert job.errors_url

    rows = client.download_errors(job.errors_url)

    assert [(row["primary_email"], row["errors_occurred"]) for row in rows] == [
        ("b@x.com", "email is on a suppression list")
    ]


def test_the_errors_file_is_fetched_without_the_api_key_or_on_behalf_of(
    presigned_host: Any, make_client: MakeClient, api_key: str
) -> None:
    # The emulator does not record its errors-file route, so a recording host stands in for
    # the pre-signed storage the real errors_url points at.
    client = make_client(presigned_host.url, on_behalf_of="subuser-1")
    presigned_host.body = b"\xef\xbb\xbfprimary_email,errors_occurred\r\nb@x.com,bounced\r\n"

    rows = client.download_errors(presigned_host.url + "/errors.csv?X-Amz-Signature=abc")

    assert rows == [{"primary_email": "b@x.com", "errors_occurred": "bounced"}]
    [sent] = presigned_host.requests
    assert "authorization" not in sent and "on-behalf-of" not in sent
    assert all(api_key not in value for value in sent.values())


def test_an_expired_errors_file_is_a_rejection_not_an_authentication_error(
    presigned_host: Any, make_client: MakeClient
) -> None:
    client = make_client(presigned_host.url)
    presigned_host.status, presigned_host.body = 403, b"<Error>AccessDenied</Error>"

    with pytest.raises(RequestRejectedError, match="expired") as caught:
        client.download_errors(presigned_host.url + "/errors.csv")

    assert not isinstance(caught.value, AuthenticationError)


def test_a_failed_job_is_terminal(emu: Any, client: SendGridClient) -> None:
    emu.fail_next_jobs(1, reason="you have hit your contact limit")
    job_id = client.upsert_contacts(body_for("a@x.com"))

    assert poll_until_terminal(client, job_id)[-1] == "failed"
    assert client.import_status(job_id).errored_count == 1


# --- field definitions and lists ------------------------------------------------------------


def test_field_definitions_list_custom_and_reserved_fields(
    emu: Any, client: SendGridClient
) -> None:
    field_id = emu.add_custom_field("plan", "Text")

    definitions = client.field_definitions()

    assert definitions.custom_by_name()["plan"] == CustomField(field_id, "plan", "Text")
    reserved = {f.name: f for f in definitions.reserved}
    assert reserved["last_clicked"].read_only
    assert not reserved["first_name"].read_only


def test_a_created_custom_field_appears_in_the_definitions(
    emu: Any, client: SendGridClient
) -> None:
    created = client.create_custom_field("score", "Number")

    assert (created.name, created.field_type) == ("score", "Number")
    assert created.id
    assert client.field_definitions().custom_by_name()["score"] == created


def test_creating_a_duplicate_custom_field_is_rejected(emu: Any, client: SendGridClient) -> None:
    emu.add_custom_field("plan", "Text")

    with pytest.raises(RequestRejectedError) as caught:
        client.create_custom_field("PLAN", "Text")

    assert caught.value.status == 400


def test_lists_follow_the_next_page_links(emu: Any, client: SendGridClient) -> None:
    ids = {emu.add_list(f"list-{i}") for i in range(5)}

    found = client.lists(page_size=2)

    assert {found_list.id for found_list in found} == ids
    assert len(found) == 5
    assert statuses(emu, LISTS) == [200, 200, 200]


def test_a_next_link_to_another_host_is_followed_on_the_base_url_host_only(
    presigned_host: Any, make_client: MakeClient, api_key: str
) -> None:
    client = make_client(presigned_host.url)
    page = {
        "result": [{"id": "l1", "name": "one", "contact_count": 3}],
        "_metadata": {"next": "https://elsewhere.example/v3/marketing/lists?page_token=2"},
    }
    presigned_host.body = json.dumps(page).encode()

    found = client.lists()

    # The second page was asked of base_url's host, with the key; the loop guard then stops.
    assert len(presigned_host.requests) == 2
    assert all(sent["authorization"] == f"Bearer {api_key}" for sent in presigned_host.requests)
    assert [found_list.id for found_list in found] == ["l1", "l1"]


def test_a_created_list_is_returned_and_then_listed(emu: Any, client: SendGridClient) -> None:
    created = client.create_list("vip")

    assert created.name == "vip" and created.id
    assert created in client.lists()


# --- concurrency and secrets ----------------------------------------------------------------


def test_one_client_serves_many_threads(emu: Any, client: SendGridClient) -> None:
    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(client.upsert_contacts(body_for(f"u{i}@x.com")))
        )
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(set(results)) == 8
    assert client.stats.requests_by_route[PUT] == 8


def test_no_log_record_repr_or_error_message_contains_the_api_key_or_an_email(
    emu: Any,
    make_client: MakeClient,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(emu.base_url, max_attempts=3)
    wrong_key = "SG.another-secret-key"
    texts = [repr(client), repr(make_client(emu.base_url, api_key=wrong_key))]
    errors: list[BaseException] = []

    def attempt(call: Callable[[], object]) -> None:
        try:
            call()
        except SendGridError as exc:
            errors.append(exc)

    emu.faults.add(PUT, status=429, times=1)
    emu.faults.add(PUT, status=503, times=1)
    emu.force_contact_errors({"victim@x.com": "rejected victim@x.com"})
    job_id = client.upsert_contacts(body_for("victim@x.com", "ok@x.com"))
    poll_until_terminal(client, job_id)
    job = client.import_status(job_id)
    texts.append(repr(job))
    client.download_errors(job.errors_url or "")  # its rows hold emails by design: not logged
    attempt(lambda: client.upsert_contacts(body_for("bad@@x.com")))
    attempt(
        lambda: make_client(emu.base_url, api_key=wrong_key).upsert_contacts(body_for("a@x.com"))
    )
    emu.faults.add(PUT, status=400, body={"error": f"{api_key} is not valid for victim@x.com"})
    attempt(lambda: client.upsert_contacts(body_for("victim@x.com")))
    emu.faults.add(PUT, status=500, body={"errors": [{"message": "boom victim@x.com"}]}, times=3)
    attempt(lambda: client.upsert_contacts(body_for("victim@x.com")))

    assert len(errors) == 4
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    records = [r for r in caplog.records if not r.name.startswith("sendgrid_destination.emulator")]
    texts += [r.getMessage() for r in records]
    assert any(r.name == "sendgrid_destination.api.transport" for r in records)
    for text in texts:
        assert api_key not in text and wrong_key not in text
        assert EMAIL_LIKE.search(text) is None, text
