"""Python client for a Quarry server (httpx). Errors mirror the server's: the same
``QuarryError`` subclasses, with the server's ``detail``.

    from quarry import Client
    with Client("http://127.0.0.1:8080") as q:
        q.line("weblines", 42)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from quarry import errors
from quarry.errors import QuarryError

_BY_NAME: dict[str, type[QuarryError]] = {}
for _cls in vars(errors).values():
    if isinstance(_cls, type) and issubclass(_cls, QuarryError) and _cls is not QuarryError:
        _BY_NAME.setdefault(_cls.error, _cls)
_BY_STATUS: dict[int, type[QuarryError]] = {
    400: errors.BadRequest, 401: errors.Unauthorized, 404: errors.NotFound,
    409: errors.Conflict, 412: errors.PreconditionFailed, 413: errors.OutOfRange,
    503: errors.Unavailable, 507: errors.InsufficientStorage,
}


def error_from_response(r: httpx.Response) -> QuarryError:
    """The server's error as the matching QuarryError subclass."""
    try:
        body = r.json()
    except ValueError:
        body = {"detail": r.text[:500]}
    if not isinstance(body, dict):
        body = {"detail": str(body)[:500]}
    cls = _BY_NAME.get(str(body.get("error")), _BY_STATUS.get(r.status_code, QuarryError))
    detail = str(body.get("detail") or f"HTTP {r.status_code}")
    extra = {k: v for k, v in body.items() if k not in ("error", "detail")}
    err = cls(detail, **extra)
    err.status = r.status_code
    return err


def _ips(ips: str | Iterable[str]) -> str:
    return ips if isinstance(ips, str) else ",".join(ips)


