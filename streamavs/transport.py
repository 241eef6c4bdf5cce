"""Addresses and CurveZMQ keys of the mask stream, shared by the publisher and the subscriber."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from streamavs.errors import InputError

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"


# ------------------------------------------------------------------------------ addresses
def is_loopback(address: str) -> bool:
    """True for ``tcp://`` addresses on 127.0.0.0/8, ::1 or localhost, and for ipc:// and inproc://."""
    scheme, _, rest = address.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp" or not rest:
        raise InputError(
            f"a mask-stream address looks like tcp://127.0.0.1:5555 (or ipc://PATH), got {address!r}"
        )
    return is_loopback_host(rest.rsplit(":", 1)[0])


def is_loopback_host(host: str) -> bool:
    """True for localhost and the addresses of 127.0.0.0/8 and ::1 (brackets allowed: ``[::1]``)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name, a host name or "*": not provably loopback
        return False


def check_port(address: str) -> str:
    """`address` unchanged, or InputError when a tcp:// port is not 1..65535 or "*" (libzmq would wrap 99999 to 34463)."""
    scheme, _, rest = address.partition("://")
    if scheme != "tcp":
        return address
    port = rest.rpartition(":")[2]
    if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise InputError(
            f"the port of {address!r} must be a number in 1..65535 or * (any free port), got {port!r}; "
            "e.g. tcp://127.0.0.1:5555"
        )
    return address


def _next_port_hint(address: str) -> str:
    host, _, port = address.partition("://")[2].rpartition(":")
    nxt = int(port) + 1 if port.isdigit() else 5556
    return f"tcp://{host or '127.0.0.1'}:{nxt}"


# ------------------------------------------------------------------------------ CurveZMQ keys
def generate_curve_keys(directory: str | Path, name: str = "server") -> tuple[Path, Path]:
    """Write a CurveZMQ key pair as ZeroMQ certificates ``NAME.key`` (public, give it to
    subscribers) and ``NAME.key_secret`` (keep it on the publisher); returns both paths."""
    from zmq.auth import create_certificates

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = create_certificates(str(directory), name)
    return Path(public), Path(secret)


def load_curve_key(source: str | bytes | Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    """Load a key pair ``(public, secret)`` (z85 bytes) from a certificate file or a z85 string.

    A 40-character z85 string is taken as the secret key when `secret` (its public key is
    derived) and as the public key otherwise. A public certificate has no secret (None).
    """
    import zmq

    if isinstance(source, (str, bytes)) and len(source) == 40 and not Path(str(source)).exists():
        key = source.encode("ascii") if isinstance(source, str) else source
        try:
            return (zmq.curve_public(key), key) if secret else (key, None)
        except (zmq.ZMQError, ValueError) as exc:
            raise InputError(f"{source!r} is not a z85-encoded CurveZMQ key: {exc}") from exc
    from zmq.auth import load_certificate

    path = Path(source if not isinstance(source, bytes) else source.decode())
    if not path.is_file():
        raise InputError(
            f"CurveZMQ key file {str(path)!r} does not exist; create a pair with "
            "streamavs.publish.generate_curve_keys(DIR)"
        )
    try:
        public, secret_key = load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise InputError(f"{str(path)!r} is not a ZeroMQ certificate file: {exc}") from exc
    if secret and secret_key is None:
        raise InputError(f"{str(path)!r} holds only a public key; the publisher needs the .key_secret file")
    return public, secret_key


# ------------------------------------------------------------------------------ publisher
