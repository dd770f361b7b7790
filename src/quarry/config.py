"""``quarry.yaml``: what ``quarry up`` starts (HTTP, event bus, ZeroMQ endpoint, pipelines).

Parsed into frozen dataclasses; every mistake is a ``BadRequest`` naming the key at fault.
Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from quarry.access import is_loopback
from quarry.errors import BadConfig, BadRequest, NotFound
from quarry.store.refs import check_dataset_name

ENDPOINT = re.compile(r"(tcp|ipc|inproc)://\S+")
CALLABLE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Stage:
    """One pipeline step: when ``source`` gets a new version, transform it into ``target``."""

    name: str
    source: str
    target: str
    run: str | None = None  # shell command: source data on stdin, new data on stdout
    call: str | None = None  # "module:function", called with the data as bytes
    kind: str | None = None  # of the target; default: the source's kind
    timeout: float = 600.0


@dataclass(frozen=True)
class Curve:
    """ZeroMQ CURVE for the endpoints bound beyond loopback: the server's key pair and the
    client public keys let in (both in zmq.auth's certificate format)."""

    server_key: Path  # NAME.key_secret: the server's public and secret keys
    clients: Path  # a folder of NAME.key files, one per client let in


@dataclass(frozen=True)
class Config:
    data: Path
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # HTTP worker processes
    pub: str = "tcp://127.0.0.1:5100"
    # The original service's one-frame ``=====<resource>`` notices, on a PUB of their own.
    legacy_pub: str | None = "tcp://127.0.0.1:5101"
    rep: str | None = "tcp://127.0.0.1:5000"
    stages: tuple[Stage, ...] = ()
    folder: Path = Path(".")
    log_level: str = "warning"
    curve: Curve | None = None
    # HTTP writes need this token (Authorization: Bearer); QUARRY_TOKEN when not set here.
    token: str | None = None
    # Datasets (and names under them) that need the token over HTTP and a CURVE client over
    # ZeroMQ; their events go only to those.
    closed: tuple[str, ...] = ()


def is_local_endpoint(endpoint: str) -> bool:
    """Whether only this machine can connect to ``endpoint``: tcp on a loopback address (or
    ``localhost``), ipc (a file) or inproc. ``*``, ``0.0.0.0``, an interface name or any
    other address is reachable from elsewhere."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rpartition(":")[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return is_loopback(host)


def _section(doc: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, Mapping):
        raise BadRequest(f"config: '{key}' must be a mapping")
    unknown = set(value) - allowed
    if unknown:
        raise BadRequest(f"config: unknown key(s) in '{key}': {', '.join(sorted(unknown))}")
    return value


def _endpoint(value: Any, where: str) -> str:
    if not isinstance(value, str) or not ENDPOINT.fullmatch(value):
        raise BadRequest(f"config: {where} must be a ZeroMQ endpoint like "
                         f"tcp://127.0.0.1:5100, got {value!r}")
    return value


def _stage(raw: Any, i: int) -> Stage:
    where = f"pipelines[{i}]"
    if not isinstance(raw, Mapping):
        raise BadRequest(f"config: {where} must be a mapping")
    allowed = {"name", "source", "target", "run", "call", "kind", "timeout"}
    unknown = set(raw) - allowed
    if unknown:
        raise BadRequest(f"config: unknown key(s) in {where}: {', '.join(sorted(unknown))}")
    for key in ("name", "source", "target"):
        if not isinstance(raw.get(key), str):
            raise BadRequest(f"config: {where} needs '{key}' (a string)")
    name = raw["name"]
    if not STAGE_NAME.fullmatch(name):
        raise BadRequest(f"config: {where}: invalid stage name {name!r}")
    check_dataset_name(raw["source"])
    check_dataset_name(raw["target"])
    run, call = raw.get("run"), raw.get("call")
    if (run is None) == (call is None):
        raise BadRequest(f"config: stage {name} needs exactly one of 'run' (a shell command) "
                         "or 'call' (module:function)")
    if run is not None and (not isinstance(run, str) or not run.strip()):
        raise BadRequest(f"config: stage {name}: 'run' must be a shell command")
    if call is not None and (not isinstance(call, str) or not CALLABLE.fullmatch(call)):
        raise BadRequest(f"config: stage {name}: 'call' must look like package.module:function")
    kind = raw.get("kind")
    if kind is not None and kind not in ("lines", "document", "records"):
        raise BadRequest(f"config: stage {name}: unknown kind {kind!r}")
    timeout = raw.get("timeout", 600.0)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise BadRequest(f"config: stage {name}: 'timeout' must be a positive number of seconds")
    return Stage(name, raw["source"], raw["target"], run, call, kind, float(timeout))


def _check_graph(stages: tuple[Stage, ...]) -> None:
    names = [s.name for s in stages]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise BadRequest(f"config: duplicate stage name(s): {', '.join(sorted(dupes))}")
    # A cycle would make every version trigger the next forever.
    edges: dict[str, set[str]] = {}
    for s in stages:
        edges.setdefault(s.source, set()).add(s.target)

    def visit(node: str, path: tuple[str, ...]) -> None:
        for nxt in edges.get(node, ()):
            if nxt in path:
                raise BadRequest(f"config: pipelines form a cycle: {' -> '.join((*path, nxt))}")
            visit(nxt, (*path, nxt))

    for start in edges:
        visit(start, (start,))


def parse_config(doc: Any, folder: Path) -> Config:
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise BadRequest("config: the file must hold a mapping")
    unknown = set(doc) - {"data", "http", "events", "compat", "pipelines", "log_level",
                          "curve", "access"}
    if unknown:
        raise BadRequest(f"config: unknown key(s): {', '.join(sorted(unknown))}")
    http = _section(doc, "http", {"host", "port", "workers"})
    raw_events = doc.get("events") or {}
    if isinstance(raw_events, Mapping) and "legacy" in raw_events:
        # Its frames used to share the main PUB; a bare true/false cannot say where they go.
        raise BadRequest("config: events.legacy was replaced by events.legacy_pub: the "
                         "endpoint for the original '=====<resource>' frames (false: none)")
    events = _section(doc, "events", {"pub", "legacy_pub"})
    pub = _endpoint(events.get("pub", "tcp://127.0.0.1:5100"), "events.pub")
    legacy_raw = events.get("legacy_pub", "tcp://127.0.0.1:5101")
    legacy_pub = None if legacy_raw is False else _endpoint(legacy_raw, "events.legacy_pub")
    compat_raw = doc.get("compat", {})
    rep: str | None
    if compat_raw is False:
        rep = None
    else:
        compat = _section(doc, "compat", {"rep"})
        rep = _endpoint(compat.get("rep", "tcp://127.0.0.1:5000"), "compat.rep")
    bound = [(k, e) for k, e in (("compat.rep", rep), ("events.pub", pub),
                                 ("events.legacy_pub", legacy_pub)) if e is not None]
    for i, (key, endpoint) in enumerate(bound):
        for other, same in bound[:i]:
            if endpoint == same:
                raise BadRequest(f"config: {key} and {other} are both {endpoint}; each needs "
                                 "an endpoint of its own")
    curve = _curve(doc, folder)
    public = [f"{key} {endpoint}" for key, endpoint in bound if not is_local_endpoint(endpoint)]
    if public and curve is None:
        # REP's PUTs run the pipelines' shell transforms; the PUBs name closed datasets.
        raise BadConfig(f"config: {' and '.join(public)} "
                        f"{'listens' if len(public) == 1 else 'listen'} beyond loopback, "
                        "where ZeroMQ needs authentication: set 'curve' (server_key, clients; "
                        "see docs/snapshots.md) or bind to 127.0.0.1")
    port = http.get("port", 8080)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise BadRequest(f"config: http.port must be a port number, got {port!r}")
    workers = http.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 256:
        raise BadRequest(f"config: http.workers must be an integer from 1 to 256, "
                         f"got {workers!r}")
    raw_stages = doc.get("pipelines") or []
    if not isinstance(raw_stages, list):
        raise BadRequest("config: 'pipelines' must be a list of stages")
    stages = tuple(_stage(s, i) for i, s in enumerate(raw_stages))
    _check_graph(stages)
    access = _section(doc, "access", {"token", "closed"})
    token = access.get("token")
    if token is not None and not (isinstance(token, str) and token):
        raise BadRequest("config: access.token must be a non-empty string")
    closed = access.get("closed", [])
    if not (isinstance(closed, list) and all(isinstance(c, str) for c in closed)):
        raise BadRequest("config: access.closed must be a list of dataset names")
    for name in closed:
        check_dataset_name(name)
    data = Path(str(doc.get("data", "quarry-data")))
    return Config(
        data=data if data.is_absolute() else folder / data,
        host=str(http.get("host", "127.0.0.1")), port=port, workers=workers,
        pub=pub, legacy_pub=legacy_pub, rep=rep, stages=stages,
        folder=folder, log_level=str(doc.get("log_level", "warning")), curve=curve,
        token=token, closed=tuple(closed),
    )


def _curve(doc: Mapping[str, Any], folder: Path) -> Curve | None:
    if doc.get("curve") is None:
        return None
    raw = _section(doc, "curve", {"server_key", "clients"})
    paths = []
    for key, want, exists in (("server_key", "a file", Path.is_file),
                              ("clients", "a folder", Path.is_dir)):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise BadConfig(f"config: curve.{key} must be the path of {want}")
        path = Path(value) if Path(value).is_absolute() else folder / value
        if not exists(path):
            raise BadConfig(f"config: curve.{key}: {path} is not {want}")
        paths.append(path)
    return Curve(paths[0], paths[1])


def load_config(path: Path) -> Config:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotFound(f"no config file {path}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BadRequest(f"config {path.name} is not valid YAML: {e}") from None
    return parse_config(doc, path.resolve().parent)
