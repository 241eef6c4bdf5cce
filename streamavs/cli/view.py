"""`streamavs view ADDR`: watch the mask stream (and its preview frames) live in a browser.

Serves one page on http://127.0.0.1:8080 by default. Serving beyond this machine is explicit
(``--remote``): the URL then carries a random access token that the page and its socket
require. Ctrl-C or SIGTERM stops the server and prints what it received.
"""

from __future__ import annotations

import secrets
import signal
import socket
import threading
from typing import Annotated, Optional

import typer

from streamavs.errors import InputError
from streamavs.transport import is_loopback_host


def check_host(host: str, remote: bool) -> None:
    """InputError when `host` is not loopback and --remote was not given."""
    if not remote and not is_loopback_host(host):
        raise InputError(
            f"--host {host} would show the stream to anyone who can reach this machine; add --remote to mean it "
            "(the page then needs a random access token, printed with its URL), or keep the default --host 127.0.0.1"
        )


def page_url(host: str, port: int, token: str) -> str:
    """The URL to open: the machine's name in place of a wildcard host, and the token when there is one."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve_until_stopped(server, duration: Optional[float]) -> None:
    """Block until SIGINT/SIGTERM or `duration` seconds; then return (the caller closes the server)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait(duration)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    @app.command()
    def view(
        address: Annotated[
            str, typer.Argument(help="The mask stream to watch: the address `streamavs run` publishes on.")
        ] = "tcp://127.0.0.1:5555",
        host: Annotated[str, typer.Option(help="Where to serve the page; anything but loopback needs --remote.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="HTTP port of the page (0: any free port).", min=0, max=65535)] = 8080,
        remote: Annotated[
            bool, typer.Option("--remote", help="Allow a non-loopback --host; the page then needs a random access token.")
        ] = False,
        stream: Annotated[Optional[str], typer.Option(help="Only this stream name (default: any).")] = None,
        curve_server_key: Annotated[
            Optional[str],
            typer.Option(help="The publisher's CurveZMQ public key (a .key file or the 40-character key), if it has one."),
        ] = None,
        duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.", min=0.001)] = None,
    ) -> None:
        """Serve a live page of the mask stream: the video with its mask, the sounding plot, rate and latency."""
        check_host(host, remote)
        from streamavs.viewer.hub import ViewerConfig
        from streamavs.viewer.server import ViewerServer

        token = secrets.token_urlsafe(16) if remote else ""
        config = ViewerConfig(address, stream=stream, curve_server_key=curve_server_key)
        with ViewerServer(config, host=host, port=port, token=token) as server:
            typer.echo(f"streamavs view: open {page_url(host, server.port, token)}  (mask stream {address})")
            serve_until_stopped(server, duration)
            stats = server.call(server.hub.stats)
        typer.echo(
            f"viewer: masks {stats['masks']}  frames {stats['frames']}  heartbeats {stats['heartbeats']}  "
            f"views {stats['views']}"
        )
