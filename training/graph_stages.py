"""Which stage of the engine each node of an ONNX graph belongs to (for profiles and quantization).

The exporter names nodes after torch ops (``node_Conv_1288``), not modules, but every weight keeps
its module path (``segmenter.visual.body.conv_stem.weight``), and ONNX Runtime keeps those
names (or extends them: ``..._weight_bias``, ``..._weight_quantized``) in the graphs it
optimises and quantizes. So a node belongs to the stage whose weights it reads; a node without
weights (activations, reshapes, attention arithmetic, the final upsampling) belongs to the stage
of its inputs, the latest in data-flow order when they come from several.

Stages, in data-flow order: ``preprocess`` (uint8 frame -> normalised float, inside the graph),
``audio``, ``visual``, ``necks``, ``fusions``, ``decoder``, ``similarity_head``, ``temporal``;
``other`` for a node reached from none of them. :data:`STAGE_GROUPS` folds them into the four
parts a profile reports: visual encoder, audio encoder, fusion/decoder, temporal stage.

Pure ``onnx`` protobuf reading: no onnxruntime, no torch.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["STAGES", "STAGE_GROUPS", "INPUT_STAGES", "node_stages", "stage_of_name", "group_of", "stage_totals"]

STAGES = ("preprocess", "audio", "visual", "necks", "fusions", "decoder", "similarity_head", "temporal", "other")
# The four parts of the engine a profile is read by.
STAGE_GROUPS = {
    "visual encoder": ("preprocess", "visual"),
    "audio encoder": ("audio",),
    "fusion/decoder": ("necks", "fusions", "decoder", "similarity_head"),
    "temporal stage": ("temporal",),  # with the final upsampling of its mask and uncertainty to frame size
    "other": ("other",),
}
# Graph inputs (streamavs.model.streaming.INPUT_NAMES) and the stage that first reads them.
INPUT_STAGES = {"frame": "preprocess", "log_mel": "audio", "feature_cache": "temporal"}
_PREFIXES = (
    ("segmenter.visual", "visual"), ("segmenter.audio", "audio"), ("segmenter.necks", "necks"),
    ("segmenter.fusions", "fusions"), ("segmenter.decoder", "decoder"),
    ("segmenter.similarity_head", "similarity_head"), ("segmenter.mask_head", "decoder"),
    ("segmenter.mean", "preprocess"), ("segmenter.std", "preprocess"), ("temporal.", "temporal"),
)
_ORDER = {s: i for i, s in enumerate(STAGES)}  # "other" last: anything reached from a stage is that stage


def stage_of_name(name: str) -> str | None:
    """The stage a weight (initializer) name belongs to, or None for an anonymous constant."""
    for prefix, stage in _PREFIXES:
        if name.startswith(prefix):
            return stage
    return INPUT_STAGES.get(name)


def group_of(stage: str) -> str:
    """The profile group (a key of STAGE_GROUPS) of a stage."""
    for group, stages in STAGE_GROUPS.items():
        if stage in stages:
            return group
    return "other"


def node_stages(graph: Any) -> dict[str, str]:
    """{node name: stage} for every node of an ``onnx.GraphProto`` (nodes are in topological order).

    A node reading a named weight takes that weight's stage (the first one, in input order);
    otherwise the latest stage, in data-flow order, among the nodes and graph inputs it reads.
    """
    produced: dict[str, str] = {}  # tensor name -> stage of the node (or graph input) that makes it
    for value in graph.input:
        stage = INPUT_STAGES.get(value.name)
        if stage is not None:
            produced[value.name] = stage
    out: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        own = next((s for s in map(stage_of_name, node.input) if s is not None), None)
        if own is None:
            upstream = [produced[i] for i in node.input if i in produced]
            known = [s for s in upstream if s != "other"]
            own = max(known, key=_ORDER.__getitem__) if known else "other"
        out[node.name or f"#{index}"] = own
        for name in node.output:
            produced[name] = own
    return out


def stage_totals(durations: Mapping[str, float], stages: Mapping[str, str]) -> dict[str, float]:
    """Sum `durations` ({node name: time}) per stage; unknown nodes count as 'other'."""
    totals = dict.fromkeys(STAGES, 0.0)
    for name, value in durations.items():
        totals[stages.get(name, "other")] += value
    return {k: v for k, v in totals.items() if v}
