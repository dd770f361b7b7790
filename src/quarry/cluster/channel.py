"""Direct connections from a dispatcher to its shard workers, beside the cluster's own RPC.

A Ray actor call costs about 1 ms on a small machine (task submission, two thread hand-offs
in each process, Ray's serialisation); a selective query's own work is a tenth of that. So a
worker also listens on a socket of its own, and the dispatcher sends each task there as bytes
and reads the answer back: one round trip on a kept-open TCP connection. Connections are
authenticated with a key the dispatcher made and gave the worker (``multiprocessing``'s HMAC
challenge), since what they carry is pickled. Ray still places, restarts and retries the
workers: a connection that fails raises :class:`ChannelDown`, and the caller falls back to
the cluster's own call, which waits for the restarted worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import (
    Connection,
    Listener,
    answer_challenge,
    deliver_challenge,
)

from quarry.logs import LOGGER

log = logging.getLogger(LOGGER + ".channel")

OK, FAILED = b"\x00", b"\x01"
MAX_IDLE = 8  # connections kept open per worker when no call uses them
# A firewall that drops packets would hold a plain connect for minutes: give up quickly and
# let the caller use the cluster's own calls instead.
CONNECT_TIMEOUT_S = 1.0


class ChannelDown(Exception):
    """The worker at the other end is gone or unreachable: use another way to reach it."""


def _sockopt(conn: Connection, level: int, name: int, value: int | bytes) -> None:
    # On a duplicate of the descriptor: a socket object closes the one it owns.
    s = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        s.setsockopt(level, name, value)
    finally:
        s.close()


def _no_delay(conn: Connection) -> None:
    # Messages over 16 KiB go out as header and body in two writes: without TCP_NODELAY,
    # Nagle's algorithm and the peer's delayed ACK hold the body back for 40 ms.
    _sockopt(conn, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _handshake(conn: Connection, authkey: bytes, *, server: bool) -> None:
    """Both sides prove they hold the key (``multiprocessing``'s HMAC challenges, the server
    asking first), with reads limited to CONNECT_TIMEOUT_S; none after it, as answers may
    take as long as queries do."""
    limit = struct.pack("ll", int(CONNECT_TIMEOUT_S), 0)
    _sockopt(conn, socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
    if server:
        deliver_challenge(conn, authkey)
        answer_challenge(conn, authkey)
    else:
        answer_challenge(conn, authkey)
        deliver_challenge(conn, authkey)
    _sockopt(conn, socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))


class ChannelServer:
    """The worker's side: answers each message with ``handler(message)`` on its own thread
    per connection, so a slow answer on one connection does not hold up the others."""

    def __init__(self, host: str, authkey: bytes, handler: Callable[[bytes], bytes]) -> None:
        # No key here: the exchange runs on each connection's own thread (with a timeout),
        # so a client that connects and stalls cannot hold up the others.
        self._listener = Listener((host, 0))
        self._authkey = authkey
        self._handler = handler
        self._closed = False
        threading.Thread(target=self._accept, name="quarry-channel", daemon=True).start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.address
        return str(host), int(port)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.01)  # e.g. out of file descriptors: do not spin
                continue
            threading.Thread(target=self._serve, args=(conn,), name="quarry-channel-conn",
                             daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        with conn:
            try:
                _no_delay(conn)
                _handshake(conn, self._authkey, server=True)
            except (OSError, EOFError, AuthenticationError) as e:
                log.warning("refused a channel connection: %s", e)
                return
            while True:
                try:
                    message = conn.recv_bytes()
                except (EOFError, OSError):
                    return
                try:
                    reply = OK + self._handler(message)
                except Exception as e:
                    reply = FAILED + _pickled_error(e)
                try:
                    conn.send_bytes(reply)
                except OSError:
                    return

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()


def _pickled_error(e: Exception) -> bytes:
    try:
        return pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that cannot be pickled still reaches the caller
        return pickle.dumps(RuntimeError(f"{type(e).__name__}: {e}"))


class Channel:
    """The dispatcher's side, for one worker: connections kept open and reused by calls."""

    def __init__(self, address: tuple[str, int], authkey: bytes) -> None:
        self.address = address
        self._authkey = authkey
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self.closed = False

    def send(self, message: bytes) -> Call:
        """Send ``message`` on a free connection; the answer is read by ``Call.result``."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            if self.closed:
                raise ChannelDown(f"channel to {self._where()} is closed")
            conn = self._connect()
        try:
            conn.send_bytes(message)
        except OSError as e:
            conn.close()
            raise ChannelDown(f"{self._where()} hung up: {e}") from None
        return Call(self, conn)

    def _connect(self) -> Connection:
        """``multiprocessing.connection.Client``, with timeouts on the connect and on the
        key exchange."""
        try:
            sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT_S)
        except OSError as e:
            raise ChannelDown(f"cannot connect to {self._where()}: {e}") from None
        sock.setblocking(True)  # Connection reads the descriptor directly
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock.detach())
        try:
            _handshake(conn, self._authkey, server=False)
        except (OSError, EOFError, AuthenticationError) as e:
            conn.close()
            raise ChannelDown(f"cannot connect to {self._where()}: {e}") from None
        return conn

    def _release(self, conn: Connection) -> None:
        with self._lock:
            if not self.closed and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _where(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Call:
    """One message's answer, read once."""

    def __init__(self, channel: Channel, conn: Connection) -> None:
        self._channel = channel
        self._conn: Connection | None = conn

    def result(self, timeout: float | None = None) -> bytes:
        conn = self._conn
        if conn is None:
            raise ChannelDown("this call was cancelled")
        self._conn = None
        try:
            reply = conn.recv_bytes() if conn.poll(timeout) else None
        except (EOFError, OSError) as e:
            conn.close()
            raise ChannelDown(f"{self._channel._where()} hung up: {e or 'end of stream'}") \
                from None
        if reply is None:
            # The answer may still come: this connection can never be reused.
            conn.close()
            raise TimeoutError(f"no answer from {self._channel._where()}")
        self._channel._release(conn)
        if reply[:1] == OK:
            return reply[1:]
        error = pickle.loads(reply[1:])
        raise error

    def cancel(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
