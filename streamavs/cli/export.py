"""`streamavs export CHECKPOINT`: build an engine and verify it against PyTorch (needs the train extra)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class ExportBackend(str, Enum):
    onnx = "onnx"
    tensorrt = "tensorrt"


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint written by training.")],
        backend: Annotated[ExportBackend, typer.Option(help="Engine kind: onnx (ONNX Runtime) or tensorrt (GPU).")] = ExportBackend.onnx,
        fp16: Annotated[bool, typer.Option("--fp16", help="Half precision (tensorrt only).")] = False,
        name: Annotated[Optional[str], typer.Option(help="Engine name (default: the checkpoint's file stem).")] = None,
        out: Annotated[Path, typer.Option(help="Folder to write <name>.<ext> and <name>.json into.")] = Path("engines"),
        tolerance: Annotated[
            Optional[float], typer.Option(help="Max abs diff vs PyTorch (default 1e-3 fp32, 2e-2 fp16).", min=0)
        ] = None,
        n_check: Annotated[int, typer.Option(help="Frames in the parity check sequence.", min=1)] = 20,
        threads: Annotated[int, typer.Option(help="CPU threads for the parity check.", min=1)] = 1,
        eval_data: Annotated[Optional[str], typer.Option(
            "--eval", help="Evaluate the engine on this data (e.g. synthetic-single) and record the table in its manifest.")] = None,
        eval_clips: Annotated[int, typer.Option(help="Clips for --eval (x5 seconds).", min=4)] = 80,
    ) -> None:
        """Export CHECKPOINT to an engine; refuses to write it unless it matches PyTorch within --tolerance."""
        from streamavs.cli.checks import output_dir
        from streamavs.errors import InputError, require

        if checkpoint.is_dir():
            raise InputError(
                f"checkpoint {checkpoint} is a folder; pass a .pt file written by `streamavs train`, "
                f"e.g. {checkpoint / 'best.pt'}"
            )
        if not checkpoint.is_file():
            raise InputError(f"checkpoint {checkpoint} does not exist; pass a .pt file written by `streamavs train`")
        output_dir(out, "--out", example="engines")
        require("torch", "train", "streamavs export")
        from streamavs.training.export import export_engine

        result = export_engine(checkpoint, backend.value, out, name, fp16=fp16, tolerance=tolerance,
                               n_check=n_check, threads=threads)
        m = result.manifest
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in result.max_abs_diff.items())
        size = result.model_path.stat().st_size / 1e6
        typer.echo(f"wrote {result.model_path} ({size:.1f} MB) and {result.manifest_path.name}")
        typer.echo(f"exporter {m.export.get('exporter')}, {m.precision}, frame {m.frame.size[0]}x{m.frame.size[1]}, "
                   f"parity over {n_check} frames: {diffs} (tolerance {m.export['parity']['tolerance']:g}); "
                   f"{result.seconds:.1f} s")
        if eval_data:
            from streamavs.training.evaluate import format_table
            from streamavs.training.evaluate_cli import record_evaluation

            record = record_evaluation(result.manifest_path, eval_data, eval_clips)
            typer.echo(f"robust table of the engine on {eval_data} ({eval_clips} clips), recorded in the manifest:")
            typer.echo(format_table(record["gate_off"]))
