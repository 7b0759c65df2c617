"""Helpers for the emulator's contract tests: an authenticated client, and the official
OpenAPI specs as jsonschema validators with the documented allow-list of deviations."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sendgrid_destination.emulator import Emulator

API_KEY = "SG.test-key"
TERMINAL = ("completed", "errored", "failed")


class Api:
    """A thin authenticated client for one emulator (no retries, short timeouts)."""

    def __init__(self, emu: Emulator, key: str | None = None) -> None:
        self.emu = emu
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key or emu.api_key}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.emu.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def upsert(self, contacts: list[dict[str, Any]], **extra: Any) -> requests.Response:
        return self.put("/v3/marketing/contacts", json={"contacts": contacts, **extra})

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/v3/marketing/contacts/imports/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def finish(self, job_id: str, max_polls: int = 10) -> dict[str, Any]:
        """Poll the job until it is terminal, as a client would."""
        for _ in range(max_polls):
            body = self.job(job_id)
            if body["status"] in TERMINAL:
                return body
        raise AssertionError(f"job {job_id} still pending after {max_polls} polls")

    def upsert_and_finish(self, contacts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        response = self.upsert(contacts, **extra)
        assert response.status_code == 202, response.text
        return self.finish(response.json()["job_id"])


# -- the emulator as a child process ----------------------------------------------------

CHILD_TIMEOUT = 15.0


class Child:
    """A child process whose stdout is read with a deadline, never a blocking readline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._buffer = b""

    def read_lines(self, count: int, timeout: float = CHILD_TIMEOUT) -> list[str]:
        """The next ``count`` lines of stdout; ``AssertionError`` if they do not come in time."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while self._buffer.count(b"\n") < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {count} lines in {timeout} s; got {self._buffer!r}"
            readable, _, _ = select.select([self.proc.stdout], [], [], remaining)
            chunk = os.read(self.proc.stdout.fileno(), 4096) if readable else b""
            assert chunk or not readable, f"stdout closed early; got {self._buffer!r}"
            self._buffer += chunk
        lines = self._buffer.split(b"\n")
        self._buffer = b"\n".join(lines[count:])
        return [line.decode() for line in lines[:count]]

    def stop_with(self, signum: int, timeout: float = CHILD_TIMEOUT) -> tuple[int, str]:
        """Send ``signum``; the exit code and the rest of stdout, within ``timeout``."""
        self.proc.send_signal(signum)
        rest, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, (self._buffer + rest).decode()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def emulator_child(*args: str, ignore_sigint: bool = False) -> Iterator[Child]:
    """``python -m sendgrid_destination.emulator ARGS``; killed in ``finally`` whatever happens.

    ``ignore_sigint`` starts the child with SIGINT ignored, as ``nohup`` and some CI runners
    do.
    """
    command = [sys.executable, "-m", "sendgrid_destination.emulator", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        env=env,
        preexec_fn=_ignore_sigint if ignore_sigint else None,
    )
    try:
        yield Child(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=CHILD_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


# -- the official OpenAPI specs ---------------------------------------------------------

SPEC_FILES = ("tsg_mc_contacts_v3.json", "tsg_mc_custom_fields_v3.json", "tsg_mc_lists_v3.json")
_ERROR_SCHEMAS = (
    ("tsg_mc_contacts_v3.json", "ErrorResponse"),
    ("tsg_mc_contacts_v3.json", "ContactsError"),
    ("tsg_mc_custom_fields_v3.json", "CustomFieldsError"),
    ("tsg_mc_lists_v3.json", "Error"),
)


def spec_dir() -> Path:
    override = os.environ.get("SENDGRID_OPENAPI_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "sendgrid-openapi"


@dataclass(frozen=True)
class Deviation:
    """Where the emulator (following observed reality) knowingly departs from the spec."""

    name: str
    spec_says: str
    reality: str
    patch: Callable[[dict[str, Any]], None]


def _schema_at(specs: dict[str, Any], file: str, *path: str) -> dict[str, Any]:
    node = specs[file]
    for part in path:
        node = node[part]
    return node  # type: ignore[no-any-return]


def _error_field_nullable(specs: dict[str, Any]) -> None:
    for file, name in _ERROR_SCHEMAS:
        schema = _schema_at(specs, file, "components", "schemas", name)
        if name == "ErrorResponse":
            schema = schema["properties"]["errors"]["items"]
        schema["properties"]["field"] = {"type": ["string", "null"]}
        if "help" in schema["properties"]:
            schema["properties"]["help"] = {"type": ["object", "null"]}


def _delete_job_id_string(specs: dict[str, Any]) -> None:
    for path in ("/v3/marketing/contacts", "/v3/marketing/contacts/{contact_id}/identifiers"):
        op = _schema_at(specs, "tsg_mc_contacts_v3.json", "paths", path, "delete")
        schema = op["responses"]["202"]["content"]["application/json"]["schema"]
        schema["properties"]["job_id"] = {"type": "string"}


def _import_mappings_nullable(specs: dict[str, Any]) -> None:
    path = "/v3/marketing/contacts/imports"
    op = _schema_at(specs, "tsg_mc_contacts_v3.json", "paths", path, "put")
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    schema["properties"]["field_mappings"]["items"] = {"type": ["string", "null"]}


def _errors_always_wrapped(specs: dict[str, Any]) -> None:
    wrapped = {"$ref": "#/components/schemas/ErrorResponse"}
    search = "/v3/marketing/contacts/search/identifiers/{identifier_type}"
    op = _schema_at(specs, "tsg_mc_contacts_v3.json", "paths", search, "post")
    for status in ("400", "404"):
        op["responses"][status]["content"]["application/json"]["schema"] = dict(wrapped)
    lists = _schema_at(specs, "tsg_mc_lists_v3.json", "paths")
    remove = lists["/v3/marketing/lists/{id}/contacts"]["delete"]["responses"]["400"]
    remove["content"]["application/json"]["schema"] = {
        "type": "object",
        "properties": {
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}}
        },
        "required": ["errors"],
    }


# The documented allow-list. Each entry is applied as a patch to a copy of the spec; the
# test ``test_every_documented_deviation_is_still_a_real_disagreement`` proves each one is
# needed (the unpatched spec rejects what the emulator sends).
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "error_field_may_be_null",
        "errors[].field is a string (ErrorResponse uses the OpenAPI 3.0 'nullable' keyword, "
        "which 3.1 ignores); help is an object",
        'observed 401/403/429 bodies carry "field": null and "help": null '
        "(sendgrid-csharp#185, sendgrid-nodejs#1075, rate-limit docs)",
        _error_field_nullable,
    ),
    Deviation(
        "delete_job_id_is_a_string",
        "DELETE /v3/marketing/contacts (and .../{contact_id}/identifiers) answers job_id "
        "typed object",
        "job_id is a UUID string (NANGO fixture delete-contacts.test.json)",
        _delete_job_id_string,
    ),
    Deviation(
        "import_field_mappings_may_be_null",
        "ImportContact field_mappings items are strings ('nullable' is OpenAPI 3.0, ignored by "
        "3.1)",
        'the description says null skips a column (\'[null, "w1", "_rf1"]\')',
        _import_mappings_nullable,
    ),
    Deviation(
        "errors_always_wrapped",
        "search/identifiers 400/404 and DELETE /lists/{id}/contacts 400 are a bare error object",
        "every observed SendGrid error body is {'errors': [...]}; the emulator wraps these too "
        "(conservative; clients should parse both)",
        _errors_always_wrapped,
    ),
)

# Statuses the emulator answers that an operation does not declare, and why. Their bodies
# are checked against the (patched) ErrorResponse schema.
UNDECLARED_STATUSES: dict[int, str] = {
    405: "wrong method on an emulated path (plain HTTP)",
    413: "body over 6,000,000 bytes (413 is in SendGrid's error docs, not in these specs)",
    414: "request target over 8 KiB (RudderStack saw 414 on long ?ids= queries)",
    429: "rate limit (rate-limit docs; no contacts spec declares 429)",
    401: "the custom fields and lists specs declare no 401/403 at all",
    403: "the custom fields and lists specs declare no 401/403 at all",
    400: "GET /v3/marketing/lists with a bad page_size/page_token declares no 400",
}


class OpenApi:
    """Validates bodies against the official specs via jsonschema, with ``DEVIATIONS`` applied."""

    def __init__(self, folder: Path, deviations: tuple[Deviation, ...] = DEVIATIONS) -> None:
        self.raw = {name: json.loads((folder / name).read_text()) for name in SPEC_FILES}
        self.specs = copy.deepcopy(self.raw)
        for deviation in deviations:
            deviation.patch(self.specs)
        self._registry: Registry[Any] = Registry().with_resources(
            (_uri(name), Resource.from_contents(doc, default_specification=DRAFT202012))
            for name, doc in self.specs.items()
        )

    def operation(self, route: str) -> tuple[str, str, dict[str, Any]]:
        method, path = route.split(" ", 1)
        for name, doc in self.specs.items():
            op = doc["paths"].get(path, {}).get(method.lower())
            if op is not None:
                return name, f"/paths/{_escape(path)}/{method.lower()}", op
        raise KeyError(f"{route} is not in the specs")

    def check_request(self, route: str, body: Any) -> None:
        name, pointer, _ = self.operation(route)
        self._validate(name, f"{pointer}/requestBody/content/application~1json/schema", body)

    def check_response(self, route: str, response: requests.Response) -> None:
        """The body against the spec's schema, then ``_check_what_the_spec_says``: the specs
        mark almost nothing required and keep enums in descriptions, so a schema alone
        accepts ``{}`` for a job or an error."""
        self._check_schema(route, response)
        _check_what_the_spec_says(route, response)

    def _check_schema(self, route: str, response: requests.Response) -> None:
        name, pointer, op = self.operation(route)
        status = str(response.status_code)
        declared = op["responses"].get(status)
        if declared is None:
            assert response.status_code in UNDECLARED_STATUSES, (
                f"{route} answered undeclared status {status}"
            )
            self._validate(
                "tsg_mc_contacts_v3.json", "/components/schemas/ErrorResponse", response.json()
            )
            return
        if "$ref" in declared:
            pointer = declared["$ref"].lstrip("#")
        else:
            pointer = f"{pointer}/responses/{status}"
        if "content" in _resolve(self.specs[name], pointer):
            self._validate(name, f"{pointer}/content/application~1json/schema", response.json())

    def _validate(self, name: str, pointer: str, instance: Any) -> None:
        schema = {"$ref": f"{_uri(name)}#{quote(pointer, safe='/~')}"}
        validator = Draft202012Validator(
            schema, registry=self._registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        validator.validate(instance)


# Where the specs say it in prose ("Allowed values: `pending`, `completed`, `errored`, or
# `failed`"; the 202 "returns a job_id"; an import "returns" its upload URI and headers).
_JOB_STATUSES = {"pending", "completed", "errored", "failed"}
_ANSWERS_A_JOB = {
    "PUT /v3/marketing/contacts": 202,
    "DELETE /v3/marketing/contacts": 202,
    "DELETE /v3/marketing/lists/{id}/contacts": 202,
    "PUT /v3/marketing/contacts/imports": 200,
}


def _check_what_the_spec_says(route: str, response: Any) -> None:
    status = response.status_code
    if status >= 400:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        assert isinstance(errors, list) and errors, f"{route} {status}: no errors list: {body}"
        assert all(isinstance(e, dict) and isinstance(e.get("message"), str) for e in errors), (
            f"{route} {status}: an error without a message: {body}"
        )
        return
    if _ANSWERS_A_JOB.get(route) == status:
        body = response.json()
        assert isinstance(body.get("job_id"), str) and body["job_id"], f"{route}: no job_id"
        if route.endswith("/imports"):
            assert isinstance(body.get("upload_uri"), str), f"{route}: no upload_uri"
            assert isinstance(body.get("upload_headers"), list), f"{route}: no upload_headers"
    if route == "GET /v3/marketing/contacts/imports/{id}" and status == 200:
        assert response.json().get("status") in _JOB_STATUSES, f"{route}: status not allowed"


def _uri(name: str) -> str:
    return f"urn:sendgrid-openapi:{name}"


def _escape(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def _resolve(doc: dict[str, Any], pointer: str) -> dict[str, Any]:
    node: Any = doc
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node  # type: ignore[no-any-return]
