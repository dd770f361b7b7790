"""Slow clients against a server, run as their own process so they take no CPU time (or GIL)
from the test that measures: ``python -m tests.server.slowclients PORT --headers N --bodies N
--idle N --seconds S``.

Three kinds, each holding a connection for as long as the server lets it: *headers* sends a
request line and then one header line per ``--every`` seconds, never the blank line (slowloris);
*bodies* sends complete headers announcing a body and then one byte of it per ``--every``
seconds; *idle* connects and sends nothing. With ``--reconnect``, a client the server closed
connects again, as an attacker would. Prints one JSON object: per kind, the connections made,
how many the server closed, their lifetimes, and the status lines it answered them with.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field

import orjson

HEAD = b"GET /lines/1 HTTP/1.1\r\nHost: slow\r\n"
BODY = b"PUT /datasets/slow-body HTTP/1.1\r\nHost: slow\r\nContent-Length: 1000000\r\n\r\n"


@dataclass
class Kind:
    connects: int = 0
    closed_by_server: int = 0
    refused: int = 0
    lifetimes: list[float] = field(default_factory=list)  # seconds, connections the server closed
    answers: dict[str, int] = field(default_factory=dict)  # status line -> count


async def _read_until_closed(reader: asyncio.StreamReader, kind: Kind) -> None:
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionError:
        pass  # closed with our dribble unread: the kernel resets instead of closing
    if data:
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        kind.answers[line] = kind.answers.get(line, 0) + 1


async def _dribble(writer: asyncio.StreamWriter, what: str, every: float) -> None:
    if what == "idle":
        await asyncio.Event().wait()  # never sends; cancelled when the server closes
    writer.write(HEAD if what == "headers" else BODY)
    i = 0
    while True:
        await asyncio.sleep(every)
        writer.write(b"X-Slow-%d: %d\r\n" % (i, i) if what == "headers" else b"x")
        await writer.drain()
        i += 1


async def _client(port: int, what: str, every: float, reconnect: bool, stop: float,
                  kind: Kind) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            kind.refused += 1
            await asyncio.sleep(0.1)
            continue
        kind.connects += 1
        start = time.monotonic()
        sending = asyncio.ensure_future(_dribble(writer, what, every))
        reading = asyncio.ensure_future(_read_until_closed(reader, kind))
        try:
            await asyncio.wait([reading], timeout=max(0.0, stop - time.monotonic()))
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        if reading.done():
            kind.closed_by_server += 1
            kind.lifetimes.append(round(time.monotonic() - start, 3))
        else:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        writer.close()
        if not reconnect:
            return


async def main(port: int, counts: dict[str, int], every: float, seconds: float,
               reconnect: bool) -> dict[str, Kind]:
    stop = time.monotonic() + seconds
    kinds = {what: Kind() for what in counts}
    await asyncio.gather(*(_client(port, what, every, reconnect, stop, kinds[what])
                           for what, n in counts.items() for _ in range(n)))
    return kinds


def cli(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--headers", type=int, default=0)
    p.add_argument("--bodies", type=int, default=0)
    p.add_argument("--idle", type=int, default=0)
    p.add_argument("--every", type=float, default=0.5, help="seconds between dribbled bytes")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--reconnect", action="store_true")
    a = p.parse_args(argv)
    counts = {"headers": a.headers, "bodies": a.bodies, "idle": a.idle}
    kinds = asyncio.run(main(a.port, counts, a.every, a.seconds, a.reconnect))
    sys.stdout.write(orjson.dumps({k: asdict(v) for k, v in kinds.items()}).decode() + "\n")


if __name__ == "__main__":
    cli(sys.argv[1:])
