"""Fixtures for the sync-file tests: the CLI (``sendgrid-destination run``) in-process, against
an emulator on loopback, with the settings a deployment would give it in environment variables
(the API key is never in a sync file), from an empty working directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sendgrid_destination.cli import main
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.state import StateStore

API_KEY = "SG.test-sync-key"
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "pipelines" / "syncs"


@dataclass
class Cli:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        lines = [line for line in self.out.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one JSON line on stdout, got {self.out!r}"
        document: dict[str, Any] = json.loads(lines[0])
        return document


@dataclass
class SyncEnv:
    emulator: Emulator
    workdir: Path
    state_path: Path
    pipelines_dir: Path
    capsys: pytest.CaptureFixture[str]

    def run(self, sync_file: Path, *args: str) -> Cli:
        self.capsys.readouterr()
        code = main(["run", str(sync_file), "--pipelines-dir", str(self.pipelines_dir), *args])
        captured = self.capsys.readouterr()
        return Cli(code, captured.out, captured.err)

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        return path

    def upserts(self) -> list[Any]:
        return [r for r in self.emulator.requests if r.route == "PUT /v3/marketing/contacts"]

    def state_summary(self, run_id: str) -> dict[str, Any]:
        with StateStore.open(self.state_path, read_only=True) as store:
            summary = store.run_summary(run_id)
        assert summary is not None
        return summary


@pytest.fixture
def sync_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[SyncEnv]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        env = SyncEnv(emulator, workdir, tmp_path / "state.duckdb", tmp_path / "dlt", capsys)
        for key, value in {
            "API_KEY": API_KEY,
            "BASE_URL": emulator.base_url,
            "STATE_PATH": str(env.state_path),
            "JOB_POLL_INTERVAL": "0.05",
        }.items():
            monkeypatch.setenv(f"DESTINATION__SENDGRID__{key}", value)
        yield env


def example(name: str) -> Path:
    return EXAMPLES / name
