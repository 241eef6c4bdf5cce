"""`streamavs run`: segment what makes the sound in a live stream and publish the masks.

Inputs (one of): webcam + microphone (default: camera 0 and the default microphone),
``--input FILE|URL`` (audio and video from one file or stream, decoded with PyAV), or
``--synthetic`` (the procedural scene as a live source).

Pacing of --input: a URL runs at real time (it is live); a FILE runs as fast as possible
and loses nothing (every frame is processed, in order) unless ``--realtime`` is given, which
plays it like a camera (frames the engine cannot keep up with are dropped and counted).
``--synthetic`` runs at real time unless ``--fast``.

A status line goes to stderr every --status-interval seconds, also while no frames come: then it
says for how long, with the reconnects so far (:class:`streamavs.pipeline.StatusLine`).

Ctrl-C (SIGINT) or SIGTERM stops within a second and prints the final counters; a second
Ctrl-C aborts at once, also while the pipeline closes. A run that ends on its own (end of the
file, --frames, --duration) gives subscribers that are behind a bounded time
(PipelineConfig.linger_s) to receive its last masks; a stopped run drops what is still queued.

``--preview-fps N`` also publishes downscaled JPEG frames (topic ``frame.<stream>``) for viewers;
``--view PORT`` starts ``streamavs view`` on http://127.0.0.1:PORT in a process of its own (so
the browser side never takes the pipeline's CPU time or GIL), with previews at 10 fps unless
--preview-fps says otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from streamavs.cli.checks import output_file
from streamavs.engine.base import BACKEND_CHOICES, DEFAULT_ENGINE, SYNTHETIC_ENGINE
from streamavs.errors import InputError, StreamAVSError
from streamavs.protocol import ENCODINGS

_NO_AUDIO = (
    "--no-audio is not supported: StreamAVS segments the objects that are MAKING THE SOUND, so it "
    "needs audio; give a microphone with --mic NAME|IDX, a file with an audio track with --input FILE, "
    "or try --synthetic"
)


def _is_url(text: str) -> bool:
    return "://" in text


def _check_input(input_: Optional[str]) -> None:
    """--input names a file or a URL; a folder is refused here, before anything starts."""
    if input_ is not None and not _is_url(input_) and Path(input_).is_dir():
        raise InputError(
            f"--input {input_} is a folder; expected a video file with audio (mp4, mkv, ...) or a URL such as "
            "rtsp://host/stream: name one file in it"
        )


def _build_capture(input_: Optional[str], camera: Optional[str], mic: Optional[str], synthetic: bool,
                   realtime: Optional[bool], video_delay: float, audio_delay: float = 0.0):
    """Choose the capture from the options; raises InputError on conflicting options."""
    from streamavs.capture.builders import live_capture, media_capture, synthetic_capture

    if input_ is not None and synthetic:
        raise InputError("--input and --synthetic both name an input; give one of them")
    which = "--input" if input_ is not None else "--synthetic" if synthetic else None  # an input with its own clock
    if which and (camera is not None or mic is not None):
        raise InputError(f"{which} brings its own audio and video; drop --camera/--mic, or drop {which} to use them")
    for option, delay in (("--video-delay", video_delay), ("--audio-delay", audio_delay)):
        if which and delay:
            raise InputError(f"{option} applies to --camera; {which} stamps picture and sound from one clock, "
                             f"so drop {option}")
    if video_delay and audio_delay:
        raise InputError(f"--video-delay {video_delay:g} and --audio-delay {audio_delay:g} both given; only their "
                         "difference matters (how much later the sound arrives than the picture): pass the "
                         f"difference as one of them, e.g. {_one_delay(video_delay - audio_delay)}")
    if input_ is not None:
        pace = _is_url(input_) if realtime is None else realtime
        return media_capture(input_, realtime=pace)
    if synthetic:
        return synthetic_capture(realtime=True if realtime is None else realtime)
    if realtime is not None:
        raise InputError("--realtime/--fast apply to --input and --synthetic; a camera always runs at real time")
    return live_capture(camera if camera is not None else 0, mic, video_delay_s=video_delay, audio_delay_s=audio_delay)


def _one_delay(frames_later_s: float) -> str:
    """The one option that says how much later the frames arrive than the sound (negative: the sound is later)."""
    if frames_later_s == 0:
        return "neither (they cancel)"
    if frames_later_s > 0:
        return f"--video-delay {frames_later_s:g}"
    return f"--audio-delay {-frames_later_s:g}"


class _Sinks:
    """The --show window and the --record video, fed each Result.

    Drawing, showing and encoding run in a SinkWorker thread behind a bounded queue, so they never
    take the engine's frame time; when they fall behind a live source, overlay frames are dropped
    and counted (``overlay_dropped``), never pipeline frames. A file run as fast as possible waits
    for the recorder instead, so its recording has every frame.
    """

    def __init__(self, stack: ExitStack, show: bool, record: Optional[Path], live: bool) -> None:
        from streamavs.overlay import OverlayRecorder, OverlayWindow
        from streamavs.pipeline.worker import SinkWorker

        self.window = stack.enter_context(OverlayWindow()) if show else None
        self.record = record
        self._recorder_cls = OverlayRecorder
        self.recorder = None
        self.fps = 25.0
        self.threshold: float | None = None  # the engine manifest's thresholds.mask, set once the engine is loaded
        self.live = live  # live: drop overlay frames when behind; a file as fast as possible: wait, lose none
        # Closing runs in reverse: the worker finishes the queued frames, then the recording is closed.
        stack.callback(self._close_recorder)
        self.worker = stack.enter_context(SinkWorker(self._draw, maxsize=8, name="overlay")) \
            if show or record is not None else None

    def _close_recorder(self) -> None:
        if self.recorder is not None:
            self.recorder.close()

    @property
    def overlay_dropped(self) -> int:
        return self.worker.dropped if self.worker is not None else 0

    def _draw(self, item: tuple) -> None:
        """In the worker thread: draw one overlay, show it and/or append it to the recording."""
        from streamavs.overlay import draw_overlay

        image, mask_prob, sounding, uncertainty, gated, t_ns = item
        img = draw_overlay(image, mask_prob, sounding=sounding, uncertainty=uncertainty, threshold=self.threshold,
                           gated=gated)
        if self.window is not None:
            self.window.show(img)
        if self.record is not None:
            if self.recorder is None:
                self.recorder = self._recorder_cls(self.record, fps=self.fps)
            self.recorder.write(img, t_s=t_ns / 1e9)

    def __call__(self, result) -> None:
        if self.worker is not None:  # copies: the frame ring reuses its buffers
            self.worker.submit((result.pair.frame.image.copy(), np.array(result.mask_prob, copy=True),
                                result.sounding, result.uncertainty, result.gated, result.pair.frame.t_ns),
                               block=not self.live)


def _local_address(address: str) -> str:
    """The address a viewer on this machine connects to: a wildcard host becomes 127.0.0.1."""
    scheme, _, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme == "tcp" and host.strip("[]") in ("0.0.0.0", "*", "::"):
        return f"tcp://127.0.0.1:{port}"
    return address


def _curve_public(secret_file: Optional[Path]) -> Optional[str]:
    """The Z85 public key of the publisher's CurveZMQ secret key file (None without one)."""
    if secret_file is None:
        return None
    from streamavs.publish import load_curve_key

    return load_curve_key(secret_file, secret=True)[0].decode("ascii")


