"""The /_emulator/ control routes (no auth) and the command-line entry point."""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
import requests

from sendgrid_destination.emulator import Emulator
from sendgrid_destination.emulator.cli import configure_parser

from .support import Child, emulator_child

if TYPE_CHECKING:
    from .support import Api

UPSERT = "PUT /v3/marketing/contacts"


def _control(emu: Emulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{emu.base_url}/_emulator/{path}", timeout=5, **kwargs)


def test_a_fault_can_be_added_listed_and_cleared_over_http(api: Api, emu: Emulator) -> None:
    added = _control(emu, "POST", "faults", json={"route": UPSERT, "status": 500, "times": 2})

    assert added.status_code == 201
    assert _control(emu, "GET", "faults").json()[0]["times"] == 2
    assert api.upsert([{"email": "a@example.com"}]).status_code == 500
    assert _control(emu, "DELETE", "faults").status_code == 200
    assert api.upsert([{"email": "a@example.com"}]).status_code == 202


def test_a_bad_fault_rule_is_refused_with_400(emu: Emulator) -> None:
    for rule in ({"route": "GET /nope", "status": 500}, {"route": UPSERT}, {"status": 500}):
        assert _control(emu, "POST", "faults", json=rule).status_code == 400


def test_contact_errors_and_failing_jobs_can_be_set_over_http(api: Api, emu: Emulator) -> None:
    _control(emu, "POST", "contact-errors", json={"bad@example.com": "rejected"})
    _control(emu, "POST", "fail-next-jobs", json={"count": 1, "reason": "limit"})

    failed = api.upsert_and_finish([{"email": "ok@example.com"}])
    errored = api.upsert_and_finish([{"email": "bad@example.com"}, {"email": "ok@example.com"}])
    _control(emu, "DELETE", "contact-errors")
    fixed = api.upsert_and_finish([{"email": "bad@example.com"}])

    assert [failed["status"], errored["status"], fixed["status"]] == [
        "failed",
        "errored",
        "completed",
    ]


def test_process_jobs_contacts_jobs_and_requests_are_readable_over_http(
    api: Api, emu: Emulator
) -> None:
    job_id = api.upsert([{"email": "a@example.com"}]).json()["job_id"]

    assert _control(emu, "POST", "process-jobs").json() == {"processed": 1}
    assert [c["email"] for c in _control(emu, "GET", "contacts").json()] == ["a@example.com"]
    [job] = _control(emu, "GET", "jobs").json()
    assert (job["id"], job["status"], job["contact_count"]) == (job_id, "completed", 1)
    [recorded] = _control(emu, "GET", "requests").json()
    assert (recorded["route"], recorded["status"], recorded["contact_count"]) == (UPSERT, 202, 1)
    assert "Authorization" not in recorded["headers"]


def test_control_routes_are_not_recorded_rate_limited_or_authenticated(emu: Emulator) -> None:
    response = _control(emu, "GET", "contacts")

    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response.headers
    assert emu.requests == []


def test_an_unknown_control_route_is_a_404_and_a_wrong_method_a_405(emu: Emulator) -> None:
    assert _control(emu, "GET", "nothing").status_code == 404
    assert _control(emu, "PUT", "faults").status_code == 405


def test_the_cli_parser_has_the_documented_defaults() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)

    args = parser.parse_args([])

    assert (args.host, args.port, args.api_key) == ("127.0.0.1", 3030, "SG.test-emulator-key")
    assert (args.job_polls_until_done, args.job_order, args.custom_field_ready_seconds) == (
        1,
        "fifo",
        0.0,
    )
    assert args.retain_contacts is True
    assert parser.parse_args(["--no-retain"]).retain_contacts is False


def test_the_cli_can_run_without_retaining_contacts() -> None:
    args = ("--port", "0", "--api-key", "SG.cli", "--job-polls-until-done", "0", "--no-retain")
    with emulator_child(*args) as child:
        base_url = _serves(child, "SG.cli")
        headers = {"Authorization": "Bearer SG.cli"}
        body = {"contacts": [{"email": f"u{i}@example.com"} for i in range(3)]}
        put = requests.put(
            base_url + "/v3/marketing/contacts", json=body, headers=headers, timeout=5
        )
        job_url = base_url + "/v3/marketing/contacts/imports/" + put.json()["job_id"]
        job = requests.get(job_url, headers=headers, timeout=5).json()
        stored = requests.get(base_url + "/_emulator/contacts", timeout=5).json()
        code, _ = child.stop_with(signal.SIGTERM)

    assert (job["status"], job["results"]["created_count"]) == ("completed", 3)
    assert stored == []
    assert code == 0


def _serves(child: Child, key: str) -> str:
    first, key_line = child.read_lines(2)
    found = re.search(r"(http://127\.0\.0\.1:\d+)", first)
    assert found, first
    assert key in key_line
    headers = {"Authorization": f"Bearer {key}"}
    url = found.group(1) + "/v3/marketing/contacts/count"
    assert requests.get(url, headers=headers, timeout=5).status_code == 200
    return found.group(1)


def test_python_m_serves_until_interrupted_and_prints_url_and_key() -> None:
    with emulator_child(
        "--port", "0", "--api-key", "SG.cli", "--job-polls-until-done", "0"
    ) as child:
        _serves(child, "SG.cli")
        code, rest = child.stop_with(signal.SIGINT)

    assert code == 0
    assert "stopped" in rest


def test_sigint_stops_it_even_when_the_child_was_started_with_sigint_ignored() -> None:
    with emulator_child("--port", "0", "--api-key", "SG.cli", ignore_sigint=True) as child:
        _serves(child, "SG.cli")
        code, rest = child.stop_with(signal.SIGINT)

    assert code == 0
    assert "stopped" in rest


def test_sigterm_stops_it_and_frees_the_port() -> None:
    with emulator_child("--port", "0", "--api-key", "SG.cli") as child:
        base_url = _serves(child, "SG.cli")
        code, rest = child.stop_with(signal.SIGTERM)

    assert code == 0
    assert "stopped" in rest
    with pytest.raises(requests.ConnectionError):
        requests.get(base_url + "/v3/marketing/contacts/count", timeout=2)


def test_a_child_that_never_prints_is_killed_when_the_test_gives_up() -> None:
    # The guard every CLI test relies on: a child that does not answer within the deadline
    # fails the test and is killed, instead of hanging the run and leaving an orphan.
    with (
        pytest.raises(AssertionError, match=r"no 5 lines in 0\.5 s"),
        emulator_child("--port", "0", ignore_sigint=True) as child,
    ):
        child.read_lines(1)  # the banner arrives ...
        child.read_lines(5, timeout=0.5)  # ... but no further lines ever do
    assert child.proc.poll() is not None


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "99999"],
        ["--port", "-1"],
        ["--api-key", ""],
        ["--job-polls-until-done", "-2"],
        ["--job-delay-seconds", "soon"],
        ["--custom-field-ready-seconds", "-1"],
    ],
)
def test_a_value_the_emulator_cannot_use_is_a_usage_error_naming_it(argv, capsys) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)

    with pytest.raises(SystemExit) as exited:
        parser.parse_args(argv)

    assert exited.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_a_port_already_taken_is_said_in_one_line_and_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-m", "sendgrid_destination.emulator", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
