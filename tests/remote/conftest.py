"""An S3 emulator on loopback for the remote-state tests: moto's server mode in a thread of the
test process, reached over real HTTP by s3fs (in this process and in worker subprocesses, via
``AWS_ENDPOINT_URL_S3``). Each test gets its own server and bucket; nothing leaves loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

BUCKET = "sendgrid-state"
_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3:
    endpoint: str
    env: dict[str, str]  # what a worker subprocess needs to reach it

    def url(self, key: str) -> str:
        return f"s3://{BUCKET}/{key}"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    import requests
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = _AWS | {"AWS_ENDPOINT_URL_S3": f"http://{host}:{port}"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        # moto's backends are shared by every server of a process: start from empty.
        requests.post(f"{env['AWS_ENDPOINT_URL_S3']}/moto-api/reset", timeout=10)
        # s3fs keeps one instance per set of arguments: drop any bound to an earlier server.
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield S3(env["AWS_ENDPOINT_URL_S3"], env)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()