def stop_process(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Stop a child process: SIGTERM, then SIGKILL when it has not exited within `timeout_s`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _end_reason(pipeline, frames: int | None) -> str:
    """Why a run ended, for its final counters: the stream ended, a limit was reached, or it was stopped."""
    if pipeline.ended:
        return "end of stream"
    if not pipeline.ended_on_its_own:
        return "stopped"
    return f"--frames {frames} reached" if frames is not None and pipeline.stats.frames >= frames else "--duration reached"


def _check_view_port(port: int) -> None:
    """Refuse a --view port the viewer could not listen on, before the pipeline starts (the viewer is a
    child process: its own error would come after the run had begun, and the run would go on without it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the viewer binds
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError as exc:
            raise InputError(f"--view {port}: cannot serve the viewer on 127.0.0.1:{port}: {exc.strerror or exc}; "
                             f"choose another port, e.g. --view {port + 1 if port < 65535 else 8081}") from exc


def _start_viewer(stack: ExitStack, address: str, port: int, curve_public: Optional[str]) -> None:
    """`streamavs view ADDRESS --port PORT` as a child process, stopped (SIGTERM) when the run ends."""
    cmd = [sys.executable, "-m", "streamavs", "view", address, "--port", str(port)]
    if curve_public is not None:
        cmd += ["--curve-server-key", curve_public]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr)  # its URL goes with our status lines
    stack.callback(stop_process, proc)


def _install_signal_handlers(pipeline) -> dict:
    """First SIGINT/SIGTERM: stop the pipeline (final counters still print); second: abort (KeyboardInterrupt).
    Returns the handlers they replace, for _restore_signal_handlers."""
    previous = {}

    def handler(signum, _frame):
        if getattr(handler, "fired", False):
            raise KeyboardInterrupt
        handler.fired = True
        print(f"streamavs: {signal.Signals(signum).name}, stopping (again to abort)", file=sys.stderr, flush=True)
        pipeline.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signal_handlers(previous: dict) -> None:
    """Put back the handlers _install_signal_handlers replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        input_: Annotated[
            Optional[str], typer.Option("--input", help="A video FILE or stream URL with audio (decoded with PyAV).")
        ] = None,
        camera: Annotated[
            Optional[str], typer.Option(help="Camera index, device (/dev/video0) or stream URL for OpenCV (default 0).")
        ] = None,
        mic: Annotated[Optional[str], typer.Option(help="Microphone index or name (default: the system default).")] = None,
        video_delay: Annotated[
            float,
            typer.Option(help="How late the camera's frames arrive after the moment they show, in seconds (a network "
                              "camera: 0.1-0.5; at most 5); they are paired with the sound of that moment.",
                         metavar="SECONDS"),
        ] = 0.0,
        audio_delay: Annotated[
            float,
            typer.Option(help="How late the microphone's sound arrives after the moment it was captured, in seconds "
                              "(Bluetooth: 0.1-0.3; at most 1); frames are held back until their sound has "
                              "arrived, so latency includes it.", metavar="SECONDS"),
        ] = 0.0,
        synthetic: Annotated[bool, typer.Option("--synthetic", help="Use the procedural live scene as input.")] = False,
        realtime: Annotated[
            Optional[bool],
            typer.Option(
                "--realtime/--fast",
                help="Pace --input/--synthetic at real time (drops frames it cannot keep up with) or as fast as "
                "possible (every frame). Default: real time for URLs and --synthetic, fast for files.",
                show_default=False,
            ),
        ] = None,
        engine: Annotated[
            Optional[str], typer.Option(help="Engine: a .json manifest, .onnx, .ep, .pt, or a shipped engine name "
                                             f"(default: {DEFAULT_ENGINE}; with --synthetic {SYNTHETIC_ENGINE}).")
        ] = None,
        backend: Annotated[str, typer.Option(help=f"Engine backend: {', '.join(BACKEND_CHOICES)}.")] = "auto",
        threads: Annotated[Optional[int], typer.Option(help="Engine threads (default: the backend's).", min=1)] = None,
        publish: Annotated[
            Optional[str],
            typer.Option(help="Publish address (default tcp://127.0.0.1:5555); a non-loopback address opens the stream to the network."),
        ] = None,
        curve_secret: Annotated[
            Optional[Path], typer.Option(help="CurveZMQ secret key file: only holders of its public key can subscribe.")
        ] = None,
        encoding: Annotated[str, typer.Option(help=f"Mask encoding on the wire: {', '.join(ENCODINGS)}.")] = "u8",
        gate: Annotated[
            bool, typer.Option("--gate/--no-gate", help="Empty the mask when the sounding score is below the engine's gate.")
        ] = False,
        show: Annotated[bool, typer.Option("--show", help="Show the overlay in a window (needs a display).")] = False,
        record: Annotated[Optional[Path], typer.Option(help="Write the overlay video to this file (.mp4, .mkv).")] = None,
        rate: Annotated[Optional[float], typer.Option(help="Process at most this many frames per second.", min=0.001)] = None,
        duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.", min=0.001)] = None,
        frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames.", min=1)] = None,
        no_audio: Annotated[bool, typer.Option("--no-audio", help="Not supported: the segmentation needs audio.")] = False,
        status_interval: Annotated[
            float, typer.Option(help="Seconds between status lines on stderr (they say so when no frames come).", min=0.1)
        ] = 5.0,
        preview_fps: Annotated[
            Optional[float],
            typer.Option(help="Also publish downscaled JPEG frames at this rate (topic frame.<stream>) for viewers.",
                         min=0.001),
        ] = None,
        view: Annotated[
            Optional[int],
            typer.Option(help="Serve the live browser view on http://127.0.0.1:PORT (streamavs view; previews at "
                              "10 fps unless --preview-fps).", min=1, max=65535, metavar="PORT"),
        ] = None,
    ) -> None:
        """Segment what makes the sound (camera + microphone, a file, or --synthetic) and publish the masks."""
        if no_audio:
            raise InputError(_NO_AUDIO)
        # OpenCV prints its own warnings (e.g. for a missing camera) unless told not to; our
        # errors say what went wrong in one line. Read by OpenCV when it is first imported.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        if backend not in BACKEND_CHOICES:
            raise InputError(f"unknown --backend {backend!r}; choose one of {list(BACKEND_CHOICES)}")
        if encoding not in ENCODINGS:
            raise InputError(f"unknown --encoding {encoding!r}; choose one of {list(ENCODINGS)}")
        if input_ is not None:
            from streamavs.capture.base import local_path

            input_ = local_path(input_)
        _check_input(input_)
        if view is not None:
            _check_view_port(view)
        output_file(record, "--record", example="out.mp4", create_parents=False)

        from streamavs.audio import LogMelParams
        from streamavs.engine import default_engine, load_engine
        from streamavs.pipeline import Pipeline, PipelineConfig, PreviewConfig, StatusLine
        from streamavs.publish import DEFAULT_ADDRESS, Publisher, is_loopback

        if view is not None and preview_fps is None:
            preview_fps = 10.0
        preview = PreviewConfig(fps=preview_fps) if preview_fps is not None else None
        config = PipelineConfig(rate_hz=rate, gate=gate, encoding=encoding, preview=preview)
        capture = _build_capture(input_, camera, mic, synthetic, realtime, video_delay, audio_delay)
        address = publish or DEFAULT_ADDRESS
        with ExitStack() as stack:
            live = realtime if realtime is not None else not (input_ and not _is_url(input_))
            sinks = _Sinks(stack, show, record, live)
            publisher = stack.enter_context(
                Publisher(address, allow_remote=publish is not None and not is_loopback(address), curve_secret_key=curve_secret)
            )
            options = {"audio_params": LogMelParams()}
            if threads is not None:
                options["threads"] = threads
            if engine is None:  # the procedural scene's own engine; everything else: the default (real-object) engine
                engine = SYNTHETIC_ENGINE if synthetic else default_engine()
            eng = stack.enter_context(load_engine(engine, backend=backend, **options))
            status = StatusLine(status_interval, lambda line: typer.echo(line, err=True))
            pipeline = Pipeline(capture, eng, publisher, config, on_result=sinks, on_tick=status)
            # Installed before the pipeline starts and restored only after it is closed (the stack unwinds
            # in reverse): a Ctrl-C while it closes, also after an error, stops and a second one aborts.
            stack.callback(_restore_signal_handlers, _install_signal_handlers(pipeline))
            stack.enter_context(pipeline)
            sinks.fps = rate or capture.fps or 25.0
            sinks.threshold = eng.manifest.thresholds.mask  # the pixels a binary wire encoding would mark
            typer.echo(
                f"streamavs: {capture.description} -> {publisher.address}  engine {eng.name} ({eng.backend})",
                err=True,
            )
            if view is not None:
                _start_viewer(stack, _local_address(publisher.address), view, _curve_public(curve_secret))
            try:
                snapshot = pipeline.run(frames=frames, seconds=duration)
            except StreamAVSError:  # the one-line error follows; the counters up to it come first
                typer.echo(f"final (error):\n{pipeline.stats.snapshot().summary()}")
                raise
            reason = _end_reason(pipeline, frames)
            pipeline.close()  # its last masks linger out to subscribers while the viewer (stopped after) still runs
        typer.echo(f"final ({reason}):\n{snapshot.summary()}")
        if record is not None:
            typer.echo(f"recorded {sinks.recorder.frames if sinks.recorder else 0} frames to {record}"
                       f" ({sinks.overlay_dropped} overlay frames dropped: the recorder fell behind)")
