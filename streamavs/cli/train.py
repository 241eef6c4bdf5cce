"""`streamavs train` (needs the `train` extra) and `streamavs eval` (an engine needs no torch; a .pt checkpoint does)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from streamavs.cli.checks import output_dir, output_file
from streamavs.datasets.specs import DATA_SPECS
from streamavs.errors import InputError, require

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a recipe value: section.key=value (TOML literal). Repeatable."),
]

# The options of the evaluation command (eval_command).
EngineOption = Annotated[Optional[Path], typer.Option(
    "--engine", help="An engine: a .json manifest, an .onnx beside its manifest, or a name from `streamavs engines`. "
                     "Runs without torch.")]  # fmt: skip
CheckpointOption = Annotated[Optional[Path], typer.Option(
    "--checkpoint", help="A .pt checkpoint from `streamavs train`: its segmenter in torch (needs the train extra), "
                         "with the similarity scores. An engine given here is evaluated as with --engine.")]  # fmt: skip
DataOption = Annotated[str, typer.Option(help=f"A test set: {' | '.join(DATA_SPECS)} (real-*: the media of "
                                               "`streamavs data fetch`; avsbench_*: the train extra).")]
ClipsOption = Annotated[int, typer.Option(help="Number of test clips (x5 seconds; AVSBench: the whole split).", min=1)]
FscoreOption = Annotated[str, typer.Option(help="set (batch-independent) | avsbench")]
JsonOutOption = Annotated[Optional[Path], typer.Option(
    "--out", "--json", help="Write the report (tables, command, machine, date) as JSON here.")]  # fmt: skip
PlotsOption = Annotated[Optional[Path], typer.Option(help="Folder for conditions.png and similarity.png (train extra).")]


def _drop_if_empty(run_dir: Path, new_folder: bool) -> None:
    """A run that failed before writing any checkpoint leaves no folder behind (only one it created)."""
    import shutil

    if new_folder and run_dir.is_dir() and not any(run_dir.rglob("*.pt")):
        shutil.rmtree(run_dir, ignore_errors=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Annotated[Path, typer.Option("--config", "-c", help="Recipe file (TOML), see training/configs/.")],
        out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<recipe name>).")] = None,
        resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last.pt.")] = False,
        max_steps: Annotated[Optional[int], typer.Option(
            help="Stop after this many steps, >= 1 (saves last.pt).")] = None,  # fmt: skip
        device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N (under torchrun, cuda: each "
                                                 "process's own GPU).")] = "auto",
        set_: SetOption = None,
    ) -> None:
        """Train a segmenter (or, with a \\[temporal] section, its temporal stage). Works under torchrun."""
        from streamavs.training.config import check_device, load_config, parse_set

        output_dir(out, "--out", example="runs/my-run")
        check_device(device)
        if max_steps is not None and max_steps < 1:
            raise InputError(f"--max-steps must be >= 1 (optimizer steps this invocation), got {max_steps}; "
                             "drop --max-steps to train the whole recipe")
        cfg = load_config(config, parse_set(set_ or []))  # checked before torch is imported: fails in a second
        if cfg.temporal is not None and (resume or max_steps is not None):
            given = " and ".join(flag for flag, on in (("--resume", resume), ("--max-steps", max_steps is not None)) if on)
            raise InputError(f"{given} apply to segmenter recipes; {config} has a [temporal] section, whose stage "
                             "trains in one run (~20 min on 2 CPU cores, fewer epochs: --set optim.epochs=N): "
                             f"drop {given}")
        require("torch", "train", "streamavs train")
        run_dir = out or Path("runs") / cfg.name
        new_folder = not run_dir.exists()
        try:
            if cfg.temporal is not None:
                from streamavs.training.temporal_trainer import train_temporal

                table = train_temporal(cfg, run_dir, device=device)
            else:
                from streamavs.training.trainer import train as run

                table = run(cfg, run_dir, resume=resume, max_steps=max_steps, device=device)
        except BaseException:
            _drop_if_empty(run_dir, new_folder)
            raise
        if table:
            from streamavs.evaluation import format_table

            typer.echo(format_table(table["gate_off"]))
        typer.echo(f"checkpoints and log in {run_dir}")

    app.command("eval")(eval_command("streamavs eval"))


def eval_command(program: str) -> Callable[..., None]:
    """The evaluation command for typer, its options declared once: `streamavs eval`, and
    `streamavs bench accuracy` (an alias: same options, same report; `program` names it in the report)."""

    def command(
        engine: EngineOption = None,
        checkpoint: CheckpointOption = None,
        data: DataOption = "synthetic-single",
        clips: ClipsOption = 80,
        fscore_mode: FscoreOption = "set",
        out: JsonOutOption = None,
        plots: PlotsOption = None,
    ) -> None:
        """Print the robust table (paper Table 2) with the similarity gate off and on."""
        evaluate_command(engine, checkpoint, data, clips, fscore_mode, out, plots, program=program)

    return command


def evaluate_command(engine: Path | None, checkpoint: Path | None, data: str, clips: int, fscore_mode: str,
                     out: Path | None, plots: Path | None, *, program: str) -> None:  # fmt: skip
    """Check the options (before any work), then evaluate and report (streamavs.bench.accuracy)."""
    from streamavs.datasets.specs import check_spec
    from streamavs.metrics.meters import FSCORE_MODES

    if (engine is None) == (checkpoint is None):
        raise InputError("give exactly one of --engine PATH or --checkpoint PATH (e.g. --engine streamavs-real-lite)")
    if fscore_mode not in FSCORE_MODES:
        raise InputError(f"--fscore-mode must be one of {' | '.join(FSCORE_MODES)}, got {fscore_mode!r}")
    check_spec(data)
    output_file(out, "--out", example="eval.json")
    output_dir(plots, "--plots", example="plots")
    if plots is not None:
        require("matplotlib", "train", "--plots")
    from streamavs.bench.accuracy import main_command
    from streamavs.bench.report import subcommand_line

    command = subcommand_line(program.split()[1:])  # `eval ...` or `bench accuracy ...`, global options kept
    main_command(engine or checkpoint, data, clips, fscore_mode, json_out=out, plots=plots, command=command,
                 engine=engine is not None)  # fmt: skip
