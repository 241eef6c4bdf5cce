"""`streamavs export SOURCE --int8`: an INT8 engine beside its FP32 engine, gated on parity and accuracy.

``export_int8_engine(source, out_dir, name)``:

1. The FP32 engine: SOURCE is either an FP32 ONNX engine (its manifest or model file, or an
   engine name), quantized as it is, or a ``.pt`` checkpoint, exported to FP32 first by
   :func:`streamavs.training.export.export_engine` (with its parity check against PyTorch) into
   a temporary folder.
2. Quantization (:mod:`streamavs.training.quantize`): calibration on the FP32 engine's own
   streaming inputs, ``quantize_static`` in QDQ form.
3. Parity against the FP32 engine over the same procedural sequence the FP32 export uses,
   each engine carrying its cache: max abs differences are recorded, but 8-bit activations move
   a boundary pixel's probability by more than any FP32 tolerance, so the gate is the share of
   pixels whose mask decision changes (``tolerance``, default 2%).
4. Accuracy: both engines are evaluated by ``streamavs eval`` on the same data (default: the test
   split of the benchmark the engine was trained on); the INT8 engine may lose at most
   ``max_miou_drop`` points of positive mIoU and gain at most ``max_fpr_rise`` of G-FPR
   (similarity gate off: the headline table).
5. Only then the model file and a manifest with ``precision: int8`` (the quantization
   settings, calibration data, both gates, the FP32 engine it came from and the command that
   rebuilds it) are moved into ``out_dir``; a failure anywhere leaves no file behind.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamavs.datasets.specs import check_spec
from streamavs.engine.base import load_engine, resolve_engine
from streamavs.engine.manifest import Manifest, file_sha256, read_manifest, today, write_manifest
from streamavs.errors import EngineError, InputError
from streamavs.training.evaluate_checkpoint import eval_record
from streamavs.training.export import ExportResult, _check_name, export_engine, install_engine, parity_inputs
from streamavs.training.quantize import QuantizeConfig, calibration_inputs, compare_engines, cpu_int8_support, quantize_model

__all__ = ["Int8Gate", "export_int8_engine", "default_eval_data", "DEFAULT_MASK_DISAGREEMENT"]

DEFAULT_MASK_DISAGREEMENT = 0.02  # share of pixels whose mask decision may differ from the FP32 engine


@dataclass(frozen=True)
class Int8Gate:
    """What the INT8 engine must meet against its FP32 engine before it is written.

    tolerance: largest share of pixels whose mask decision differs over the parity sequence.
    eval_data / eval_clips: the `streamavs eval --data` spec and clips both engines are scored
    on (None: :func:`default_eval_data`). max_miou_drop: points of positive mIoU the INT8 engine
    may lose; max_fpr_rise: G-FPR it may add (similarity gate off).
    """

    tolerance: float = DEFAULT_MASK_DISAGREEMENT
    eval_data: str | None = None
    eval_clips: int = 80
    max_miou_drop: float = 1.0
    max_fpr_rise: float = 0.002

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_eval_data(manifest: Manifest) -> str:
    """The test split of the benchmark the engine was trained on: real-test or synthetic-single/-multi."""
    data = manifest.training.get("data") if isinstance(manifest.training, dict) else None
    data = data if isinstance(data, dict) else {}
    if data.get("kind") == "real":
        return "real-test"
    return "synthetic-multi" if data.get("setting") == "multi" else "synthetic-single"


def _fp32_source(source: Path, work: Path, n_check: int, threads: int) -> tuple[Path, dict[str, Any]]:
    """The FP32 engine's manifest for `source` (exported into `work` from a checkpoint) and how it was found."""
    if source.suffix == ".pt":
        if not source.is_file():
            raise InputError(f"checkpoint {source} does not exist; pass a .pt file written by `streamavs train` "
                             "or an FP32 ONNX engine (.json)")
        result = export_engine(source, "onnx", work, name=f"{source.stem}-fp32", n_check=n_check, threads=threads)
        return result.manifest_path, {"checkpoint": source.name, "exported_fp32_in_this_run": True}
    manifest_path = resolve_engine(source)
    manifest = read_manifest(manifest_path)
    if manifest.backend != "onnx" or manifest.precision != "fp32":
        raise InputError(
            f"--int8 quantizes an FP32 ONNX engine, but {manifest.name!r} is {manifest.backend} {manifest.precision}; "
            "pass an FP32 engine exported with `streamavs export CHECKPOINT` or the .pt checkpoint itself"
        )
    return manifest_path, {"engine": manifest.name, "exported_fp32_in_this_run": False}


