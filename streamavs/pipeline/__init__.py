"""The live pipeline: sources -> pairer -> preprocess -> engine -> postprocess -> publisher.

* :mod:`~streamavs.pipeline.runner`: :class:`Pipeline`, the loop.
* :mod:`~streamavs.pipeline.config`: :class:`PipelineConfig`, the options of a run.
* :mod:`~streamavs.pipeline.stats`: per-stage timings and counters.
* :mod:`~streamavs.pipeline.status`: the periodic status line, also while no frames come.
* :mod:`~streamavs.pipeline.preview`: JPEG preview frames for viewers, encoded off the loop.

Importing this package starts nothing and imports no heavy module beyond numpy.
"""

from streamavs.pipeline.config import PipelineConfig
from streamavs.pipeline.preview import PreviewConfig
from streamavs.pipeline.runner import Pipeline, Result, preprocess_frame
from streamavs.pipeline.stats import STAGES, PipelineStats, StatsSnapshot
from streamavs.pipeline.status import StatusLine

__all__ = [
    "Pipeline", "PipelineConfig", "PreviewConfig", "Result", "preprocess_frame",
    "STAGES", "PipelineStats", "StatsSnapshot", "StatusLine",
]  # fmt: skip
