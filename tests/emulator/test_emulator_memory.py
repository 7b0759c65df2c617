"""What retaining contacts costs the CLI emulator (issue 16.6): a million contacts through
HTTP into a child process, its RSS measured with psutil. Marked ``slow``.

The figures printed are the child's RSS before the first upsert and after the last, and the
increase; the whole process stays under 500 MiB (it imports only the standard library, not
dlt, DuckDB or pyarrow).
"""

from __future__ import annotations

import json

import psutil
import pytest
import requests

from .support import emulator_child

CONTACTS = 1_000_000
PER_REQUEST = 18_000  # about 5.3 MB a body, under the 6,000,000-byte limit
MiB = 2**20


def _body(start: int, stop: int) -> bytes:
    # About the benchmark's contact: nine reserved fields and three custom fields.
    contacts = [
        {
            "email": f"ann.{i}@example.com",
            "first_name": "Ann",
            "last_name": "M\u00fcller",
            "address_line_1": f"{i % 9999} Main Street",
            "city": "Springfield",
            "state_province_region": "CA",
            "postal_code": f"{i % 99999:05d}",
            "country": "US",
            "phone_number": f"+1415555{i % 10_000:04d}",
            "custom_fields": {"e1_T": "pro", "e2_N": i % 1000 + 0.5, "e3_D": "01/31/2024"},
        }
        for i in range(start, stop)
    ]
    return json.dumps({"contacts": contacts}, separators=(",", ":")).encode()


def _load(base_url: str) -> None:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer SG.mem"
    for name, kind in (("plan", "Text"), ("ltv", "Number"), ("signed_up", "Date")):
        field = {"name": name, "field_type": kind}
        assert session.post(base_url + "/v3/marketing/field_definitions", json=field).ok
    for start in range(0, CONTACTS, PER_REQUEST):
        stop = min(CONTACTS, start + PER_REQUEST)
        response = session.put(base_url + "/v3/marketing/contacts", data=_body(start, stop))
        assert response.status_code == 202, response.text
    session.close()
    assert requests.post(base_url + "/_emulator/process-jobs", timeout=120).ok


@pytest.mark.slow
@pytest.mark.parametrize("retain", [True, False], ids=["retained", "no-retain"])
def test_the_cli_emulator_holding_a_million_contacts_stays_under_500_mib(retain: bool) -> None:
    args = ["--port", "0", "--api-key", "SG.mem", "--job-polls-until-done", "0"]
    with emulator_child(*args, *([] if retain else ["--no-retain"])) as child:
        first, _ = child.read_lines(2)
        base_url = first.rsplit(" ", 1)[-1]
        process = psutil.Process(child.proc.pid)
        before = process.memory_info().rss

        _load(base_url)
        count = requests.get(
            base_url + "/v3/marketing/contacts/count",
            headers={"Authorization": "Bearer SG.mem"},
            timeout=60,
        ).json()["contact_count"]
        after = process.memory_info().rss

    cost = (after - before) / MiB
    print(
        f"\n{CONTACTS:,} contacts {'retained' if retain else 'not retained'}: "
        f"RSS {before / MiB:.0f} -> {after / MiB:.0f} MiB, +{cost:.0f} MiB "
        f"({(after - before) / CONTACTS:.0f} bytes a contact)"
    )
    # Without retaining, the count reports the contacts accepted (each distinct here).
    assert count == CONTACTS
    assert after / MiB < 500
