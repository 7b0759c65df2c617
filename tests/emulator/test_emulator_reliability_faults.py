"""The faults the destination's reliability work needs (issue 13): a lower body limit,
errors-file variants, import-status 404s and jobs pending forever, redirects and dripping
responses. Each is selectable in Python and over the control plane."""

from __future__ import annotations

import csv
import io
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from sendgrid_destination.emulator import Emulator

from .support import OpenApi

if TYPE_CHECKING:
    from .support import Api

UPSERT = "PUT /v3/marketing/contacts"
COUNT = "GET /v3/marketing/contacts/count"
IMPORT = "GET /v3/marketing/contacts/imports/{id}"
IMPORTS = "/v3/marketing/contacts/imports/"


def _control(emu: Emulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{emu.base_url}/_emulator/{path}", timeout=5, **kwargs)


def _body_of(size: int) -> bytes:
    """A valid upsert body of exactly ``size`` bytes (under 30,000 contacts up to 6 MB)."""
    head, tail = b'{"contacts":[', b"]}"
    contact = (
        b'{"email":"u%06d@example.com","address_line_1":"'
        + b"x" * 100
        + b'","city":"'
        + b"y" * 50
        + b'"}'
    )
    one = len(contact % 0) + 1
    count = (size - len(head) - len(tail)) // one
    items = b",".join(contact % i for i in range(count))
    padding = size - len(head) - len(tail) - len(items)
    return head + items + b" " * padding + tail


# -- a body limit below 6,000,000 bytes ----------------------------------------------------


def test_a_lower_body_limit_answers_413_above_it_and_202_at_it(api: Api, emu: Emulator) -> None:
    emu.limit_upsert_body(4_000_000)

    over = api.put("/v3/marketing/contacts", data=_body_of(4_000_001))
    at = api.put("/v3/marketing/contacts", data=_body_of(4_000_000))

    assert over.status_code == 413
    assert over.json()["errors"][0]["message"] == "request entity too large"
    assert at.status_code == 202
    assert len(emu.jobs()) == 1


def test_the_lower_limit_can_answer_400_message_size_exceeded_instead(
    api: Api, emu: Emulator
) -> None:
    set_limit = _control(emu, "POST", "body-limit", json={"max_bytes": 1_000, "answer": 400})

    refused = api.put("/v3/marketing/contacts", data=_body_of(1_001))
    cleared = _control(emu, "DELETE", "body-limit")
    accepted = api.put("/v3/marketing/contacts", data=_body_of(1_001))

    assert set_limit.json() == {
        "max_bytes": 1_000,
        "answer": 400,
        "message": "message size exceeded",
    }
    assert refused.status_code == 400
    assert refused.json() == {"errors": [{"field": None, "message": "message size exceeded"}]}
    assert cleared.json()["max_bytes"] == 6_000_000
    assert accepted.status_code == 202


def test_the_body_limit_applies_only_to_the_upsert_route(api: Api, emu: Emulator) -> None:
    emu.limit_upsert_body(100)

    search = api.post(
        "/v3/marketing/contacts/search/emails",
        json={"emails": [f"u{i}@example.com" for i in range(20)]},
    )

    assert search.status_code == 404  # searched, nothing found: not refused for its size


@pytest.mark.parametrize("spec", [{"max_bytes": 6_000_001}, {"max_bytes": 0}, {"answer": 413}])
def test_a_body_limit_outside_the_documented_one_is_refused(emu: Emulator, spec: Any) -> None:
    assert _control(emu, "POST", "body-limit", json=spec).status_code == 400
    with pytest.raises(ValueError, match="max_bytes"):
        emu.limit_upsert_body(6_000_001)


# -- errors-file variants ------------------------------------------------------------------


def _errored_job(api: Api, emu: Emulator) -> dict[str, Any]:
    emu.force_contact_errors({"bad@example.com": "mailbox rejected"})
    return api.upsert_and_finish([{"email": "bad@example.com"}, {"email": "ok@example.com"}])


def test_an_errors_file_can_have_another_header(api: Api, emu: Emulator) -> None:
    emu.fault_next_jobs(errors_file="other_header")

    job = _errored_job(api, emu)
    response = requests.get(job["results"]["errors_url"], timeout=5)

    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.text.splitlines() == ["Email,Errors", "bad@example.com,mailbox rejected"]


def test_an_errors_url_can_answer_an_html_page(api: Api, emu: Emulator) -> None:
    _control(emu, "POST", "job-faults", json={"errors_file": "html"})

    job = _errored_job(api, emu)
    response = requests.get(job["results"]["errors_url"], timeout=5)

    assert job["results"]["errored_count"] == 1
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


def test_an_errors_file_can_carry_a_field_longer_than_the_csv_modules_limit(
    api: Api, emu: Emulator
) -> None:
    emu.fault_next_jobs(errors_file="long_field")

    job = _errored_job(api, emu)
    text = requests.get(job["results"]["errors_url"], timeout=5).text

    with pytest.raises(csv.Error, match="field larger than field limit"):
        list(csv.reader(io.StringIO(text)))
    header, row = text.split("\r\n", 1)
    assert header.startswith("primary_email,")
    assert len(row) > 131_072
    assert row.startswith("bad@example.com,,,,mailbox rejected x")


def test_an_errors_url_can_answer_404(api: Api, emu: Emulator) -> None:
    emu.fault_next_jobs(errors_file="not_found")

    job = _errored_job(api, emu)

    assert job["status"] == "errored"
    assert requests.get(job["results"]["errors_url"], timeout=5).status_code == 404


def test_job_faults_apply_to_the_next_jobs_in_order_then_stop(api: Api, emu: Emulator) -> None:
    emu.fault_next_jobs(1, errors_file="html")
    emu.fault_next_jobs(1, errors_file="other_header")
    pending = _control(emu, "GET", "job-faults").json()

    types = []
    for _ in range(3):
        url = _errored_job(api, emu)["results"]["errors_url"]
        types.append(requests.get(url, timeout=5).text.splitlines()[0][:15])

    assert [f["errors_file"] for f in pending] == ["html", "other_header"]
    assert types == ["<!DOCTYPE html>", "Email,Errors", "primary_email,p"]
    assert _control(emu, "GET", "job-faults").json() == []


def test_a_bad_job_fault_is_refused(emu: Emulator) -> None:
    for spec in ({"errors_file": "pdf"}, {"import_status": "gone"}, {"colour": "red"}):
        assert _control(emu, "POST", "job-faults", json=spec).status_code == 400
    with pytest.raises(ValueError, match="errors_file"):
        emu.fault_next_jobs(errors_file="pdf")  # type: ignore[arg-type]


# -- import status: 404s and jobs that never finish ---------------------------------------------


def _job_id(api: Api, contacts: list[dict[str, Any]]) -> str:
    response = api.upsert(contacts)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def test_a_job_can_answer_404_at_once_yet_still_be_processed(
    api: Api, emu: Emulator, openapi: OpenApi
) -> None:
    emu.fault_next_jobs(import_status="not_found")
    job_id = _job_id(api, [{"email": "a@example.com"}])

    polls = [api.get(IMPORTS + job_id) for _ in range(3)]

    assert [p.status_code for p in polls] == [404, 404, 404]
    assert polls[0].json() == {"errors": [{"field": None, "message": "job not found"}]}
    openapi.check_response(IMPORT, polls[0])
    assert emu.contact("a@example.com") is not None  # processed: only its status is lost


def test_a_job_can_be_pending_for_some_polls_then_404(
    api: Api, emu: Emulator, openapi: OpenApi
) -> None:
    _control(
        emu,
        "POST",
        "job-faults",
        json={"import_status": "pending_then_not_found", "pending_polls": 2},
    )
    job_id = _job_id(api, [{"email": "a@example.com"}])

    polls = [api.get(IMPORTS + job_id) for _ in range(4)]

    assert [p.status_code for p in polls] == [200, 200, 404, 404]
    assert [p.json()["status"] for p in polls[:2]] == ["pending", "pending"]
    assert polls[1].json()["results"] == {"requested_count": 1}
    assert "finished_at" not in polls[1].json()
    for poll in polls:
        openapi.check_response(IMPORT, poll)


def test_a_job_can_stay_pending_forever_even_through_process_jobs(api: Api, emu: Emulator) -> None:
    emu.fault_next_jobs(import_status="pending_forever")
    stuck = _job_id(api, [{"email": "stuck@example.com"}])
    fine = _job_id(api, [{"email": "fine@example.com"}])

    statuses = {api.job(stuck)["status"] for _ in range(20)}
    processed = emu.process_jobs()

    assert statuses == {"pending"}
    assert processed == 1
    assert api.job(stuck)["status"] == "pending"
    assert api.job(fine)["status"] == "completed"
    assert emu.contact("stuck@example.com") is None


# -- redirects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "method", "path"),
    [
        (UPSERT, "PUT", "/v3/marketing/contacts"),
        (COUNT, "GET", "/v3/marketing/contacts/count"),
        ("GET /v3/marketing/field_definitions", "GET", "/v3/marketing/field_definitions"),
    ],
)
def test_any_route_can_answer_a_redirect_to_the_given_location(
    api: Api, emu: Emulator, route: str, method: str, path: str
) -> None:
    emu.faults.add(route, action="redirect", location="https://elsewhere.example/v3/x")

    response = api.request(
        method, path, json={"contacts": [{"email": "a@example.com"}]}, allow_redirects=False
    )

    assert response.status_code == 307
    assert response.headers["Location"] == "https://elsewhere.example/v3/x"
    assert response.content == b""
    assert emu.jobs() == []
    assert emu.requests[-1].fault == "redirect"


