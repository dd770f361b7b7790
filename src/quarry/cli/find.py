"""``quarry find``: records of IPs in a window, membership, visits of one IP, distinct IPs."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from quarry.cli.common import DEFAULT_DATA, DataOpt, errors, read_store
from quarry.cli.shards import (
    RayAddressOpt,
    RayOpt,
    RemoteOpt,
    ShardsOpt,
    WorkersOpt,
    dispatcher,
)
from quarry.cluster.dispatcher import DEFAULT_SHARDS
from quarry.engine import Engine
from quarry.errors import BadRequest
from quarry.formats.ipaddr import format_ips, parse_ip
from quarry.query import iplog
from quarry.query.model import (
    DEFAULT_LIMIT,
    DistinctQuery,
    FindQuery,
    MembershipQuery,
    VisitsQuery,
    check_limit,
    ip_list,
    window,
)

find_app = typer.Typer(no_args_is_help=True,
                       help="Query records datasets by IP and time window.")

IpsOpt = Annotated[list[str], typer.Option("--ip", "-i", help="IP address (repeatable, or "
                                                                "comma-separated).")]
StartOpt = Annotated[str | None, typer.Option("--start", "-s",
                                              help="POSIX seconds or ISO 8601 (inclusive).")]
EndOpt = Annotated[str | None, typer.Option("--end", "-e",
                                            help="POSIX seconds or ISO 8601 (inclusive).")]
VersionOpt = Annotated[str | None, typer.Option("--version", "-v")]


PIECE = 65536  # records a page, fetched through the dispatcher


def _split(ips: list[str]) -> list[str]:
    return [x for item in ips for x in item.split(",") if x.strip()]


def _emit(obj: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def register(app: typer.Typer) -> None:
    app.add_typer(find_app, name="find")

    @find_app.command("records")
    def records(name: str, ip: IpsOpt, start: StartOpt = None, end: EndOpt = None,
                limit: Annotated[int | None, typer.Option("--limit", "-n", min=1)] = None,
                version: VersionOpt = None, data: DataOpt = DEFAULT_DATA,
                shards: ShardsOpt = DEFAULT_SHARDS, workers: WorkersOpt = 0,
                ray: RayOpt = False, ray_address: RayAddressOpt = None,
                remote: RemoteOpt = None) -> None:
        """Records of the IPs within the window, sorted by time, one JSON object a line."""
        with errors():
            engine = Engine(read_store(data))
            view = engine.records(name, version)
            q = FindQuery(ip_list(_split(ip)), window(start, end))
            left = limit
            with dispatcher(engine, shards=shards, workers=workers, ray=ray,
                            ray_address=ray_address, remote=remote) as d:
                for hits in d.iter_find(view, q, PIECE):
                    if left is not None:
                        hits = hits.slice(left)
                        left -= len(hits)
                    out = sys.stdout.buffer
                    for i, t in zip(hits.ip_list(), hits.seconds().tolist(),
                                    strict=True):
                        out.write(orjson.dumps({"ip": i, "ts": t}) + b"\n")
                    if left is not None and left <= 0:
                        break
            sys.stdout.flush()

    @find_app.command("member")
    def member(name: str, ip: IpsOpt, start: StartOpt = None, end: EndOpt = None,
               version: VersionOpt = None, data: DataOpt = DEFAULT_DATA,
               shards: ShardsOpt = DEFAULT_SHARDS, workers: WorkersOpt = 0,
                ray: RayOpt = False, ray_address: RayAddressOpt = None,
                remote: RemoteOpt = None) -> None:
        """For each IP, whether it visited within the window (JSON object)."""
        with errors():
            raw = _split(ip)
            engine = Engine(read_store(data))
            view = engine.records(name, version)
            ips = ip_list(raw)
            with dispatcher(engine, shards=shards, workers=workers, ray=ray,
                            ray_address=ray_address, remote=remote) as d:
                got = d.run(view, MembershipQuery(ips, window(start, end))).result
            found = dict(zip(ips, got.tolist(), strict=True))
            _emit({r: found[parse_ip(r)] for r in raw})

    @find_app.command("visits")
    def visits(name: str, ip: Annotated[str, typer.Argument(help="One IP address.")],
               start: StartOpt = None, end: EndOpt = None,
               bucket: Annotated[int | None, typer.Option(
                   "--bucket", min=1, help="Also count visits per bucket of this many "
                                           "seconds (3600: per hour).")] = None,
               limit: Annotated[int, typer.Option("--limit", "-n")] = DEFAULT_LIMIT,
               version: VersionOpt = None, data: DataOpt = DEFAULT_DATA,
               shards: ShardsOpt = DEFAULT_SHARDS, workers: WorkersOpt = 0,
                ray: RayOpt = False, ray_address: RayAddressOpt = None,
                remote: RemoteOpt = None) -> None:
        """All visit times of one IP (reverse lookup), with counts."""
        with errors():
            engine = Engine(read_store(data))
            view = engine.records(name, version)
            with dispatcher(engine, shards=shards, workers=workers, ray=ray,
                            ray_address=ray_address, remote=remote) as d:
                v: iplog.Visits = d.run(view, VisitsQuery(
                    ip_list([ip])[0], window(start, end), check_limit(limit), bucket)).result
            body: dict[str, object] = {"ip": ip, "count": v.count,
                                       "times": (v.times_us / 1e6).tolist()}
            if v.buckets is not None:
                body["buckets"] = [[int(s), int(c)] for s, c in zip(*v.buckets, strict=True)]
            _emit(body)

    @find_app.command("ips")
    def ips(name: str, start: StartOpt = None, end: EndOpt = None,
            limit: Annotated[int, typer.Option("--limit", "-n")] = 100,
            order: Annotated[str, typer.Option("--order", help="count or ip.")] = "count",
            version: VersionOpt = None, data: DataOpt = DEFAULT_DATA,
            shards: ShardsOpt = DEFAULT_SHARDS, workers: WorkersOpt = 0,
                ray: RayOpt = False, ray_address: RayAddressOpt = None,
                remote: RemoteOpt = None) -> None:
        """Distinct IPs within the window with their record counts (forward lookup)."""
        with errors():
            if order not in ("count", "ip"):
                raise BadRequest("--order must be count or ip")
            engine = Engine(read_store(data))
            view = engine.records(name, version)
            with dispatcher(engine, shards=shards, workers=workers, ray=ray,
                            ray_address=ray_address, remote=remote) as disp:
                d: iplog.Distinct = disp.run(view, DistinctQuery(
                    window(start, end), check_limit(limit), 0, order)).result  # type: ignore[arg-type]
            _emit({"distinct": d.distinct, "records": d.rows,
                   "ips": [[i, c] for i, c in zip(format_ips(d.ips).to_pylist(),
                                                  d.counts.tolist(), strict=True)]})
