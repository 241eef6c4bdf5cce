"""`streamavs export CHECKPOINT`: build an engine and verify it against PyTorch (needs the train extra).

`--int8` quantizes instead: CHECKPOINT may then also be an FP32 ONNX engine (manifest, model
file or name); the INT8 engine must match the FP32 engine's masks and accuracy before it is written.
"""

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
        checkpoint: Annotated[Path, typer.Argument(
            help="A .pt checkpoint written by training; with --int8 also an FP32 ONNX engine (.json/.onnx or a name).")],
        backend: Annotated[ExportBackend, typer.Option(help="Engine kind: onnx (ONNX Runtime) or tensorrt (GPU).")] = ExportBackend.onnx,
        fp16: Annotated[bool, typer.Option("--fp16", help="Half precision (tensorrt only).")] = False,
        name: Annotated[Optional[str], typer.Option(help="Engine name (default: the checkpoint's file stem, or its run folder's name for best.pt, last.pt and temporal.pt; with --int8 <fp32 engine name>-int8).")] = None,
        out: Annotated[Path, typer.Option(help="Folder to write <name>.<ext> and <name>.json into.")] = Path("engines"),
        tolerance: Annotated[
            Optional[float], typer.Option(help="Max abs diff vs PyTorch (default 1e-3 fp32, 2e-2 fp16); with --int8 the "
                                          "largest share of mask pixels that may differ from the FP32 engine (default 0.02).", min=0)
        ] = None,
        n_check: Annotated[int, typer.Option(help="Frames in the parity check sequence.", min=1)] = 20,
        threads: Annotated[int, typer.Option(help="CPU threads for the parity check.", min=1)] = 1,
        eval_data: Annotated[Optional[str], typer.Option(
            "--eval", help="Evaluate the engine on this data (e.g. synthetic-single) and record the table in its manifest.")] = None,
        eval_clips: Annotated[int, typer.Option(help="Clips for --eval (x5 seconds).", min=4)] = 80,
        int8: Annotated[bool, typer.Option(
            "--int8", help="INT8 ONNX engine by static quantization (QDQ), gated on parity and --eval accuracy vs FP32.")] = False,
        calibration: Annotated[str, typer.Option(
            help="--int8: calibration clips (real-train | real-val | synthetic-train | synthetic-val).")] = "real-train",
        calibration_clips: Annotated[int, typer.Option(help="--int8: calibration clips (x5 frames, in stream order).", min=1)] = 48,
        max_miou_drop: Annotated[float, typer.Option(help="--int8: positive mIoU points the INT8 engine may lose.", min=0)] = 1.0,
        max_fpr_rise: Annotated[float, typer.Option(help="--int8: G-FPR the INT8 engine may add.", min=0)] = 0.002,
        mask_threshold: Annotated[Optional[float], typer.Option(
            help="The engine's mask threshold (manifest thresholds.mask), strictly between 0 and 1, chosen on validation "
                 "clips, e.g. by `python -m streamavs.bench.temporal_ablation --split val --frame-only SEGMENTER.pt "
                 "--full temporal.pt --sweep 0.4,0.5,0.6` (engines/README.md). "
                 "--int8 keeps the FP32 engine's.")] = None,
        hysteresis: Annotated[Optional[float], typer.Option(
            help="The mask-hysteresis band the runtime applies to each stream (manifest thresholds.hysteresis), in "
                 "[0, 0.5), 0 = none, chosen on validation clips with the threshold, e.g. by `python -m "
                 "streamavs.bench.temporal_ablation --split val --frame-only SEGMENTER.pt --full temporal.pt "
                 "--sweep 0.5,0.6,0.7 --hysteresis 0,0.1,0.2`. "
                 "--int8 keeps the FP32 engine's.")] = None,
    ) -> None:
        """Export CHECKPOINT to an engine; refuses to write it unless it matches PyTorch within --tolerance."""
        from streamavs.cli.checks import output_dir
        from streamavs.errors import InputError, require

        if int8:
            if fp16 or backend is not ExportBackend.onnx:
                raise InputError("--int8 makes an ONNX Runtime engine; drop --fp16 and --backend tensorrt")
            if mask_threshold is not None or hysteresis is not None:
                raise InputError("--int8 keeps the FP32 engine's mask threshold and hysteresis; set --mask-threshold "
                                 "and --hysteresis when exporting the FP32 engine and drop them here")
            output_dir(out, "--out", example="engines")
            require("onnx", "train", "streamavs export --int8")
            _export_int8(checkpoint, out, name, tolerance, n_check, threads, eval_data, eval_clips, calibration,
                         calibration_clips, max_miou_drop, max_fpr_rise)
            return
        if checkpoint.is_dir():
            raise InputError(
                f"checkpoint {checkpoint} is a folder; pass a .pt file written by `streamavs train`, "
                f"e.g. {checkpoint / 'best.pt'}"
            )
        if not checkpoint.is_file():
            raise InputError(f"checkpoint {checkpoint} does not exist; pass a .pt file written by `streamavs train`")
        if checkpoint.suffix in (".json", ".onnx"):
            raise InputError(f"{checkpoint} is an engine, not a checkpoint: an engine is exported from the .pt file it "
                             f"was made from; to quantize this FP32 engine to INT8 add --int8 (streamavs export "
                             f"{checkpoint} --int8)")
        output_dir(out, "--out", example="engines")
        if eval_data:
            from streamavs.datasets.specs import check_spec

            check_spec(eval_data, "--eval")  # before the export, not after it
        require("torch", "train", "streamavs export")
        from streamavs.training.export import export_engine

        result = export_engine(checkpoint, backend.value, out, name, fp16=fp16, tolerance=tolerance,
                               n_check=n_check, threads=threads, mask_threshold=mask_threshold,
                               hysteresis=hysteresis)
        m = result.manifest
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in result.max_abs_diff.items())
        size = result.model_path.stat().st_size / 1e6
        typer.echo(f"wrote {result.model_path} ({size:.1f} MB) and {result.manifest_path.name}")
        typer.echo(f"exporter {m.export.get('exporter')}, {m.precision}, frame {m.frame.size[0]}x{m.frame.size[1]}, "
                   f"parity over {n_check} frames: {diffs} (tolerance {m.export['parity']['tolerance']:g}); "
                   f"mask threshold {m.thresholds.mask:g}, hysteresis band {m.thresholds.hysteresis:g}; "
                   f"{result.seconds:.1f} s")
        if eval_data:
            from streamavs.evaluation import format_table
            from streamavs.training.evaluate_checkpoint import record_evaluation

            record = record_evaluation(result.manifest_path, eval_data, eval_clips)
            typer.echo(f"robust table of the engine on {eval_data} ({eval_clips} clips), recorded in the manifest:")
            typer.echo(format_table(record["gate_off"]))


