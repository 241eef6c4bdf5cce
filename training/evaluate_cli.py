"""`streamavs eval` / `bench accuracy`: evaluate a checkpoint or an engine on a data spec.

Data specs: ``synthetic-single`` | ``synthetic-multi`` (the synthetic TEST split, four
conditions 25% each) | ``real-test`` | ``real-test_seen_rec`` | ``real-test_heldout_rec`` |
``real-test_novel`` (the real-media test splits, see streamavs.realmedia.bank) |
``real-unseen_offscreen`` (real-media test scenes whose off-screen sound was never heard in
training; media from ``$STREAMAVS_MEDIA`` or the default cache) | ``avsbench_s4:ROOT`` |
``avsbench_ms3:ROOT`` (AVSBench test split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamavs.errors import InputError
from streamavs.training.config import EvalSection
from streamavs.training.evaluate import evaluate

REAL_SPECS = ("real-test", "real-test_seen_rec", "real-test_heldout_rec", "real-test_novel", "real-unseen_offscreen")
DATA_SPECS = ("synthetic-single", "synthetic-multi", *REAL_SPECS, "avsbench_s4:ROOT", "avsbench_ms3:ROOT")


def robust_test_set(spec: str, clips: int, image_size: int, seed: int = 0):
    """The four-condition test set named by `spec`."""
    if spec in ("synthetic-single", "synthetic-multi"):
        from streamavs.synthetic import SceneConfig
        from streamavs.training.synthetic_data import synthetic_test_set

        setting = spec.split("-")[1]
        return synthetic_test_set("test", clips, SceneConfig(image_size=image_size, setting=setting), seed=seed)
    if spec in REAL_SPECS:  # the real-media benchmark in $STREAMAVS_MEDIA or the default media cache
        from streamavs.synthetic import SceneConfig
        from streamavs.training.real_data import real_test_set, real_unseen_test_set

        scenes = SceneConfig(image_size=image_size)
        split = spec.removeprefix("real-")
        if split == "unseen_offscreen":
            return real_unseen_test_set(clips, scenes, seed=seed)
        return real_test_set(split, clips, scenes, seed=seed)
    kind, _, root = spec.partition(":")
    if kind in ("avsbench_s4", "avsbench_ms3") and root:
        from streamavs.training.avsbench import AVSBench
        from streamavs.training.conditions import RobustTestSet

        return RobustTestSet(AVSBench(root, kind.split("_")[1], "test", image_size=image_size), seed=seed)
    raise InputError(f"unknown --data {spec!r}; expected one of {DATA_SPECS}")


class EngineAsModel(torch.nn.Module):
    """Runs an engine (any backend) per sample so evaluate() can score it like a torch model.

    Each sample is a stream start (fresh cache): the robust table scores single frames."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def forward(self, frame: torch.Tensor, log_mel: torch.Tensor):
        from streamavs.model.segmenter import AVSOutput

        probs, sounding = [], []
        for i in range(frame.shape[0]):
            rgb = (frame[i].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)  # (H, W, 3)
            out = self.engine.run(rgb, log_mel[i, 0].numpy(), self.engine.initial_cache())
            probs.append(out.mask_prob)
            sounding.append(out.sounding)
        p = torch.from_numpy(np.stack(probs)).clamp(1e-6, 1 - 1e-6)[:, None]  # (B, 1, H, W)
        s = torch.tensor(sounding, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
        logit = lambda x: torch.log(x) - torch.log1p(-x)  # noqa: E731
        nan = torch.full_like(s, float("nan"))
        return AVSOutput(mask_logits=logit(p), similarity=nan, sounding_logit=logit(s), fused=None)


def evaluate_path(path: str | Path, data: str, *, clips: int = 80, fscore_mode: str = "set",
                  progress: bool = True) -> dict[str, Any]:
    """Evaluate a .pt checkpoint (its segmenter, frame by frame) or an engine file."""
    path = Path(path)
    if not path.exists():
        from streamavs.engine.base import engine_dirs, find_engines

        named = [m for m in find_engines() if m.stem == str(path)]
        if not named:
            raise InputError(
                f"{path} is neither a file nor an engine name found in {[str(d) for d in engine_dirs()]}; "
                "pass a .pt checkpoint from `streamavs train`, an engine (.json/.onnx) or an engine name"
            )
        path = named[0]
    if path.suffix == ".pt":
        from streamavs.model.checkpoint import load_model

        model, _ = load_model(path)
        size = model.config.image_size
    else:
        from streamavs.engine.base import load_engine

        engine = load_engine(path)
        model, size = EngineAsModel(engine), engine.manifest.frame.size[0]
    dataset = robust_test_set(data, clips, size)
    return evaluate(model, dataset, EvalSection(), progress=progress, fscore_mode=fscore_mode)


def record_evaluation(manifest_path: str | Path, data: str, clips: int, *, progress: bool = True) -> dict[str, Any]:
    """Evaluate an engine and store the result in its manifest (``training.eval``), so that the
    metrics an engine advertises are the ones `streamavs eval` measures on the engine itself."""
    import dataclasses

    from streamavs.engine.manifest import read_manifest, write_manifest

    result = evaluate_path(manifest_path, data, clips=clips, progress=progress)
    record = {"data": data, "clips": clips, "gate_off": result["gate_off"], "gate_on": result["gate_on"],
              "command": f"streamavs eval --checkpoint {Path(manifest_path).name} --data {data} --clips {clips}"}
    manifest = read_manifest(manifest_path)
    training = {**manifest.training, "eval": json_safe(record)}
    write_manifest(dataclasses.replace(manifest, training=training), manifest_path)
    return record


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    import math

    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
