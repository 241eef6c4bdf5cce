"""Describe a streaming model as an engine manifest, whatever backend will run it.

:func:`streaming_manifest` derives the manifest of a
:class:`~streamavs.model.streaming.StreamingSegmenter` from the model itself (input and output
tensors, frame normalisation, audio front end, temporal cache) and its checkpoint metadata
(training data, metrics, run), so the ONNX and TensorRT exports and the PyTorch backend describe
a model the same way. Export time only (the model is a torch module): at run time an engine's
manifest is read from its JSON file, never rebuilt.
"""

from __future__ import annotations

from typing import Any

from streamavs.audio import LogMelParams
from streamavs.engine.manifest import AudioSpec, FrameSpec, Manifest, TemporalSpec, TensorSpec, today
from streamavs.engine.thresholds import Thresholds
from streamavs.files import jsonable

__all__ = ["streaming_manifest", "library_versions", "STAGE_DATA_KEYS"]

# The [data] keys a temporal stage's training reads (besides the media folder), recorded in its manifest.
STAGE_DATA_KEYS = ("kind", "setting", "image_size", "train_clips", "val_clips", "state_change_prob", "distractor_share")


def library_versions(**extra: Any) -> dict[str, Any]:
    """Versions of streamavs, torch, onnx and onnxruntime where installed (None otherwise)."""
    import importlib

    from streamavs import __version__

    out: dict[str, Any] = {"streamavs": __version__}
    for mod in ("torch", "onnx", "onnxruntime", "torch_tensorrt"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 - absent or broken optional package: just unrecorded
            out[mod] = None
    out.update(extra)
    return out


def streaming_manifest(
    model,
    extra: dict[str, Any],
    *,
    name: str,
    backend: str,
    model_file: str,
    sha256: str,
    precision: str = "fp32",
    export: dict[str, Any] | None = None,
    opset: int | None = None,
    thresholds: Thresholds = Thresholds(),
) -> Manifest:
    """The manifest that describes `model` (a StreamingSegmenter) and its checkpoint `extra`,
    run at `thresholds` (its operating point)."""
    from streamavs.model.streaming import INPUT_NAMES, OUTPUT_NAMES

    cfg = model.segmenter.config
    size = model.image_size
    cache = tuple(int(s) for s in model.cache_shape())
    audio = LogMelParams()
    inputs = (
        TensorSpec(INPUT_NAMES[0], (1, size, size, 3), "uint8"),
        TensorSpec(INPUT_NAMES[1], (1, 1, *audio.example_shape), "float32"),  # (1, 1, 96, 64)
        TensorSpec(INPUT_NAMES[2], cache, "float32"),
    )
    outputs = (
        TensorSpec(OUTPUT_NAMES[0], (1, 1, size, size), "float32"),
        TensorSpec(OUTPUT_NAMES[1], (1, 1, size, size), "float32"),
        TensorSpec(OUTPUT_NAMES[2], (1,), "float32"),
        TensorSpec(OUTPUT_NAMES[3], cache, "float32"),
    )
    temporal = None if model.temporal is None else TemporalSpec(model.temporal.config.window, cache)
    train_cfg = extra.get("train_config") if isinstance(extra.get("train_config"), dict) else {}
    segmenter_cfg = extra.get("segmenter_train_config")  # a temporal stage: the data its segmenter learned from
    data_cfg = segmenter_cfg if isinstance(segmenter_cfg, dict) else train_cfg
    training = {
        "data": jsonable(data_cfg.get("data", "not recorded in the checkpoint")),
        "metrics": jsonable(extra.get("metrics", {})),
        "run": jsonable({k: v for k, v in (extra.get("run_state") or {}).items() if k in ("epoch", "global_step", "best_gmiou")}),
    }
    if "provenance" in extra:  # weights not trained by a recipe here (e.g. recovered by scripts/recover_segmenter.py)
        training["provenance"] = jsonable(extra["provenance"])
    if "segmenter_checkpoint" in extra:  # a temporal stage trained on a frozen segmenter (training/temporal_trainer.py)
        stage_data = {k: v for k, v in train_cfg.get("data", {}).items() if k in STAGE_DATA_KEYS}
        training["temporal_stage"] = jsonable({
            "segmenter_checkpoint": extra["segmenter_checkpoint"],
            "segmenter_provenance": extra.get("segmenter_provenance"),
            "best_epoch": extra.get("temporal_best_epoch"),
            "data": stage_data,  # the clips the stage trained on; its negatives: temporal.clip_negative_share
            "temporal": train_cfg.get("temporal"),
            **({"start": extra["temporal_start"]} if "temporal_start" in extra else {}),  # [temporal] init_stage
        })
    model_record = {"name": cfg.name, "config": cfg.to_dict()}
    if temporal is not None:
        model_record["temporal_config"] = model.temporal.config.to_dict()
    return Manifest(
        name=name,
        backend=backend,
        precision=precision,
        model_file=model_file,
        sha256=sha256,
        inputs=inputs,
        outputs=outputs,
        frame=FrameSpec(size=(size, size), mean=tuple(cfg.mean), std=tuple(cfg.std)),
        audio=AudioSpec(audio),
        temporal=temporal,
        thresholds=thresholds,
        model=model_record,
        training=training,
        versions=library_versions(opset=opset),
        export=dict(export or {}),
        created=today(),
    )
