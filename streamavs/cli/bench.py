"""`streamavs bench latency` (a thin shell over streamavs.bench) and `streamavs bench accuracy` (an alias of `streamavs eval`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from streamavs.bench.latency_engines import BACKENDS
from streamavs.cli.checks import output_file
from streamavs.cli.train import eval_command
from streamavs.errors import InputError
from streamavs.protocol import ENCODINGS

bench_app = typer.Typer(help="Benchmarks: latency of the live pipeline, accuracy under four audio conditions.",
                        no_args_is_help=True)  # fmt: skip

JsonOption = Annotated[Optional[Path], typer.Option("--json", help="Write the report (command, machine, date, results) here.")]


def _csv(text: str, option: str) -> tuple[str, ...]:
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        raise InputError(f"{option} takes a comma-separated list, got {text!r}")
    return items


def _command(name: str) -> str:
    from streamavs.bench.report import subcommand_line

    return subcommand_line(["bench", name])


@bench_app.command("latency")
def latency(
    source: Annotated[str, typer.Option(help="synthetic (a live 30 fps scene) or a media FILE/URL played at real time.")] = "synthetic",
    seconds: Annotated[float, typer.Option(help="Measured seconds per row.", min=0.1)] = 20.0,
    warmup: Annotated[float, typer.Option(help="Seconds run and discarded first, per row.", min=0.0)] = 3.0,
    fps: Annotated[float, typer.Option(help="Frame rate of the synthetic source.", min=0.1)] = 30.0,
    backends: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(BACKENDS)}.")] = ",".join(BACKENDS),
    models: Annotated[
        str, typer.Option(help="Comma-separated: default, a registered architecture (avs_tpavi_b5), or a .pt/.json/.onnx path.")
    ] = "default,avs_tpavi_b5",
    threads: Annotated[Optional[int], typer.Option(help="Engine threads, every CPU backend (default: cores - 1).", min=1)] = None,
    encoding: Annotated[str, typer.Option(help=f"Mask wire encoding: {', '.join(ENCODINGS)}.")] = "u8",
    cache: Annotated[Optional[Path], typer.Option(help="Folder for engines exported on the fly (default ~/.cache/streamavs/bench).")] = None,
    json_out: JsonOption = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG: stage medians and end-to-end latency CDF.")] = None,
) -> None:
    """Per-stage latency percentiles, FPS, drops and overflows of the real pipeline; one row per backend and model."""
    # Checked first: the report is written only after the whole benchmark has run.
    output_file(json_out, "--json", example="latency.json")
    output_file(plot, "--plot", example="latency.png")
    from streamavs.bench.latency import LatencyConfig, main_command

    chosen = _csv(backends, "--backends")
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown:
        raise InputError(f"unknown backend(s) {unknown} in --backends; choose from {list(BACKENDS)}")
    if encoding not in ENCODINGS:
        raise InputError(f"unknown --encoding {encoding!r}; choose one of {list(ENCODINGS)}")
    config = LatencyConfig(
        source=source, seconds=seconds, warmup=warmup, fps=fps, backends=chosen, models=_csv(models, "--models"),
        encoding=encoding, threads=threads, cache_dir=cache,
    )  # fmt: skip
    main_command(config, json_out=json_out, plot=plot, command=_command("latency"))


bench_app.command("accuracy", help="Same as `streamavs eval` (kept as an alias): the robust table with the gate off and on.")(
    eval_command("streamavs bench accuracy")
)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