class Client:
    """One connection pool to one server. Methods map one-to-one onto HTTP routes."""

    def __init__(self, url: str = "http://127.0.0.1:8080", *, token: str | None = None,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout,
                                 transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise error_from_response(r)
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    @staticmethod
    def _params(**kw: Any) -> dict[str, Any]:
        return {k: v for k, v in kw.items() if v is not None}

    # -- operations ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return dict(self._json("GET", "/healthz"))

    def metrics(self) -> str:
        return self.request("GET", "/metrics").text

    # -- datasets and lines ----------------------------------------------------------------
    def datasets(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/datasets"))

    def dataset(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/datasets/{name}"))

    def line(self, name: str | None, n: int, *, version: str | None = None) -> str:
        """Line ``n`` of dataset ``name`` (or of the server's default dataset when None)."""
        path = f"/lines/{n}" if name is None else f"/datasets/{name}/lines/{n}"
        return self.request("GET", path, params=self._params(version=version)).text

    def lines(self, name: str, start: int, count: int = 100, *,
              version: str | None = None) -> list[str]:
        r = self.request("GET", f"/datasets/{name}/lines",
                         params=self._params(start=start, count=count, version=version))
        return r.text.split("\n")[:-1]

    # -- versions --------------------------------------------------------------------------
    def put(self, name: str, data: bytes | IO[bytes] | Path, *, kind: str | None = None,
            message: str = "", if_match: str | None = None) -> dict[str, Any]:
        """Store ``data`` as a new version; the reply says whether one was created."""
        headers = {"if-match": if_match} if if_match else {}
        if isinstance(data, Path):
            with open(data, "rb") as f:
                return dict(self._json("PUT", f"/datasets/{name}", content=f, headers=headers,
                                       params=self._params(kind=kind, message=message)))
        return dict(self._json("PUT", f"/datasets/{name}", content=data, headers=headers,
                               params=self._params(kind=kind, message=message)))

    def data(self, name: str, version: str | None = None) -> bytes:
        return self.request("GET", f"/datasets/{name}/data",
                            params=self._params(version=version)).content

    def versions(self, name: str, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/datasets/{name}/versions",
                               params={"limit": limit})["versions"])

    def aliases(self, name: str) -> dict[str, str]:
        return dict(self._json("GET", f"/datasets/{name}/aliases"))

    def set_alias(self, name: str, alias: str, version: str | None = None) -> dict[str, Any]:
        return dict(self._json("PUT", f"/datasets/{name}/aliases/{alias}",
                               params=self._params(version=version)))

    def delete_alias(self, name: str, alias: str) -> dict[str, Any]:
        return dict(self._json("DELETE", f"/datasets/{name}/aliases/{alias}"))

    def delete(self, name: str) -> dict[str, Any]:
        """Remove a dataset (its versions stay until gc): ``{"dataset", "deleted",
        "version", "aliases"}``."""
        return dict(self._json("DELETE", f"/datasets/{name}"))

    def events(self, dataset: str | None = None, *, event: str | None = None,
               limit: int | None = None, since: int | None = None) -> Iterator[dict[str, Any]]:
        """Server-Sent Events as dicts (with their ``id``), until ``limit`` or the server ends."""
        params = self._params(dataset=dataset, event=event, limit=limit, since=since)
        with self.http.stream("GET", "/events", params=params,
                              timeout=httpx.Timeout(None, connect=10.0)) as r:
            if r.status_code >= 400:
                r.read()
                raise error_from_response(r)
            ident: str | None = None
            for line in r.iter_lines():
                if line.startswith("id:"):
                    ident = line[3:].strip()
                elif line.startswith("data:"):
                    doc = json.loads(line[5:])
                    if ident is not None:
                        doc.setdefault("id", ident)
                    yield doc
                elif not line:
                    ident = None

    # -- access-log records ----------------------------------------------------------------
    def find(self, name: str, ips: str | Iterable[str], start: float | str | None = None,
             end: float | str | None = None, *, limit: int | None = None,
             version: str | None = None, arrow: bool = False) -> Any:
        """Records of ``ips`` in the window, sorted by time: a list of dicts, or an Arrow table.

        Pages through the server's cursor until ``limit`` records (or all) are read.
        """
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self._json("POST", f"/datasets/{name}/find", json=self._params(
                ips=list([ips] if isinstance(ips, str) else ips), start=start, end=end,
                version=version, cursor=cursor,
                limit=None if limit is None else limit - len(out)))
            out.extend(page["records"])
            cursor = page.get("next_cursor")
            if cursor is None or (limit is not None and len(out) >= limit):
                break
        if arrow:
            import pyarrow as pa

            return pa.Table.from_pylist(out, schema=pa.schema([("ip", pa.string()),
                                                               ("ts", pa.float64())]))
        return out

    def find_compat(self, ips: str | Iterable[str], start: float, end: float,
                    name: str | None = None) -> list[list[Any]]:
        """The original ``/find/[ips]/<start>/<end>/`` route: ``[[ip, ts], ...]``."""
        path = f"/find/[{_ips(ips)}]/{start}/{end}/"
        return list(self._json("GET", path if name is None else f"/datasets/{name}{path}"))

    def member(self, name: str, ips: str | Iterable[str], start: float | str | None = None,
               end: float | str | None = None, *, version: str | None = None) -> dict[str, bool]:
        """For each IP, whether it visited within the window."""
        return dict(self._json("POST", f"/datasets/{name}/find/member", json=self._params(
            ips=list([ips] if isinstance(ips, str) else ips), start=start, end=end,
            version=version))["members"])

    def visits(self, name: str, ip: str, start: float | str | None = None,
               end: float | str | None = None, *, bucket: int | None = None,
               limit: int | None = None, version: str | None = None) -> dict[str, Any]:
        return dict(self._json("POST", f"/datasets/{name}/find/visits", json=self._params(
            ip=ip, start=start, end=end, bucket=bucket, limit=limit, version=version)))

    def distinct_ips(self, name: str, start: float | str | None = None,
                     end: float | str | None = None, *, limit: int | None = None,
                     offset: int | None = None, order: str | None = None,
                     version: str | None = None) -> dict[str, Any]:
        return dict(self._json("POST", f"/datasets/{name}/find/ips", json=self._params(
            start=start, end=end, limit=limit, offset=offset, order=order, version=version)))

    # -- keyed queries over records of any schema ----------------------------------------
    def query(self, name: str, where: dict[str, Any] | None = None, *,
              fields: list[str] | None = None, limit: int | None = None,
              cursor: str | None = None, version: str | None = None,
              explain: bool = False) -> dict[str, Any]:
        """One page of rows matching ``where`` (see docs/http.md for the filter shape)."""
        return dict(self._json("POST", f"/datasets/{name}/query", json=self._params(
            where=where, fields=fields, limit=limit, cursor=cursor, version=version,
            explain=explain or None)))

    def query_all(self, name: str, where: dict[str, Any] | None = None, *,
                  fields: list[str] | None = None,
                  version: str | None = None) -> Iterator[dict[str, Any]]:
        """Every matching row, following cursors (all pages come from one version)."""
        cursor = None
        while True:
            page = self.query(name, where, fields=fields, cursor=cursor, version=version)
            yield from page["rows"]
            cursor = page["next_cursor"]
            if cursor is None:
                return
            version = page["version"]

    def explain(self, name: str, where: dict[str, Any] | None = None, *,
                version: str | None = None) -> dict[str, Any]:
        return dict(self._json("POST", f"/datasets/{name}/explain",
                               json=self._params(where=where, version=version)))

    def keys(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/datasets/{name}/keys"))

    def accept_key(self, name: str, fields: list[str], *, build: bool = True) -> dict[str, Any]:
        return dict(self._json("POST", f"/datasets/{name}/keys",
                               json={"fields": fields, "build": build}))

    def build_keys(self, name: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/datasets/{name}/keys/build"))

    def join(self, name: str, rows: list[dict[str, Any]], on: list[str] | dict[str, str], *,
             how: str = "inner", where: dict[str, Any] | None = None,
             fields: list[str] | None = None, version: str | None = None) -> dict[str, Any]:
        """Look up ``rows`` by the ``on`` fields: matches with ``_probe`` (the row's index)."""
        return dict(self._json("POST", f"/datasets/{name}/join", json=self._params(
            rows=rows, on=on, how=how, where=where, fields=fields, version=version)))

    def stats(self, name: str, aggregates: Iterable[str | dict[str, Any]],
              filters: Iterable[dict[str, Any]] = (), *, where: dict[str, Any] | None = None,
              version: str | None = None) -> dict[str, Any]:
        """Statistics over a records dataset (``count``, ``top_k:field:k``, ...) of the rows
        matching ``where`` (the ``query`` filter language; ``filters`` is the older list)."""
        return dict(self._json("POST", f"/datasets/{name}/stats", json=self._params(
            aggregates=list(aggregates), filters=list(filters) or None, where=where,
            version=version)))

    def shards(self, dataset: str | None = None) -> dict[str, Any]:
        """The server's shards: backend, state (awake/asleep), memory and load."""
        return dict(self._json("GET", "/shards", params=self._params(dataset=dataset)))

    def wake_shard(self, shard: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/shards/{shard}/wake"))

    def sleep_shard(self, shard: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/shards/{shard}/sleep"))

    def shard_map(self, task: Any) -> dict[str, Any]:
        """Run a shard task (quarry.cluster.ops.Task) on the server: its combined partial and
        what it could not reach. What a parent dispatcher's remote backend does."""
        from quarry.cluster import wire

        r = self.request("POST", "/shards/map", content=wire.pack(task),
                         headers={"content-type": wire.MEDIA_TYPE})
        return dict(wire.unpack(r.content))


# Every route the client covers, as (method, path template): a test compares this with the
# server's routes so a new endpoint cannot be forgotten here.
COVERED = frozenset({
    ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/datasets"),
    ("GET", "/datasets/{name:dataset}"), ("GET", "/lines/{n}"),
    ("GET", "/datasets/{name:path}/lines/{n}"), ("GET", "/datasets/{name:path}/lines"),
    ("PUT", "/datasets/{name:dataset}"), ("DELETE", "/datasets/{name:dataset}"),
    ("GET", "/datasets/{name:path}/data"),
    ("GET", "/datasets/{name:path}/versions"), ("GET", "/datasets/{name:path}/aliases"),
    ("PUT", "/datasets/{name:path}/aliases/{alias}"),
    ("DELETE", "/datasets/{name:path}/aliases/{alias}"), ("GET", "/events"),
    ("POST", "/datasets/{name:path}/find"), ("POST", "/datasets/{name:path}/find/member"),
    ("POST", "/datasets/{name:path}/find/visits"), ("POST", "/datasets/{name:path}/find/ips"),
    ("GET", "/find/{ips}/{start}/{end}/"),
    ("GET", "/datasets/{name:path}/find/{ips}/{start}/{end}/"),
    ("POST", "/datasets/{name:path}/stats"),
    ("GET", "/shards"), ("POST", "/shards/{shard:path}/wake"),
    ("POST", "/shards/{shard:path}/sleep"), ("POST", "/shards/map"),
    ("POST", "/datasets/{name:path}/query"), ("POST", "/datasets/{name:path}/explain"),
    ("GET", "/datasets/{name:path}/keys"), ("POST", "/datasets/{name:path}/keys"),
    ("POST", "/datasets/{name:path}/keys/build"), ("POST", "/datasets/{name:path}/join"),
})
# Routes that are the same operation as a covered one by another method or spelling.
EQUIVALENT = {
    ("GET", "/datasets/{name:path}/find"): ("POST", "/datasets/{name:path}/find"),
    ("GET", "/datasets/{name:path}/find/member"): ("POST", "/datasets/{name:path}/find/member"),
    ("GET", "/datasets/{name:path}/find/visits"): ("POST", "/datasets/{name:path}/find/visits"),
    ("GET", "/datasets/{name:path}/find/ips"): ("POST", "/datasets/{name:path}/find/ips"),
    ("GET", "/datasets/{name:path}/find/member/{ips}/{start}/{end}/"):
        ("POST", "/datasets/{name:path}/find/member"),
}
