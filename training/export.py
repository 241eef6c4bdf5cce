"""Export a streaming checkpoint to an engine and verify it against PyTorch before writing it.

``export_engine(checkpoint, "onnx", out_dir)``:

1. ``load_streaming(checkpoint)``: the segmenter plus its temporal stage, in eval mode.
2. Compile: ``torch.onnx.export`` (the dynamo exporter first, opset 18; if it fails, the
   TorchScript exporter at opset 17; the manifest records which ran and why) followed by
   ``onnx.checker.check_model``; or torch-tensorrt (dynamo IR, optional FP16, saved as an
   ExportedProgram).
3. Parity: the compiled engine, loaded through the runtime's own loader (so the manifest and
   hash checks run too), and PyTorch eager each run the same sequence of ``n_check`` frames and
   log-mel examples (a procedural clip from ``streamavs.synthetic``), each carrying its own
   feature cache through the sequence so the temporal path is covered. The reference always
   runs on the CPU: CUDA eager would use TF32 convolutions by default and is no exact FP32 reference. Max abs differences of
   mask_prob, uncertainty, sounding and the cache must all be <= tolerance.
4. Only then are the model file and manifest moved into ``out_dir`` (renames from a temporary
   folder in ``out_dir``); a failure anywhere leaves no file behind.
"""

from __future__ import annotations

import dataclasses

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from streamavs.audio import LogMelParams
from streamavs.engine.base import Engine, load_engine
from streamavs.engine.manifest import MODEL_SUFFIXES, Manifest, default_engine_name, file_sha256, write_manifest
from streamavs.engine.thresholds import Thresholds, check_band, check_threshold_value
from streamavs.errors import EngineError, InputError, require

__all__ = ["ExportResult", "export_engine", "parity_inputs", "check_parity", "install_engine", "DEFAULT_TOLERANCE",
           "PARITY_FRAMES"]

DEFAULT_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}  # max abs diff of probabilities, per precision
PARITY_FRAMES = 20  # default length of the parity sequence (consecutive frames, cache carried)
ONNX_OPSET = 18  # dynamo exporter; the TorchScript fallback uses 17
_FALLBACK_OPSET = 17
_OUTPUTS = ("mask_prob", "uncertainty", "sounding", "cache")


@dataclass(frozen=True)
class ExportResult:
    """Where the engine went, its manifest, the parity diffs and how long export took (s)."""

    model_path: Path
    manifest_path: Path
    manifest: Manifest
    max_abs_diff: dict[str, float]
    seconds: float


