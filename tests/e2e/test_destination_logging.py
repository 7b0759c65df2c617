"""No secret and no contact email in any log record, through runs that hit every path that
logs: retries, a 400 whose message quotes an email, job errors naming contacts, a summary,
and a terminal authentication failure."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from tests.e2e.conftest import API_KEY, contacts_table, rejects_of, run_summary

PUT = "PUT /v3/marketing/contacts"
WRONG_KEY = "SG.wrong-but-secret-key-0042"


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def dlt_records(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[logging.LogRecord]]:
    """Records of dlt's own logger, which does not propagate to the root logger."""
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "DEBUG")
    collector = _Collector()
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.addHandler(collector)
    try:
        yield collector.records
    finally:
        dlt_logger.removeHandler(collector)


def _texts(record: logging.LogRecord) -> list[str]:
    texts = [record.getMessage(), repr(record.args), str(record.msg)]
    if record.exc_info and record.exc_info[1] is not None:
        texts.append("".join(traceback.format_exception(*record.exc_info)))
    if record.exc_text:
        texts.append(record.exc_text)
    if record.stack_info:
        texts.append(record.stack_info)
    return texts


def test_no_log_record_contains_the_api_key_or_a_contact_email(
    emulator, destination, run, state_path, caplog, dlt_records
) -> None:
    caplog.set_level(logging.DEBUG)
    plan = emulator.add_custom_field("plan", "Text")
    n = 6
    emails = [f"user{i}@example.com" for i in range(n)]
    data = contacts_table(n, plan=[f"p{i}" for i in range(n)])
    mapping = {"email": "email", "first_name": "first_name", "custom_fields": {"plan": "plan"}}
    emulator.faults.add(PUT, status=503)
    emulator.faults.add(PUT, action="drop")
    emulator.faults.add(
        PUT,
        status=400,
        body={
            "errors": [
                {"field": "contacts[1].identifier", "message": f"email '{emails[1]}' is not valid"}
            ]
        },
    )
    emulator.force_contact_errors({emails[3]: f"bounced: {emails[3]} is suppressed"})

    info = run(data, destination(mapping=mapping))
    with pytest.raises(PipelineStepFailed):
        run(contacts_table(2, start=10), destination(api_key=WRONG_KEY), pipeline="wrong_key")

    # The run really took the paths whose logging is under test.
    summary = run_summary(state_path, info)
    assert summary["rejected_by_api"] == 1
    assert summary["failed_in_jobs"] == 1
    stages = sorted(r["stage"] for r in rejects_of(state_path))
    assert stages == ["api", "job"]
    assert emulator.contact("user0@example.com")["custom_fields"] == {plan: "p0"}

    records = [
        r
        for r in [*caplog.records, *dlt_records]
        if not r.name.startswith("sendgrid_destination.emulator")
    ]
    names = {r.name for r in records}
    assert any(n.startswith("sendgrid_destination") for n in names), names
    assert any(n.startswith("dlt") for n in names), names
    assert any("SendGrid sync summary" in r.getMessage() for r in records)
    secrets = [API_KEY, WRONG_KEY, *emails, *(f"user{i}@example.com" for i in (10, 11))]
    leaks = [
        (r.name, secret, text[:200])
        for r in records
        for text in _texts(r)
        for secret in secrets
        if secret.lower() in text.lower()
    ]
    assert leaks == []


def test_values_sendgrid_echoes_in_a_400_reach_neither_the_log_nor_the_summary(
    emulator, destination, run, state_path, caplog, dlt_records
) -> None:
    echo = "contact +14155550123 named Greta Garbo at greta@example.com is not valid"
    body = {"errors": [{"field": "contacts[1].identifier", "message": echo}]}
    emulator.faults.add(PUT, status=400, body=body)

    with caplog.at_level(logging.DEBUG):
        info = run(contacts_table(4), destination())

    summary = run_summary(state_path, info)
    texts = [t for r in [*caplog.records, *dlt_records] for t in _texts(r)]
    texts.append(repr(summary))
    for secret in ("+14155550123", "4155550123", "Greta", "Garbo", "greta@example.com"):
        assert not [t for t in texts if secret in t], secret
    # The row-level export the user asks for keeps SendGrid's own words.
    assert [r["reason"] for r in rejects_of(state_path, "api")] == [echo]


def test_the_destination_and_the_pipelines_destination_never_show_the_key(tmp_path) -> None:
    import dlt

    from sendgrid_destination import sendgrid

    destination = sendgrid(api_key=API_KEY, mapping={"email": "email"})
    pipeline = dlt.pipeline("repr", destination=destination, pipelines_dir=str(tmp_path))

    for shown in (repr(destination), str(destination), repr(pipeline.destination)):
        assert API_KEY not in shown
        assert "api_key='***'" in shown or "api_key" not in shown
