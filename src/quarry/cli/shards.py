"""``quarry shards``: how a dataset is split into shards, and a server's shards (state, memory,
load; wake and sleep). Also the shard-backend options shared by ``serve`` and ``find``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quarry.cli.common import DEFAULT_DATA, DataOpt, JsonOpt, VersionOpt, emit, errors, read_store
from quarry.defaults import DEFAULT_SHARDS
from quarry.errors import BadRequest, QuarryError, ShardUnavailable

if TYPE_CHECKING:
    from quarry.cluster.dispatcher import Dispatcher
    from quarry.engine import Engine

shards_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Shards: layout of a dataset, state of a server's shards.")

ShardsOpt = Annotated[int, typer.Option("--shards", min=1, max=4096,
                                        help="Shards a version is split into.")]
WorkersOpt = Annotated[int, typer.Option(
    "--workers", min=0, max=256, help="Run shards on a local pool of this many processes.")]
ShardWorkersOpt = Annotated[int, typer.Option(
    "--shard-workers", min=0, max=256,
    help="Run shards on a local pool of this many processes (per server worker).")]
RayOpt = Annotated[bool, typer.Option("--ray", help="Run shards as actors on a local Ray "
                                                    "cluster (pip install 'quarry[ray]').")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="Run shards as actors on this Ray cluster (e.g. ray://head:10001).")]
RemoteOpt = Annotated[list[str] | None, typer.Option(
    "--remote", help="A remote Quarry server as a shard: URL, or URL,URL,... for replicas "
                     "(repeatable; one shard each).")]
ReplicasOpt = Annotated[int, typer.Option("--replicas", min=1, max=16,
                                          help="Ray actors per shard.")]
OnErrorOpt = Annotated[str, typer.Option(
    "--on-shard-error", help="fail (error naming the shard) or partial (answer flagged "
                             "partial).")]
TimeoutOpt = Annotated[float, typer.Option("--shard-timeout", min=0.001,
                                           help="Seconds a shard may take, retries included.")]
BudgetOpt = Annotated[str | None, typer.Option(
    "--memory-budget", help="Memory for awake shards (e.g. 2G); the least recently used "
                            "fall asleep beyond it.")]
UrlOpt = Annotated[str, typer.Option("--url", help="The Quarry server.")]


def parse_size(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = int(float(num) * units[unit])
    except ValueError:
        raise BadRequest(f"not a size: {text!r} (use e.g. 512M or 2G)") from None
    if value <= 0:
        raise BadRequest("the memory budget must be positive")
    return value


def check_backend(workers: int, ray: bool, ray_address: str | None, remote: list[str] | None,
                  on_error: str, server_workers: int = 1) -> None:
    from quarry.cluster.backends import BackendSpec

    BackendSpec.choose(workers=workers, ray=ray, ray_address=ray_address,
                       remote=tuple(remote or ()))
    if on_error not in ("fail", "partial"):
        raise BadRequest("--on-shard-error must be fail or partial")
    if ray and not ray_address and server_workers > 1:
        raise BadRequest("--ray starts one local cluster per server worker; start one with "
                         "`ray start --head` and pass --ray-address instead")


@contextmanager
def dispatcher(engine: Engine, *, shards: int = DEFAULT_SHARDS, workers: int = 0,
               ray: bool = False, ray_address: str | None = None,
               remote: list[str] | None = None, on_error: str = "fail",
               timeout: float = 30.0) -> Iterator[Dispatcher]:
    """A dispatcher for one CLI command, closed (pool and actors stopped) afterwards."""
    from quarry.cluster.backends import BackendSpec, make_backend
    from quarry.cluster.dispatcher import Dispatcher, Policy

    check_backend(workers, ray, ray_address, remote, on_error)
    spec = BackendSpec.choose(workers=workers, ray=ray, ray_address=ray_address,
                              remote=tuple(remote or ()), timeout_s=timeout)
    d = Dispatcher(engine, make_backend(spec, engine, shards), shards=shards,
                   policy=Policy(on_error=on_error, timeout_s=timeout))  # type: ignore[arg-type]
    try:
        yield d
    finally:
        d.close()


def _request(method: str, url: str) -> Any:
    import httpx
    import orjson

    try:
        r = httpx.request(method, url, timeout=30.0)
    except httpx.HTTPError as e:
        raise ShardUnavailable(f"{url} is unreachable: {type(e).__name__}") from None
    body = orjson.loads(r.content) if r.content else {}
    if r.status_code >= 400:
        err = QuarryError(body.get("detail", r.text) if isinstance(body, dict) else r.text)
        err.exit_code = 3 if r.status_code == 404 else 1
        raise err
    return body


def register(app: typer.Typer) -> None:
    app.add_typer(shards_app, name="shards")

    @shards_app.command("layout")
    def layout_cmd(name: str, shards: ShardsOpt = DEFAULT_SHARDS,
                   version: VersionOpt = None, as_json: JsonOpt = False,
                   data: DataOpt = DEFAULT_DATA) -> None:
        """How a version of a records dataset is split into shards (chunks, rows, times)."""
        from quarry.cluster.shards import layout
        from quarry.engine import Engine

        with errors():
            view = Engine(read_store(data)).records(name, version)
            emit([{"id": s.id, "chunks": list(s.chunks), "rows": s.rows,
                    "time_range": [s.ts_range[0] / 1e6, s.ts_range[1] / 1e6],
                    "awake_bytes": s.index_bytes} for s in layout(view, shards)], as_json)

    @shards_app.command("status")
    def status(url: UrlOpt = "http://127.0.0.1:8080",
               dataset: Annotated[str | None, typer.Option(
                   "--dataset", help="Lay this dataset out first.")] = None,
               as_json: JsonOpt = False) -> None:
        """A server's shards: backend, state (awake/asleep), memory and load."""
        with errors():
            q = f"?dataset={dataset}" if dataset else ""
            emit(_request("GET", f"{url.rstrip('/')}/shards{q}"), as_json)

    @shards_app.command("wake")
    def wake(shard: str, url: UrlOpt = "http://127.0.0.1:8080", as_json: JsonOpt = False) -> None:
        """Wake a server's shard: its indexes go into memory."""
        with errors():
            emit(_request("POST", f"{url.rstrip('/')}/shards/{shard}/wake"), as_json)

    @shards_app.command("sleep")
    def sleep(shard: str, url: UrlOpt = "http://127.0.0.1:8080",
              as_json: JsonOpt = False) -> None:
        """Put a server's shard to sleep: it answers by scanning until woken."""
        with errors():
            emit(_request("POST", f"{url.rstrip('/')}/shards/{shard}/sleep"), as_json)
