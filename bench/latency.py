"""Latency of the real live pipeline, per stage, per backend and model, in one run.

For each (model, backend) row, a fresh pipeline runs end to end exactly as ``streamavs run``
does: a real-time source (the synthetic scene at `fps`, or a file played at real time) ->
frame/audio rings -> pairer -> preprocess (resize + log-mel) -> engine -> postprocess ->
ZeroMQ publisher on 127.0.0.1 -> a :class:`~streamavs.publish.Subscriber` in another thread
of this process. The first `warmup` seconds are run and discarded, then `seconds` are measured.
Rows run one after another in one process, so they share the machine's state and compare fairly.

Stages (ms per processed frame; ``n, mean, p50, p90, p95, p99, max``):

* ``capture_to_pairer``: capture stamp -> the pairer hands the frame over (queueing + waiting
  for the audio that ends at the frame).
* ``preprocess``: resize to the engine's size + the VGGish log-mel example.
* ``inference``: one engine call. The temporal stage runs inside it (one graph: frame encoder,
  audio encoder, fusion, decoder, similarity head, temporal attention over the feature cache),
  so it is not timed separately.
* ``postprocess``: probability -> published mask (similarity gate, uncertainty summary).
* ``publish``: encode + send (``Publisher.publish``).
* ``publish_to_subscriber``: ``t_publish`` (stamped in ``publish`` before encoding) -> the
  subscriber has the decoded message; spans encode, send, loopback transport and decode.
* ``end_to_end``: frame capture -> mask received by the subscriber (wall clock, one host).
* ``frame_age_at_inference``: capture stamp -> the engine call starts (capture_to_pairer + preprocess).

Counters over the measured window: frames processed, frames offered (delivered by the source
meanwhile), frames dropped (ring overwrites), audio overflows, audio gaps, masks
lost between publisher and subscriber, and frames per second.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from streamavs.bench.latency_engines import BACKENDS
from streamavs.bench.report import command_line, machine_info, make_report, stats_ms, write_json
from streamavs.engine.thread_count import default_threads
from streamavs.errors import InputError

__all__ = ["LatencyConfig", "STAGES", "measure_row", "run_latency", "for_json", "gap_events", "main_command"]

STAGES = (
    "capture_to_pairer", "preprocess", "inference", "postprocess", "publish",
    "publish_to_subscriber", "end_to_end", "frame_age_at_inference",
)  # fmt: skip
TEMPORAL_NOTE = "inside inference (one engine graph: the temporal stage is not timed separately)"
_PIPELINE_STAGE = {"capture_to_pairer": "capture", "preprocess": "preprocess", "inference": "inference",
                   "postprocess": "postprocess", "publish": "publish"}  # fmt: skip


@dataclass(frozen=True)
class LatencyConfig:
    """One benchmark run.

    source: "synthetic" (the procedural scene as a live 30 fps source) or a media file/URL
        played at real time. seconds / warmup: measured and discarded run time (s).
    fps: frame rate of the synthetic source. backends, models: rows (see latency_engines).
    encoding: mask wire encoding. threads: engine threads of every CPU backend (None: all usable cores but one).
    cache_dir: where on-the-fly engines and random-weight checkpoints go (None: the default).
    """

    source: str = "synthetic"
    seconds: float = 20.0
    warmup: float = 3.0
    fps: float = 30.0
    backends: tuple[str, ...] = BACKENDS
    models: tuple[str, ...] = ("default", "avs_tpavi_b5")
    encoding: str = "u8"
    threads: int | None = None
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.seconds > 0 or not self.warmup >= 0 or not self.fps > 0:
            raise InputError(
                f"need seconds > 0, warmup >= 0 and fps > 0, got seconds={self.seconds!r}, "
                f"warmup={self.warmup!r}, fps={self.fps!r}"
            )
        if not self.backends or not self.models:
            raise InputError("give at least one backend (--backends) and one model (--models)")


# ------------------------------------------------------------------------------ collection
class _Collector:
    """The pipeline's on_result callback: per-frame stage times and capture stamps, by seq."""

    def __init__(self) -> None:
        self.frames: dict[int, dict[str, Any]] = {}
        self.measuring = False

    def __call__(self, result: Any) -> None:
        if self.measuring:
            frame = result.pair.frame
            self.frames[result.seq] = {"stage_ms": dict(result.stage_ms), "index": frame.index, "t_ns": frame.t_ns}


