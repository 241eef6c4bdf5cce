"""`streamavs train` and `streamavs eval` (need the `train` extra)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from streamavs.cli.checks import output_dir, output_file
from streamavs.errors import require

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a recipe value: section.key=value (TOML literal). Repeatable."),
]


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
        max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps (saves last.pt).")] = None,
        device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
        set_: SetOption = None,
    ) -> None:
        """Train a segmenter (or, with a \\[temporal] section, its temporal stage). Works under torchrun."""
        from streamavs.training.config import load_config, parse_set

        output_dir(out, "--out", example="runs/my-run")
        cfg = load_config(config, parse_set(set_ or []))  # checked before torch is imported: fails in a second
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
            from streamavs.training.evaluate import format_table

            typer.echo(format_table(table["gate_off"]))
        typer.echo(f"checkpoints and log in {run_dir}")

    @app.command("eval")
    def eval_(
        checkpoint: Annotated[Path, typer.Option("--checkpoint", help="A .pt checkpoint or an engine (.onnx).")],
        data: Annotated[str, typer.Option(help="synthetic-single | synthetic-multi | real-test | real-test_seen_rec | real-test_heldout_rec | real-test_novel | real-unseen_offscreen | avsbench_s4:ROOT | avsbench_ms3:ROOT")] = "synthetic-single",
        clips: Annotated[int, typer.Option(help="Synthetic: number of test clips (x5 seconds).")] = 80,
        out: Annotated[Optional[Path], typer.Option(help="Write the tables as JSON here.")] = None,
        fscore_mode: Annotated[str, typer.Option(help="set (batch-independent) | avsbench")] = "set",
    ) -> None:
        """Print the robust table (paper Table 2) with the similarity gate off and on."""
        output_file(out, "--out", example="eval.json")
        require("torch", "train", "streamavs eval")
        from streamavs.training.evaluate import format_table
        from streamavs.training.evaluate_cli import evaluate_path

        result = evaluate_path(checkpoint, data, clips=clips, fscore_mode=fscore_mode)
        for gate in ("gate_off", "gate_on"):
            typer.echo(f"similarity gate {'off' if gate == 'gate_off' else 'on'}:")
            typer.echo(format_table(result[gate]))
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({k: v for k, v in result.items() if k != "similarity"}, indent=2))
            typer.echo(f"wrote {out}")