def test_a_redirect_may_have_another_3xx_status_and_comes_through_the_control_plane(
    api: Api, emu: Emulator
) -> None:
    rule = {"route": UPSERT, "action": "redirect", "status": 308, "location": "http://x.test/"}
    assert _control(emu, "POST", "faults", json=rule).status_code == 201
    for bad in ({"route": UPSERT, "action": "redirect"}, {**rule, "status": 200}):
        assert _control(emu, "POST", "faults", json=bad).status_code == 400

    body = {"contacts": [{"email": "a@example.com"}]}
    response = api.put("/v3/marketing/contacts", json=body, allow_redirects=False)

    assert (response.status_code, response.headers["Location"]) == (308, "http://x.test/")
    assert api.upsert([{"email": "a@example.com"}]).status_code == 202


# -- a response that drips ------------------------------------------------------------------------


def _raw_get(emu: Emulator, path: str, deadline: float) -> tuple[bytes, float]:
    """Read a GET's whole answer on a raw socket until it closes or ``deadline`` passes."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {emu.api_key}\r\n\r\n"
        sock.sendall(request.encode())
        while time.monotonic() - started < deadline:
            sock.settimeout(max(0.01, deadline - (time.monotonic() - started)))
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    return received, time.monotonic() - started


def test_a_dripping_response_outlasts_a_read_timeout_without_tripping_it(
    emu: Emulator,
) -> None:
    emu.faults.add(COUNT, action="drip", delay=0.004)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {emu.api_key}"

    started = time.monotonic()
    response = session.get(emu.base_url + "/v3/marketing/contacts/count", timeout=(2, 0.5))
    took = time.monotonic() - started
    session.close()

    # Each byte comes within the 0.5 s read timeout; the whole answer takes longer.
    assert response.status_code == 200
    assert response.json() == {"contact_count": 0, "billable_count": 0}
    assert took > 0.5
    assert emu.requests[-1].fault == "drip"


def test_a_client_with_a_total_deadline_gets_only_the_first_bytes_of_a_drip(
    emu: Emulator,
) -> None:
    emu.faults.add(COUNT, action="drip", delay=0.05)

    partial, took = _raw_get(emu, "/v3/marketing/contacts/count", deadline=0.5)

    assert b"HTTP/1.1 200"[: len(partial)] == partial[:12]
    assert 0 < len(partial) < 20
    assert took < 1.5


def test_stop_returns_promptly_while_a_response_drips(api_for: type[Api]) -> None:
    emu = Emulator("SG.k").start()
    emu.faults.add(COUNT, action="drip", delay=1.0)
    reader = threading.Thread(
        target=_raw_get, args=(emu, "/v3/marketing/contacts/count", 10), daemon=True
    )
    reader.start()
    deadline = time.monotonic() + 5
    while not emu.requests and time.monotonic() < deadline:
        time.sleep(0.01)

    started = time.monotonic()
    emu.stop()
    reader.join(timeout=5)

    assert time.monotonic() - started < 2.0
    assert not reader.is_alive()