class _SubscriberThread:
    """A Subscriber in its own thread (it owns its socket); records receive times by seq.

    An error in the thread is stored and re-raised by :meth:`stop`.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.received: dict[int, dict[str, float]] = {}
        self.lost = 0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self.heard = threading.Event()  # a heartbeat arrived: the connection is up
        self._thread = threading.Thread(target=self._loop, name="bench-subscriber", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from streamavs.publish import Subscriber

        try:
            with Subscriber(self.address, rcvhwm=10_000) as sub:
                while not self._stop.is_set():
                    msg = sub.recv(timeout=0.05)
                    now = time.time()
                    if not self.heard.is_set() and sub.stats().heartbeats:  # stats() is not free: only until heard
                        self.heard.set()
                    if msg is not None:
                        self.received[msg.seq] = {"t_recv": now, "t_publish": msg.t_publish, "t_capture": msg.t_capture}
                self.lost = sub.stats().lost
        except BaseException as exc:  # noqa: BLE001 - stored, re-raised in the caller's thread
            self._error = exc
            self.heard.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        error, self._error = self._error, None  # raised once, however often stop() is called
        if error is not None:
            raise error


def _capture(config: LatencyConfig):
    from streamavs.capture.builders import media_capture, synthetic_capture

    _check_source(config.source)
    if config.source == "synthetic":
        return synthetic_capture(realtime=True, fps=config.fps)
    return media_capture(config.source, realtime=True)


def _check_source(source: str) -> None:
    if source != "synthetic" and "://" not in source and not Path(source).is_file():
        raise InputError(f"--source must be 'synthetic' or a media file/URL, got {source!r} (no such file)")


def measure_row(engine: Any, config: LatencyConfig) -> dict[str, Any]:
    """Run the pipeline on `engine` (which it closes) for warmup + seconds; returns the row.

    Row keys: stages (name -> stats_ms), counters, fps, seconds, source, backend, engine.
    """
    from streamavs.pipeline import Pipeline, PipelineConfig
    from streamavs.publish import Publisher

    collector = _Collector()
    with contextlib.ExitStack() as stack:
        # The pipeline closes engine, publisher and capture; these callbacks cover a failure before
        # it exists (every close() is idempotent).
        stack.callback(engine.close)
        capture = _capture(config)
        stack.callback(capture.close)
        publisher = stack.enter_context(Publisher("tcp://127.0.0.1:*", stream="bench", sndhwm=1000))
        subscriber = _SubscriberThread(publisher.address)
        stack.callback(subscriber.stop)
        deadline = time.monotonic() + 5.0
        while not subscriber.heard.wait(0.02) and time.monotonic() < deadline:  # PUB/SUB slow joiner
            publisher.heartbeat(force=True)
        with Pipeline(capture, engine, publisher, PipelineConfig(encoding=config.encoding), on_result=collector) as pipe:
            if config.warmup > 0:
                pipe.run(seconds=config.warmup)
            before = _counters(pipe)
            collector.measuring = True
            measured_from = time.monotonic()  # where the measured run starts, on the clock soak samples with
            t0 = time.perf_counter()
            pipe.run(seconds=config.seconds)
            elapsed = time.perf_counter() - t0
            collector.measuring = False
            after = _counters(pipe)
            description = capture.description
            last = max(collector.frames, default=None)
            drain = time.monotonic() + 2.0
            while last is not None and last not in subscriber.received and time.monotonic() < drain:
                time.sleep(0.01)
        subscriber.stop()  # re-raises an error of the subscriber thread
    # time.monotonic() at the start of the measured run (soak's memory baseline is the first sample after it)
    return {**_row(collector, subscriber, before, after, elapsed, description), "measured_from_monotonic_s": measured_from}


def _counters(pipe: Any) -> dict[str, int]:
    snap = pipe.stats.snapshot()
    return {"frames": snap.frames, "dropped": snap.dropped, "audio_overflows": snap.audio_overflows,
            "audio_gaps": snap.audio_gaps, "published": snap.published,
            "source_frames": pipe.capture.counters().get("frames"),
            "clips_late": pipe.capture.counters().get("clips_late")}  # fmt: skip


def gap_events(by_index: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Where processed frame indices skip: one event per gap, with why it may have happened.

    by_index: frame index -> {"stage_ms": {...}, "t_ns": capture time}. Each event: first_missing
    (frame index), missing (frames), t_s (capture time of the frame before the gap, seconds on
    the monotonic clock) and before_ms, that frame's stage times (a slow one, e.g. inference over
    a frame interval, is what makes the next frames arrive while the engine is busy).
    """
    ordered = sorted(by_index)
    return [
        {"first_missing": a + 1, "missing": b - a - 1, "t_s": by_index[a]["t_ns"] / 1e9,
         "before_ms": {k: round(v, 2) for k, v in by_index[a]["stage_ms"].items()}}
        for a, b in zip(ordered, ordered[1:]) if b - a > 1
    ]  # fmt: skip


