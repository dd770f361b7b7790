"""The OpenAPI description against the real server: schemathesis generates requests from
``/openapi.json`` and checks what ``python -m quarry serve`` answers.

The server runs with a token, and every request carries it, so writes (PUT of versions and
aliases, DELETE of aliases, key and shard POSTs) are exercised too, against a throwaway data
folder. Left out: ``GET /events`` (an endless stream) and ``DELETE /datasets/<name>`` (it
would take the datasets away from the other operations). Not checked: that every schema-valid
request is accepted (``positive_data_acceptance``): which routes a dataset takes depends on
its kind (``/find`` on a lines dataset is a 400), a line past the end is a 413, and a window's
start must not be after its end; the description documents those 400s and 413s, but a schema
cannot say them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", minversion="4.0")

from schemathesis.engine import from_schema  # noqa: E402
from schemathesis.engine.events import FatalError, NonFatalError, ScenarioFinished  # noqa: E402

from quarry.datasets.kinds import put_bytes  # noqa: E402
from quarry.datasets.lines import put_lines  # noqa: E402
from quarry.datasets.records_ingest import ingest  # noqa: E402
from quarry.formats.textblocks import expand_sources  # noqa: E402
from quarry.store import Store  # noqa: E402
from tests.support import FIXTURES, free_port, quarry_cmd, running  # noqa: E402

TOKEN = "conformance-token"
CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "response_headers_conformance", "negative_data_rejection",
    "unsupported_method", "allow_header_conformance", "missing_required_header",
)
# /shards/map takes the cluster's wire format: any bytes are a fair (malformed) task.
schemathesis.serializer.alias("application/x-quarry-wire", "application/octet-stream")


def _data(root: Path) -> Path:
    """One dataset of each kind: lines (the default), records (an access log), a document."""
    store = Store(root)
    text = root.parent / "frank.txt"
    lines = (FIXTURES / "lines" / "frankenstein.txt").read_bytes().splitlines(keepends=True)
    text.write_bytes(b"".join(lines[:200]))
    put_lines(store, "frank", text)
    log = FIXTURES / "accesslogs" / "apache_logs_head1500"
    ingest(store, "logs", expand_sources([str(log)]), chunk_rows=500)
    put_bytes(store, "doc", b'{"hello": "world"}', kind="document")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = _data(tmp_path_factory.mktemp("conformance") / "data")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = quarry_cmd("serve", "--data", str(data), "--port", str(port), "--workers", "1",
                      "--token", TOKEN, "--default", "frank")
    with running(args, f"{url}/healthz"):
        yield url


def _failures(events: Iterable[Any]) -> list[str]:
    """Every failed check and engine error of a run, as "operation: check: title"."""
    found: list[str] = []
    for event in events:
        if isinstance(event, ScenarioFinished):
            for nodes in event.recorder.checks.values():
                found.extend(f"{event.recorder.label}: {n.name}: {n.failure_info.failure.title}"
                             f"\n    {n.failure_info.code_sample}"
                             for n in nodes if n.failure_info is not None)
        elif isinstance(event, NonFatalError | FatalError):
            found.append(f"error: {event}")
    return sorted(set(found))


@pytest.mark.slow
def test_the_server_answers_as_described(server: str) -> None:
    config = schemathesis.Config.from_dict({
        "seed": 20240601,
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "request-timeout": 10,
        "generation": {"max-examples": 15, "deterministic": True, "database": "none"},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json", config=config)
    schema = schema.exclude(path="/events")
    # A DELETE of a dataset would remove the fixture's datasets for every later request;
    # tests/server/test_delete_routes.py checks it (and its OpenAPI answers) instead.
    schema = schema.exclude(path="/datasets/{name}", method="DELETE")
    # Every phase the CLI runs: explicit examples, coverage of each parameter's edges,
    # fuzzing (valid and invalid data) and stateful sequences along the inferred links.
    failures = _failures(from_schema(schema).execute())
    assert not failures, "\n".join(failures)
