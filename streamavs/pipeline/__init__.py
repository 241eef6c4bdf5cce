"""The live pipeline: sources -> pairer -> preprocess -> engine -> postprocess -> publisher.

* :mod:`~streamavs.pipeline.runner`: :class:`Pipeline`, the loop, and its config.
* :mod:`~streamavs.pipeline.stats`: per-stage timings and counters.
* :mod:`~streamavs.pipeline.preview`: JPEG preview frames for viewers, encoded off the loop.

Importing this package starts nothing and imports no heavy module beyond numpy.
"""

from streamavs.pipeline.preview import PreviewConfig
from streamavs.pipeline.runner import Pipeline, PipelineConfig, Result, preprocess_frame
from streamavs.pipeline.stats import STAGES, PipelineStats, StatsSnapshot

__all__ = [
    "Pipeline", "PipelineConfig", "PreviewConfig", "Result", "preprocess_frame",
    "STAGES", "PipelineStats", "StatsSnapshot",
]  # fmt: skip