def _export_int8(source, out, name, tolerance, n_check, threads, eval_data, eval_clips, calibration, calibration_clips,
                 max_miou_drop, max_fpr_rise) -> None:
    from streamavs.training.export_int8 import DEFAULT_MASK_DISAGREEMENT, Int8Gate, export_int8_engine
    from streamavs.training.quantize import QuantizeConfig

    config = QuantizeConfig(calibration=calibration, calibration_clips=calibration_clips)
    gate = Int8Gate(tolerance=DEFAULT_MASK_DISAGREEMENT if tolerance is None else tolerance, eval_data=eval_data,
                    eval_clips=eval_clips, max_miou_drop=max_miou_drop, max_fpr_rise=max_fpr_rise)
    result, accuracy = export_int8_engine(source, out, name, config, gate, n_check=n_check, threads=threads,
                                          progress=lambda msg: typer.echo(msg, err=True))
    m = result.manifest
    parity = m.export["parity"]
    size = result.model_path.stat().st_size / 1e6
    typer.echo(f"wrote {result.model_path} ({size:.1f} MB) and {result.manifest_path.name}")
    typer.echo(f"int8, parity vs FP32 over {n_check} frames: {parity['mask_disagreement']:.3%} of mask pixels differ "
               f"(tolerance {parity['tolerance']:.1%}), mask IoU {parity['mask_iou']:.4f}; {result.seconds:.1f} s")
    fp32, q8 = accuracy["fp32"]["gate_off"], accuracy["int8"]["gate_off"]
    typer.echo(f"on {m.export['accuracy_gate']['data']} ({eval_clips} clips): positive mIoU {q8['positive_miou']:.2f} "
               f"(FP32 {fp32['positive_miou']:.2f}), G-FPR {q8['g_fpr']:.4f} (FP32 {fp32['g_fpr']:.4f})")