def _evaluate(manifest_path: Path, data: str, clips: int, work: Path) -> dict[str, Any]:
    """`streamavs eval` of one engine (a separate process: the evaluation's own code path); its JSON."""
    out = work / f"eval-{manifest_path.stem}.json"
    cmd = [sys.executable, "-m", "streamavs", "eval", "--engine", str(manifest_path), "--data", data,
           "--clips", str(clips), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise EngineError(f"evaluating {manifest_path.name} on {data} failed: {last[0]}; run "
                          f"`streamavs eval --engine {manifest_path.name} --data {data}` to see why")
    return eval_record(manifest_path, data, clips, json.loads(out.read_text()))


def _accuracy_gate(fp32: dict[str, Any], int8: dict[str, Any], gate: Int8Gate) -> dict[str, Any]:
    """Deltas INT8 - FP32 (gate off decides; gate on recorded) and whether they pass."""
    deltas = {}
    for table in ("gate_off", "gate_on"):
        a, b = fp32[table], int8[table]
        deltas[table] = {
            "positive_miou": b["positive"]["miou"] - a["positive"]["miou"],
            "g_miou": b["global"]["g_miou"] - a["global"]["g_miou"],
            "g_fpr": b["global"]["g_fpr"] - a["global"]["g_fpr"],
        }
    headline = deltas["gate_off"]
    passed = headline["positive_miou"] >= -gate.max_miou_drop and headline["g_fpr"] <= gate.max_fpr_rise
    return {"fp32": {t: {"positive_miou": fp32[t]["positive"]["miou"], **fp32[t]["global"]} for t in ("gate_off", "gate_on")},
            "int8": {t: {"positive_miou": int8[t]["positive"]["miou"], **int8[t]["global"]} for t in ("gate_off", "gate_on")},
            "delta_int8_minus_fp32": deltas, "max_miou_drop": gate.max_miou_drop, "max_fpr_rise": gate.max_fpr_rise,
            "decided_by": "gate_off", "passed": passed}


def int8_command(source: Path, name: str, out_dir: Path, config: QuantizeConfig, gate: Int8Gate, eval_data: str) -> str:
    """The command line that rebuilds this engine (names only: no machine paths)."""
    parts = ["streamavs", "export", source.name if source.is_absolute() else str(source), "--int8", "--name", name,
             "--out", out_dir.name if out_dir.is_absolute() else str(out_dir),
             "--calibration", config.calibration, "--calibration-clips", str(config.calibration_clips),
             "--eval", eval_data, "--eval-clips", str(gate.eval_clips)]
    return " ".join(shlex.quote(p) for p in parts)


def export_int8_engine(
    source: str | Path,
    out_dir: str | Path = "engines",
    name: str | None = None,
    config: QuantizeConfig = QuantizeConfig(),
    gate: Int8Gate = Int8Gate(),
    *,
    n_check: int = 20,
    threads: int = 1,
    progress=None,
) -> tuple[ExportResult, dict[str, Any]]:
    """Quantize `source` (an FP32 ONNX engine or a .pt checkpoint) into INT8 engine `name` in `out_dir`.

    Returns (the ExportResult, the accuracy-gate record). Raises EngineError, writing nothing,
    when the parity or the accuracy gate fails. `progress` (callable taking a str) hears each step.
    """
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    source, out_dir = Path(source), Path(out_dir)
    if not 0 <= gate.tolerance <= 1:
        raise InputError(f"the INT8 parity tolerance is a share of pixels in [0, 1], got {gate.tolerance!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".int8-export-", dir=out_dir))
    try:
        fp32_path, origin = _fp32_source(source, tmp, n_check, threads)
        fp32 = read_manifest(fp32_path)
        name = _check_name(name or f"{fp32.name.removesuffix('-fp32')}-int8")
        eval_data = check_spec(gate.eval_data or default_eval_data(fp32), "--eval")  # before the minutes of work
        say(f"calibrating on {config.calibration_clips} {config.calibration} clips with {fp32.name} (FP32)")
        feeds, calibration = calibration_inputs(fp32_path, config)
        model_tmp = tmp / f"{name}.onnx"
        say(f"quantizing ({config.quant_format}, {config.method}) over {len(feeds)} calibration inputs")
        record = quantize_model(fp32_path.parent / fp32.model_file, model_tmp, feeds, config)
        del feeds
        command = int8_command(source, name, out_dir, config, gate, eval_data)
        manifest = dataclasses.replace(
            fp32, name=name, precision="int8", model_file=model_tmp.name, sha256=file_sha256(model_tmp), created=today(),
            training={k: v for k, v in fp32.training.items() if k != "eval"},
            export={"exporter": "onnxruntime.quantization.quantize_static", "command": command,
                    "source": {**origin, "fp32_sha256": fp32.sha256, "fp32_export": fp32.export},
                    "quantization": {**config.to_dict(), **record, "calibration_data": calibration,
                                     "cpu": cpu_int8_support()}},
        )
        manifest_tmp = write_manifest(manifest, tmp / f"{name}.json")
        inputs, described = parity_inputs(fp32.frame.size[0], n_check)
        with load_engine(fp32_path, threads=threads) as reference, load_engine(manifest_tmp, threads=threads) as candidate:
            parity = compare_engines(reference, candidate, inputs)
        say(f"parity vs FP32: {parity['mask_disagreement']:.4%} of mask pixels differ, mask IoU {parity['mask_iou']:.4f}")
        if not parity["mask_disagreement"] <= gate.tolerance:
            raise EngineError(
                f"INT8 export of {fp32.name} refused: {parity['mask_disagreement']:.2%} of mask pixels differ from the FP32 "
                f"engine over {n_check} frames (tolerance {gate.tolerance * 100:.4g}%); nothing was written. Keep more of the "
                "graph in float (QuantizeConfig.exclude_stages) or calibrate on more clips"
            )
        parity.update(reference="the FP32 engine, ONNX Runtime", inputs=f"{n_check} consecutive frames, cache carried "
                      f"through; {described}", tolerance=gate.tolerance, gated_on="mask_disagreement", passed=True)
        say(f"evaluating both engines on {eval_data} ({gate.eval_clips} clips)")
        eval_fp32 = _evaluate(fp32_path, eval_data, gate.eval_clips, tmp)
        eval_int8 = _evaluate(manifest_tmp, eval_data, gate.eval_clips, tmp)
        accuracy = _accuracy_gate(eval_fp32, eval_int8, gate)
        if not accuracy["passed"]:
            d = accuracy["delta_int8_minus_fp32"]["gate_off"]
            raise EngineError(
                f"INT8 export of {fp32.name} refused: on {eval_data} ({gate.eval_clips} clips) positive mIoU moved "
                f"{d['positive_miou']:+.2f} points (allowed -{gate.max_miou_drop:g}) and G-FPR {d['g_fpr']:+.4f} (allowed "
                f"+{gate.max_fpr_rise:g}) against the FP32 engine; nothing was written. Keep more of the graph in float or "
                "calibrate on more clips"
            )
        eval_int8["command"] = f"streamavs eval --engine {name}.json --data {eval_data} --clips {gate.eval_clips}"
        export = {**manifest.export, "parity": parity, "accuracy_gate": {"data": eval_data, "clips": gate.eval_clips, **accuracy},
                  "seconds": round(time.perf_counter() - t0, 2)}
        manifest = dataclasses.replace(manifest, training={**manifest.training, "eval": eval_int8}, export=export)
        model_path, manifest_path = install_engine(manifest, model_tmp, manifest_tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = ExportResult(model_path, manifest_path, manifest, parity["max_abs_diff"], time.perf_counter() - t0)
    return result, accuracy
