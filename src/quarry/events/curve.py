"""ZeroMQ CURVE for the endpoints bound beyond loopback: the keys, and the ZAP handler that
lets in only the listed clients.

libzmq alone accepts any client that knows the server's public key: it is the ZAP handler
(zmq.auth's, in a thread of the socket's context) that checks the client's own key. So
sockets are made CURVE servers only through a running ``Gatekeeper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from quarry.config import Curve
from quarry.errors import BadConfig


@dataclass(frozen=True)
class CurveKeys:
    public: bytes  # Z85, as zmq.auth reads and libzmq's socket options take them
    secret: bytes
    clients: frozenset[bytes]


def _checked(key: bytes, where: str) -> bytes:
    try:
        if len(z85.decode(key)) == 32:
            return key
    except (ValueError, KeyError):
        pass
    raise BadConfig(f"config: {where}: {key[:48]!r} is not a CURVE key (40 Z85 characters)")


def load_keys(curve: Curve) -> CurveKeys:
    try:
        public, secret = zmq.auth.load_certificate(curve.server_key)
    except (OSError, ValueError) as e:
        raise BadConfig(f"config: curve.server_key: cannot read {curve.server_key}: {e}"
                        ) from None
    if secret is None:
        raise BadConfig(f"config: curve.server_key: {curve.server_key} holds no secret key; "
                        "give the NAME.key_secret file")
    try:
        clients = frozenset(zmq.auth.load_certificates(curve.clients))
    except (OSError, ValueError) as e:
        raise BadConfig(f"config: curve.clients: cannot read {curve.clients}: {e}") from None
    if not clients:
        raise BadConfig(f"config: curve.clients: no public keys (*.key) in {curve.clients}: "
                        "no client could connect")
    for key in clients:
        _checked(key, f"curve.clients ({curve.clients})")
    return CurveKeys(_checked(public, "curve.server_key"), _checked(secret, "curve.server_key"),
                     clients)


class Gatekeeper:
    """The context's ZAP handler, letting in the clients of ``keys`` and no one else."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], keys: CurveKeys) -> None:
        self.keys = keys
        self._auth = ThreadAuthenticator(ctx)
        self._auth.start()
        self._auth.configure_curve_callback("*", credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys.clients

    def secure(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE server; before it binds."""
        sock.curve_secretkey = self.keys.secret
        sock.curve_publickey = self.keys.public
        sock.curve_server = True

    def stop(self) -> None:
        self._auth.stop()
