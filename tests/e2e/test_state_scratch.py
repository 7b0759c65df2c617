import pyarrow as pa
import pytest
from tests.e2e.conftest import contacts_table, run_summary, upserts, API_KEY, DEFAULT_MAPPING
from sendgrid_destination.emulator import Emulator
from sendgrid_destination import sendgrid
from sendgrid_destination.state import StateStore


def _dest(emu, state_path, **kw):
    s = dict(api_key=API_KEY, base_url=emu.base_url, mapping=DEFAULT_MAPPING, state_path=str(state_path), job_poll_interval=1.0)
    s.update(kw)
    return sendgrid(**s)

DATA = pa.table({"email": ["user0@example.com", "user1@example.com", "user2@example.com", "user3@example.com", "user0@example.com", "user4@example.com"],
                         "first_name": ["old", "a", "b", "c", "new", "d"]})

@pytest.mark.parametrize("polls,maxc,delay", [(1, 30000, 3), (1, 2, 3), (3, 2, 0), (1,2,0)])
def test_twice(clock, run, state_path, polls, maxc, delay):
    with Emulator(api_key=API_KEY, clock=clock, job_polls_until_done=polls, job_order="reverse", job_delay_seconds=delay) as emu:
        info = run(DATA, _dest(emu, state_path, read_batch_rows=2, max_contacts_per_request=maxc))
        print([ (r.route, r.status, r.contact_count) for r in emu.requests])
        print(run_summary(state_path, info))
        print(emu.contact("user0@example.com")["first_name"])
        with StateStore.open(state_path, read_only=True) as s:
            print(s.con.execute("select contact_key, content_hash, status from contacts order by contact_key").fetchall())
        emu.clear_requests()
        info = run(DATA, _dest(emu, state_path, read_batch_rows=2, max_contacts_per_request=maxc))
        print([ (r.route, r.status, r.contact_count) for r in emu.requests])
        print(run_summary(state_path, info))
        print(emu.contact("user0@example.com")["first_name"])
