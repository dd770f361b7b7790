"""Python client for a Quarry server (httpx). Errors mirror the server's: the same
``QuarryError`` subclasses, with the server's ``detail``.

    from quarry import Client
    with Client("http://127.0.0.1:8080") as q:
        q.line("weblines", 42)
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

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