def _row(collector: _Collector, sub: _SubscriberThread, before: dict, after: dict, elapsed: float, source: str) -> dict:
    frames = collector.frames
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    for seq, rec in frames.items():
        ms = rec["stage_ms"]
        for name, key in _PIPELINE_STAGE.items():
            samples[name].append(ms.get(key, float("nan")))
        samples["frame_age_at_inference"].append(ms.get("capture", np.nan) + ms.get("preprocess", np.nan))
        got = sub.received.get(seq)
        if got is not None:
            samples["publish_to_subscriber"].append((got["t_recv"] - got["t_publish"]) * 1e3)
            samples["end_to_end"].append((got["t_recv"] - got["t_capture"]) * 1e3)
    processed = len(frames)
    if after.get("source_frames") is not None and before.get("source_frames") is not None:
        offered = after["source_frames"] - before["source_frames"]  # frames the source delivered meanwhile
    else:  # a source without a frame counter: the index span of the processed frames
        indices = [rec["index"] for rec in frames.values()]
        offered = max(indices) - min(indices) + 1 if indices else 0
    offered = max(offered, processed)
    received = sum(seq in sub.received for seq in frames)
    counters = {
        "processed": processed,
        "offered": offered,
        "processed_fraction": processed / offered if offered else 0.0,
        "every_frame_processed": processed > 0 and after["dropped"] == before["dropped"],
        "dropped": after["dropped"] - before["dropped"],
        "audio_overflows": after["audio_overflows"] - before["audio_overflows"],
        "audio_gaps": after["audio_gaps"] - before["audio_gaps"],
        "received_by_subscriber": received,
        "lost_to_subscriber": processed - received,
    }
    if after.get("clips_late") is not None:  # synthetic source: clips playback had to wait for
        counters["source_clips_late"] = after["clips_late"] - before["clips_late"]
    return {
        "source": source,
        "seconds": elapsed,
        "fps": processed / elapsed if elapsed > 0 else 0.0,
        "counters": counters,
        "gaps": gap_events({rec["index"]: rec for rec in frames.values()}),  # where frames were dropped
        "stages": {s: stats_ms(v) for s, v in samples.items()},
        "temporal_stage": TEMPORAL_NOTE,
        "samples_ms": {s: samples[s] for s in ("inference", "end_to_end")},  # for the plot; dropped from JSON
    }


# ------------------------------------------------------------------------------ the run
def run_latency(
    config: LatencyConfig, command: str | None = None, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Every (model, backend) row in one process; returns the report (rows keep `samples_ms`).

    Unavailable backends and models without a matching engine give rows with ``skipped``: the
    reason. progress: called with one line before each row (e.g. the CLI's status printer).
    """
    from streamavs.bench.latency_engines import check_model_spec, default_cache_dir, open_engine, resolve_model

    _check_source(config.source)  # before minutes of engine export, not after
    machine = machine_info()  # the load before this run adds its own
    for spec in config.models:
        check_model_spec(spec)
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    # One thread count for every CPU backend, so the rows compare like with like (ONNX Runtime's
    # default leaves a core to the capture threads; PyTorch's default of all cores oversubscribes).
    threads = config.threads or default_threads()
    rows: list[dict[str, Any]] = []
    for spec in config.models:
        model = resolve_model(spec, cache_dir)
        for backend in config.backends:
            if progress:
                progress(f"{model.name} / {backend}: preparing the engine")
            engine, how = open_engine(model, backend, cache_dir, threads=threads)
            row: dict[str, Any] = {"model": model.name, "model_spec": spec, "model_note": model.note, "backend": backend}
            if engine is None:
                rows.append({**row, "skipped": how})
                continue
            row.update(
                engine=engine.name, engine_from=how, precision=engine.manifest.precision,
                frame_size=list(engine.frame_size),
                temporal_window=engine.manifest.temporal.window if engine.manifest.temporal else None,
                providers=list(getattr(engine, "providers", []) or []) or None,
            )  # fmt: skip
            if progress:
                progress(f"{model.name} / {backend}: {config.warmup:g} s warm-up + {config.seconds:g} s measured")
            rows.append({**row, **measure_row(engine, config)})
    _relative_speed(rows)
    return make_report(
        "latency", command or command_line(program="streamavs bench latency"), machine=machine,
        config={"source": config.source, "seconds": config.seconds, "warmup": config.warmup, "fps": config.fps,
                "encoding": config.encoding, "engine_threads": threads, "subscriber": "thread of the same process"},
        rows=rows,
    )  # fmt: skip


def _relative_speed(rows: list[dict[str, Any]]) -> None:
    """Per model, inference p50 of PyTorch eager / this row's (how many times faster than eager).
    Rows pair by the model as given (--models), not by its display name, which two models may share."""
    for row in rows:
        ref = next((r for r in rows if r["model_spec"] == row["model_spec"] and r["backend"] == "torch"
                    and "stages" in r), None)
        if ref is not None and "stages" in row and row["stages"]["inference"]["n"]:
            row["inference_speedup_vs_torch"] = ref["stages"]["inference"]["p50"] / row["stages"]["inference"]["p50"]


def for_json(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the raw per-frame samples (kept in memory for plots only)."""
    return {**report, "rows": [{k: v for k, v in r.items() if k != "samples_ms"} for r in report["rows"]]}


def main_command(
    config: LatencyConfig, json_out: Path | None = None, plot: Path | None = None, command: str | None = None
) -> dict[str, Any]:
    """Run, print the tables, write the JSON and the plot; returns the JSON-able report."""
    from streamavs.bench.latency_output import console_for_logs, plot_latency, print_table

    console = console_for_logs()
    report = run_latency(config, command, progress=lambda line: console.print(f"[dim]{line}[/dim]"))
    print_table(report, console)
    if json_out is not None:
        console.print(f"wrote {write_json(for_json(report), json_out)}")
    if plot is not None:
        console.print(f"wrote {plot_latency(report, plot)}")
    return for_json(report)