def parity_inputs(size: int, n: int, seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """`n` (frame (size, size, 3) uint8, log_mel (96, 64) float32) pairs and a description of their source.

    A procedural clip (moving shapes with their sounds, through the real audio front end) when
    ``streamavs.synthetic`` is importable; seeded random frames and log-mels otherwise.
    """
    try:
        from streamavs.audio import LogMel, prepare_waveform
        from streamavs.synthetic import SceneConfig, generate_clip, split_seed
    except ImportError:
        rng = np.random.default_rng(seed)
        frames = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        mels = rng.normal(-4.0, 2.0, size=(n, *LogMelParams().example_shape)).astype(np.float32)  # (n, 96, 64)
        return list(zip(frames, mels)), f"seeded random (seed {seed})"
    out: list[tuple[np.ndarray, np.ndarray]] = []
    clip_index = 0
    while len(out) < n:  # clips are at most 60 s long
        seconds = min(60, n - len(out))
        config = SceneConfig(image_size=size, seconds=seconds, state_change_prob=0.3)
        clip = generate_clip(split_seed("test", seed + clip_index), config)
        mels = LogMel().examples_per_second(prepare_waveform(clip.audio, clip.sample_rate), seconds)  # (T, 96, 64)
        out.extend(zip(np.ascontiguousarray(clip.frames), np.ascontiguousarray(mels, dtype=np.float32)))
        clip_index += 1
    return out, f"synthetic test clips from seed {seed}, state_change_prob 0.3"


def check_parity(
    reference: Engine, candidate: Engine, inputs: Sequence[tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    """Max abs differences over a sequence, each engine carrying its own cache from initial_cache().

    Returns {"mask_prob", "uncertainty", "sounding", "cache"} -> max abs diff (inf if any output is not finite).
    """
    diffs = dict.fromkeys(_OUTPUTS, 0.0)
    cache_r, cache_c = reference.initial_cache(), candidate.initial_cache()
    for frame, log_mel in inputs:
        r = reference.run(frame, log_mel, cache_r)
        c = candidate.run(frame, log_mel, cache_c)
        for key, a, b in zip(_OUTPUTS, (r.mask_prob, r.uncertainty, r.sounding, r.cache),
                             (c.mask_prob, c.uncertainty, c.sounding, c.cache)):
            a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
            d = float(np.max(np.abs(a - b))) if np.all(np.isfinite(b)) else float("inf")
            diffs[key] = max(diffs[key], d)
        cache_r, cache_c = r.cache, c.cache
    return diffs


def _export_onnx(model, args: tuple, path: Path) -> dict[str, Any]:
    """torch.onnx.export, dynamo first; returns the export record (exporter, opset, fallback reason)."""
    import torch

    from streamavs.model.streaming import INPUT_NAMES, OUTPUT_NAMES

    onnx = require("onnx", "train", "ONNX export")
    record: dict[str, Any] = {}
    common = dict(input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES))
    try:
        with torch.no_grad():
            torch.onnx.export(model, args, str(path), opset_version=ONNX_OPSET, dynamo=True,
                              external_data=False, verbose=False, **common)
        record["exporter"] = "dynamo"
    except Exception as exc:  # noqa: BLE001 - any dynamo failure: fall back and say why
        record["exporter"] = "torchscript"
        record["dynamo_error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:500]
        path.unlink(missing_ok=True)
        try:
            with torch.no_grad():
                torch.onnx.export(model, args, str(path), opset_version=_FALLBACK_OPSET, dynamo=False,
                                  do_constant_folding=True, **common)
        except Exception as exc2:  # noqa: BLE001
            raise EngineError(
                f"ONNX export failed with both exporters: dynamo ({record['dynamo_error']}); TorchScript "
                f"({type(exc2).__name__}: {exc2}); the model uses an operation ONNX cannot express"
            ) from exc2
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError and others
        raise EngineError(f"the exported ONNX model fails onnx.checker: {exc}") from exc
    proto = onnx.load(str(path), load_external_data=False)
    strip_source_metadata(proto)
    onnx.save(proto, str(path))
    record["opset"] = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
    return record


def strip_source_metadata(proto) -> None:
    """Drop per-node metadata (the dynamo exporter records Python stack traces with the absolute
    source paths of the machine that exported); it carries nothing the runtime uses."""
    for node in proto.graph.node:
        del node.metadata_props[:]
    for function in proto.functions:
        for node in function.node:
            del node.metadata_props[:]
    del proto.graph.metadata_props[:]


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise InputError(
            f"engine name {name!r} is not usable as a file name; use letters, digits, '.', '_' or '-' (e.g. avs_lite-224)"
        )
    return name


def install_engine(manifest: Manifest, model_tmp: Path, manifest_tmp: Path, out_dir: Path) -> tuple[Path, Path]:
    """The last step of an export that passed its checks: write the final `manifest` over `manifest_tmp`,
    then move the model file and the manifest from their temporary folder into `out_dir` (same file
    system: renames). Returns (model path, manifest path) in `out_dir`."""
    write_manifest(manifest, manifest_tmp)
    model_path, manifest_path = out_dir / model_tmp.name, out_dir / manifest_tmp.name
    os.replace(model_tmp, model_path)  # model first: a manifest always names a complete file
    os.replace(manifest_tmp, manifest_path)
    return model_path, manifest_path


def with_media_provenance(manifest: Manifest) -> Manifest:
    """An engine trained on the real-media benchmark records the media it learned from (versions, sha256, licences)."""
    data = manifest.training.get("data")
    if not (isinstance(data, dict) and data.get("kind") == "real"):
        return manifest
    from streamavs.realmedia.fetch import provenance

    return dataclasses.replace(manifest, training={**manifest.training, "media": provenance(data.get("media"))})


def export_engine(
    checkpoint: str | Path,
    backend: str = "onnx",
    out_dir: str | Path = "engines",
    name: str | None = None,
    fp16: bool = False,
    tolerance: float | None = None,
    n_check: int = PARITY_FRAMES,
    *,
    seed: int = 0,
    threads: int | None = 1,
    mask_threshold: float | None = None,
    hysteresis: float | None = None,
) -> ExportResult:
    """Export `checkpoint` (written by save_streaming_checkpoint) as engine `name` in `out_dir`.

    backend: "onnx" (ONNX Runtime engine, FP32 only) or "tensorrt" (torch-tensorrt; needs CUDA).
    tolerance: max abs diff allowed between engine and PyTorch on every output; None -> 1e-3
        (FP32) or 2e-2 (FP16). n_check: frames in the parity sequence (>= 1).
    threads: CPU threads for the parity run (ONNX Runtime intra-op and torch; torch's setting is
        restored afterwards); None keeps the libraries' defaults. Default 1: eager torch with 2
        OpenMP threads on a busy 2-core machine was measured 80x slower than with 1.
    mask_threshold: the manifest's ``thresholds.mask`` (the engine's operating point: pixels with
        mask_prob >= it are the mask); None -> ``Thresholds.mask``. Choose it on validation
        clips, e.g. ``python -m streamavs.bench.temporal_ablation --split val --sweep ...``.
    hysteresis: the manifest's ``thresholds.hysteresis`` (the mask-hysteresis band the runtime
        applies to each stream, :mod:`streamavs.engine.hysteresis`); None -> 0, none. Chosen on
        validation clips with the threshold (``--hysteresis`` of the same runner).
    Raises EngineError (and writes nothing) when the export or the parity check fails.
    """
    t0 = time.perf_counter()
    if backend not in ("onnx", "tensorrt"):
        raise InputError(f"export backend must be 'onnx' or 'tensorrt', got {backend!r}")
    if fp16 and backend == "onnx":
        raise InputError("--fp16 applies to --backend tensorrt; ONNX engines are exported in FP32 (drop --fp16)")
    if isinstance(n_check, bool) or not isinstance(n_check, int) or n_check < 1:
        raise InputError(f"n_check must be a positive integer number of frames, got {n_check!r}")
    precision = "fp16" if fp16 else "fp32"
    tol = DEFAULT_TOLERANCE[precision] if tolerance is None else float(tolerance)
    if not tol >= 0:
        raise InputError(f"tolerance must be a number >= 0 (max abs diff), got {tolerance!r}")
    thresholds = Thresholds(
        mask=Thresholds.mask if mask_threshold is None else
        check_threshold_value(mask_threshold, "the mask threshold (--mask-threshold)"),
        hysteresis=0.0 if hysteresis is None else check_band(hysteresis, "the hysteresis band (--hysteresis)"))
    checkpoint = Path(checkpoint)
    name = _check_name(name or default_engine_name(checkpoint))
    require("torch", "train", "engine export")
    import torch

    from streamavs.engine.describe import streaming_manifest
    from streamavs.engine.torch import TorchEngine
    from streamavs.model.streaming import load_streaming

    model, extra = load_streaming(checkpoint)
    size = model.image_size
    log_mel = torch.zeros(1, 1, *LogMelParams().example_shape)  # (1, 1, 96, 64)
    example = (torch.zeros(1, size, size, 3, dtype=torch.uint8), log_mel, model.initial_cache())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = MODEL_SUFFIXES[backend]
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.export-", dir=out_dir))
    try:
        model_tmp = tmp / f"{name}{suffix}"
        if backend == "onnx":
            record = _export_onnx(model, example, model_tmp)
        else:
            from streamavs.engine.tensorrt import compile_tensorrt, save_tensorrt

            compiled, cuda_inputs = compile_tensorrt(model, example, fp16=fp16)
            save_tensorrt(compiled, model_tmp, cuda_inputs)
            del compiled
            record = {"exporter": "torch_tensorrt (dynamo IR, ExportedProgram)"}
        record.update(checkpoint=checkpoint.name, checkpoint_sha256=file_sha256(checkpoint))

        def manifest_with(export: dict[str, Any]) -> Manifest:
            return with_media_provenance(streaming_manifest(
                model, extra, name=name, backend=backend, precision=precision, model_file=model_tmp.name,
                sha256=file_sha256(model_tmp), export=export, opset=record.get("opset"), thresholds=thresholds,
            ))

        manifest_tmp = write_manifest(manifest_with(record), tmp / f"{name}.json")
        inputs, source = parity_inputs(size, n_check, seed)
        options = {"threads": threads} if backend == "onnx" else {}
        torch_threads = torch.get_num_threads()
        try:
            with TorchEngine.from_module(model, extra, name=f"{name} (eager)", threads=threads) as reference, \
                    load_engine(manifest_tmp, **options) as candidate:
                diffs = check_parity(reference, candidate, inputs)
        finally:
            torch.set_num_threads(torch_threads)
        failed = {k: v for k, v in diffs.items() if not v <= tol}
        if failed:
            worst = ", ".join(f"{k} {v:.3g}" for k, v in failed.items())
            raise EngineError(
                f"export of {checkpoint.name} to {backend} ({precision}) refused: outputs differ from PyTorch by more "
                f"than the tolerance {tol:g} over {n_check} frames ({worst}); nothing was written. Check the model "
                "for operations that export differently, or pass a larger --tolerance if the difference is expected"
            )
        record["parity"] = {
            "reference": "PyTorch eager fp32 on the CPU",
            "inputs": f"{n_check} consecutive frames, cache carried through; {source}",
            "tolerance": tol,
            "max_abs_diff": diffs,
            "passed": True,
        }
        record["seconds"] = round(time.perf_counter() - t0, 2)
        manifest = manifest_with(record)
        model_path, manifest_path = install_engine(manifest, model_tmp, manifest_tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(model_path, manifest_path, manifest, diffs, time.perf_counter() - t0)
