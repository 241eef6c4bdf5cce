"""Evaluate a .pt checkpoint, or an engine, on a data spec (streamavs.datasets.specs).

A checkpoint's segmenter runs in torch, batch by batch (:func:`evaluate_checkpoint`). An engine
runs in the numpy loop of :mod:`streamavs.evaluation`, which needs no torch;
:func:`evaluate_path` takes either. :func:`record_evaluation` stores an engine's table in its
manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamavs.datasets.conditions import BENCHMARK_REVISION
from streamavs.datasets.specs import robust_test_set
from streamavs.errors import InputError
from streamavs.files import jsonable

__all__ = ["evaluate_checkpoint", "evaluate_path", "eval_record", "record_evaluation"]


def evaluate_checkpoint(path: str | Path, data: str, *, clips: int = 80, fscore_mode: str = "set",
                        progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """The segmenter of a .pt checkpoint, frame by frame in torch, on the test set `data`; the
    result also holds the similarity (cosine) scores of positive and negative pairs."""
    from streamavs.datasets.specs import check_spec
    from streamavs.model.checkpoint import load_model
    from streamavs.training.config import EvalSection
    from streamavs.training.evaluate import evaluate

    check_spec(data)
    model, extra = load_model(path)
    if "temporal_config" in extra:  # load_model gives the segmenter only: the report would name the stage
        raise InputError(
            f"{path} holds a temporal stage, which runs on streams: --checkpoint would evaluate only its segmenter "
            f"({extra.get('segmenter_checkpoint', 'the checkpoint it was trained on')}); evaluate that checkpoint, "
            f"or export the stage (streamavs export {path} --out engines) and evaluate the engine with --engine"
        )
    dataset = robust_test_set(data, clips, model.config.image_size)
    return evaluate(model, dataset, EvalSection(), progress=progress, fscore_mode=fscore_mode)


def evaluate_path(path: str | Path, data: str, *, clips: int = 80, fscore_mode: str = "set",
                  progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """A .pt checkpoint (:func:`evaluate_checkpoint`) or an engine file or name (the numpy loop)."""
    from streamavs.evaluation import evaluate_engine_path

    if Path(path).suffix == ".pt":
        if not Path(path).is_file():
            raise InputError(f"checkpoint {path} does not exist; pass a .pt file written by `streamavs train`")
        return evaluate_checkpoint(path, data, clips=clips, fscore_mode=fscore_mode, progress=progress)
    return evaluate_engine_path(path, data, clips=clips, fscore_mode=fscore_mode, progress=progress)


def eval_record(manifest_path: str | Path, data: str, clips: int, result: dict[str, Any]) -> dict[str, Any]:
    """A manifest's ``training.eval``: both tables of `result` (an engine's evaluation), the
    benchmark revision they were measured on and the command that measures them again."""
    return {"data": data, "clips": clips, "benchmark_revision": BENCHMARK_REVISION,
            "gate_off": result["gate_off"], "gate_on": result["gate_on"],
            "command": f"streamavs eval --engine {Path(manifest_path).name} --data {data} --clips {clips}"}


def record_evaluation(manifest_path: str | Path, data: str, clips: int, *, progress: bool = True) -> dict[str, Any]:
    """Evaluate an engine and store the result in its manifest (``training.eval``), so that the
    metrics an engine advertises are the ones `streamavs eval` measures on the engine itself."""
    import dataclasses

    from streamavs.engine.manifest import read_manifest, write_manifest
    from streamavs.evaluation import evaluate_engine_path

    result = evaluate_engine_path(manifest_path, data, clips=clips, progress=progress)
    record = eval_record(manifest_path, data, clips, result)
    manifest = read_manifest(manifest_path)
    training = {**manifest.training, "eval": jsonable(record)}
    write_manifest(dataclasses.replace(manifest, training=training), manifest_path)
    return record
