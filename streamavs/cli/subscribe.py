"""`streamavs subscribe ADDR`: receive the mask stream and report rate, latency, gaps, restarts."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import typer


def _format(stats) -> str:
    """One status line from a SubscriberStats."""
    cap, pub = stats.latency_capture_ms, stats.latency_publish_ms
    lat = (
        f"latency ms capture p50 {cap['p50']:.1f} p90 {cap['p90']:.1f} p99 {cap['p99']:.1f}"
        f" | publish p50 {pub['p50']:.2f} p99 {pub['p99']:.2f}"
        if cap
        else "latency -"
    )
    return (
        f"masks {stats.received}  rate {stats.rate_hz:.1f} Hz (mean {stats.mean_rate_hz:.1f})  {lat}"
        f"  gaps {stats.gaps} (lost {stats.lost})  missed at join {stats.missed_at_join}"
        f"  restarts {stats.restarts}  heartbeats {stats.heartbeats}  protocol errors {stats.protocol_errors}"
    )


def _heat_map(msg):
    """(H, W, 3) uint8 BGR: the mask as a heat map, with its stream, seq, sounding score and uncertainty."""
    import cv2

    img = cv2.applyColorMap(_to_u8(msg.mask), cv2.COLORMAP_INFERNO)  # (H, W, 3) BGR
    text = f"{msg.stream} #{msg.seq} sounding {msg.sounding:.2f} unc {msg.uncertainty:.2f}"
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return img


def _to_u8(mask):
    """(H, W) uint8 0..255 from float probabilities or a bool mask (* 255)."""
    import numpy as np

    return mask.astype(np.uint8) * 255 if mask.dtype == np.bool_ else np.rint(mask * 255).astype(np.uint8)


def _save(directory: Path, msg) -> None:
    """Write the mask as an 8-bit grayscale PNG named STREAM-SESSION-SEQ.png."""
    from streamavs.protocol import encode_png

    # The decoder checked the stream name; the session is any string: keep it from naming a path.
    session = re.sub(r"[^A-Za-z0-9_-]", "_", msg.session)[:64]
    (directory / f"{msg.stream}-{session}-{msg.seq:08d}.png").write_bytes(encode_png(_to_u8(msg.mask)))


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt  # SIGTERM behaves like Ctrl-C: the receive loop ends and the final line prints


def register(app: typer.Typer) -> None:
    @app.command()
    def subscribe(
        address: Annotated[str, typer.Argument(help="Publisher address, e.g. tcp://127.0.0.1:5555.")],
        count: Annotated[Optional[int], typer.Option(help="Stop after this many masks.", min=1)] = None,
        duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.", min=0)] = None,
        save: Annotated[Optional[Path], typer.Option(help="Write each mask as a PNG into this folder.")] = None,
        show: Annotated[bool, typer.Option(help="Show the masks in a window (needs a display).")] = False,
        latest_only: Annotated[bool, typer.Option(help="Keep only the newest mask if behind.")] = False,
        curve_server_key: Annotated[
            Optional[Path], typer.Option(help="The publisher's CurveZMQ public key file (NAME.key).")
        ] = None,
        stream: Annotated[Optional[str], typer.Option(help="Receive only this stream (default: all).")] = None,
        interval: Annotated[float, typer.Option(help="Seconds between status lines.", min=0.1)] = 1.0,
        tolerate: Annotated[
            bool, typer.Option(help="Count and skip messages that break the protocol instead of exiting.")
        ] = False,
        max_pixels: Annotated[
            Optional[int], typer.Option(help="Largest mask H*W accepted (default 16777216).", min=1)
        ] = None,
    ) -> None:
        """Receive the mask stream; print rate, latency percentiles, gaps, restarts and protocol errors.

        Exits non-zero (status 2, after the final status line) on a message that breaks wire
        protocol v1 or its limits (docs/protocol.md), unless --tolerate.
        """
        from streamavs.cli.checks import output_dir
        from streamavs.errors import ProtocolError
        from streamavs.overlay import OverlayWindow
        from streamavs.protocol import DecodeLimits
        from streamavs.publish import Subscriber

        output_dir(save, "--save", example="masks")
        window = OverlayWindow("streamavs subscribe", instead="--save DIR") if show else None
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        limits = DecodeLimits() if max_pixels is None else DecodeLimits(max_pixels=max_pixels)
        sub = Subscriber(
            address, stream=stream, latest_only=latest_only, curve_server_key=curve_server_key, limits=limits,
            on_protocol_error="skip" if tolerate else "raise",
        )  # fmt: skip
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with sub:
                try:
                    _receive(sub, count, duration, start, interval, save, window)
                except ProtocolError:
                    typer.echo("final: " + _format(sub.stats()))
                    raise
                except KeyboardInterrupt:  # SIGINT or SIGTERM: stop receiving, still print the final counters
                    typer.echo("streamavs subscribe: stopped by a signal", err=True)
                stats = sub.stats()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if window is not None:
                window.close()
        typer.echo("final: " + _format(stats))
        if stats.last_protocol_error is not None:
            typer.echo(f"last protocol error: {stats.last_protocol_error}", err=True)
        if stats.received == 0:
            hint = ""
            if curve_server_key is not None and stats.heartbeats == 0:  # CurveZMQ fails silently on a wrong key
                hint = (" With --curve-server-key, nothing arrives when the key is not the publisher's public key "
                        "(the .key file beside the secret given to `run --curve-secret`) or the publisher does not use CurveZMQ.")
            typer.echo(f"no masks received; is a publisher running at {address}?{hint}", err=True)


def _receive(sub, count, duration, start, interval, save, window) -> None:
    """Receive until `count` masks or `duration` seconds; a status line every `interval` seconds."""
    next_report = start + interval
    received = 0
    while count is None or received < count:
        now = time.monotonic()
        if duration is not None and now - start >= duration:
            break
        if now >= next_report:
            typer.echo(_format(sub.stats()))
            next_report = now + interval
        end = next_report if duration is None else min(next_report, start + duration)
        msg = sub.recv(timeout=max(0.0, end - now))
        if msg is None:
            continue
        received += 1
        if save is not None:
            _save(save, msg)
        if window is not None:
            window.show_bgr(_heat_map(msg))
