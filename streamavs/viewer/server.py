"""The viewer's web server (aiohttp): one page, its static JS modules, a WebSocket and /stats.

Routes:

- ``GET /``: the page (``static/index.html``). ``GET /static/...``: its JS and CSS, served from
  this package (no build step; nothing is loaded from anywhere else: the page's
  Content-Security-Policy allows only this origin).
- ``GET /ws``: the WebSocket. The server sends one ``hello`` (JSON text), then ``status``
  messages (JSON text, ``status_hz`` a second) and views (binary, see :func:`hub.pack_view`),
  each client latest-only.
- ``GET /stats``: the hub's counters as JSON (what was received, what each client was sent).

With a `token` (set when the viewer is served beyond this machine) the page, the socket and
/stats answer 403 unless the request carries ``?token=...``; the static files hold no data
and are served without it.

:class:`ViewerServer` runs the asyncio loop in a thread of its own, so the CLI and the tests
start and stop it like any other resource.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from importlib import resources
from pathlib import Path

from aiohttp import WSMsgType, web

from streamavs.errors import InputError
from streamavs.transport import is_loopback_host
from streamavs.viewer.bridge import Bridge
from streamavs.viewer.hub import MAX_POINTS, StreamHub, ViewerConfig

__all__ = ["ViewerServer", "build_app", "STATIC_DIR"]

STATIC_DIR = Path(str(resources.files("streamavs.viewer") / "static"))
_CSP = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; style-src 'self'; object-src 'none'"
CLOSE_WAIT_S = 1.0  # per client at shutdown, all clients at once
_log = logging.getLogger("streamavs.viewer")
_HUB = web.AppKey("hub", StreamHub)
_TOKEN = web.AppKey("token", str)
_SOCKETS = web.AppKey("sockets", dict)  # open WebSocket -> its connection's transport
_NO_TOKEN = (
    "403: this viewer needs its access token; open the URL that `streamavs view` printed "
    "(it ends in ?token=...)"
)


def _refusal(request: web.Request) -> str | None:
    """Why `request` is refused (a 403 text), or None.

    - From another site: a browser sends ``Origin`` with every WebSocket and cross-site request, and
      does not keep other sites from opening a socket to 127.0.0.1; the stream is refused to them.
    - Without a token (served on this machine only), a Host header that is not loopback: a page
      whose own name was made to resolve to 127.0.0.1 (DNS rebinding) would otherwise be same-origin.
    - With a token, a request without it.
    """
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1].rstrip("/").lower() != request.host.lower():
        return f"403: the viewer does not serve pages of another site (Origin {origin[:100]})"
    token = request.app[_TOKEN]
    if not token:
        name = request.url.host or ""
        return None if is_loopback_host(name) else (
            f"403: this viewer serves this machine only; open it as http://127.0.0.1:{request.url.port}/ "
            "(to serve other machines: streamavs view --remote)")
    given = request.query.get("token", "").encode("utf-8", "surrogateescape")
    return None if hmac.compare_digest(given, token.encode()) else _NO_TOKEN


@web.middleware
async def _guard(request: web.Request, handler):
    """The page, its socket and /stats answer 403 to what :func:`_refusal` refuses; the static files
    hold no data and are served to anyone."""
    if not request.path.startswith("/static/") and (refused := _refusal(request)):
        return web.Response(status=403, text=refused)
    return await handler(request)


@web.middleware
async def _headers(request: web.Request, handler):
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("Referrer-Policy", "no-referrer")  # the token must not leak in a Referer
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[_HUB].stats())


async def _socket(request: web.Request) -> web.StreamResponse:
    hub = request.app[_HUB]
    ws = web.WebSocketResponse(compress=False, heartbeat=10.0)  # JPEGs do not compress
    await ws.prepare(request)
    slot = hub.add_client()
    request.app[_SOCKETS][ws] = request.transport
    sender = None
    try:  # from here on the slot is removed whatever happens (a peer may reset right after the handshake)
        await ws.send_str(json.dumps({"type": "hello", "address": hub.config.address, "stream": hub.config.stream,
                                      "history_s": hub.config.history_s, "max_points": MAX_POINTS}))
        sender = asyncio.create_task(_send_loop(ws, hub, slot))
        async for msg in ws:  # the page sends nothing; reading notices the close
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        hub.remove_client(slot)
        request.app[_SOCKETS].pop(ws, None)
        if sender is not None:
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, ConnectionError):
                pass
    return ws


async def _send_loop(ws: web.WebSocketResponse, hub: StreamHub, slot) -> None:
    """Send `slot`'s status and newest view whenever there is one; waits while the browser is slow.
    An unexpected error closes this client's socket (the page reconnects) instead of leaving it open
    and silent."""
    loop = asyncio.get_running_loop()
    try:
        while not ws.closed:
            await slot.wake.wait()
            slot.wake.clear()
            if slot.status_due:
                slot.status_due = False
                await ws.send_str(hub.status(slot, loop.time()))
            if slot.view is not None:
                view, slot.view = slot.view, None
                await ws.send_bytes(view)  # blocks (this client only) while its socket buffer is full
                slot.sent_views += 1
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:  # noqa: BLE001 - one client's failure must not freeze its page
        _log.error("viewer: closing a client after an error: %s: %s", type(exc).__name__, exc)
        await ws.close(code=1011, message=b"viewer error; reconnecting")


async def _close_socket(ws: web.WebSocketResponse, transport) -> None:
    """Close one client, giving it CLOSE_WAIT_S; a peer that stopped reading is cut off instead (a
    close frame behind a full socket buffer would otherwise hold the shutdown)."""
    try:
        await asyncio.wait_for(ws.close(code=1001, message=b"the viewer is shutting down"), CLOSE_WAIT_S)
    except (asyncio.TimeoutError, ConnectionError):
        if transport is not None:
            transport.abort()


async def _ticker(app: web.Application) -> None:
    hub = app[_HUB]
    while True:
        await asyncio.sleep(1.0 / hub.config.status_hz)
        hub.tick()


def build_app(hub: StreamHub, token: str = "") -> web.Application:
    """The aiohttp application over `hub`; `token` ("" for none) guards the page, socket and /stats."""
    app = web.Application(middlewares=[_headers, _guard])  # the headers go on the 403s too
    app[_HUB] = hub
    app[_TOKEN] = token
    app[_SOCKETS] = {}
    app.router.add_get("/", _page)
    app.router.add_get("/ws", _socket)
    app.router.add_get("/stats", _stats)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)

    async def ticker(app: web.Application):
        task = asyncio.create_task(_ticker(app))
        yield
        task.cancel()

    async def close_sockets(app: web.Application) -> None:  # open sockets would hold the shutdown
        await asyncio.gather(*(_close_socket(ws, transport) for ws, transport in list(app[_SOCKETS].items())))

    app.cleanup_ctx.append(ticker)
    app.on_shutdown.append(close_sockets)
    return app


class ViewerServer:
    """Serves the viewer on http://HOST:PORT in a thread of its own. Use as a context manager.

    host: where to listen (loopback unless the caller means otherwise: the CLI asks for
    ``--remote``). port: 0 for any free port (see :attr:`port`). token: required by the page,
    the socket and /stats when not empty.
    """

    def __init__(self, config: ViewerConfig, host: str = "127.0.0.1", port: int = 8080, token: str = "") -> None:
        self.config = config
        self.host, self.port, self.token = host, int(port), token
        self.hub = StreamHub(config)
        self._loop = asyncio.new_event_loop()
        self._bridge: Bridge | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """The page's URL (with the token, when there is one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> "ViewerServer":
        """Subscribe, bind and serve; raises InputError when the port is taken or the address is bad."""
        try:
            self._bridge = Bridge(self.hub, self._loop).start()
            self._runner = web.AppRunner(
                build_app(self.hub, self.token), handle_signals=False, access_log=None, shutdown_timeout=2.0
            )
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
            try:
                self._loop.run_until_complete(site.start())
            except OSError as exc:
                raise InputError(
                    f"cannot serve the viewer on {self.host}:{self.port}: {exc.strerror or exc}; choose another "
                    f"port, e.g. --port {self.port + 1 if self.port else 8081}"
                ) from exc
            self.port = int(self._runner.addresses[0][1])
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._loop.run_forever, name="streamavs-viewer-http", daemon=True)
        self._thread.start()
        return self

    def call(self, fn, *args):
        """Run `fn(*args)` in the server's loop and return its result (e.g. ``server.call(server.hub.stats)``)."""
        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def close(self) -> None:
        """Close every socket, stop the loop and the threads; re-raise the receive thread's error. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._bridge is not None:
                self._bridge.close()
        finally:
            if self._thread is not None:
                try:
                    asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
                finally:  # the loop and its thread end even if a cleanup step hangs past the timeout
                    self._loop.call_soon_threadsafe(self._loop.stop)
                    self._thread.join()
            elif self._runner is not None:
                self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

    def __enter__(self) -> "ViewerServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
