"""Segmentation, robustness and temporal metrics (docs/metrics.md), numpy only.

- :mod:`.frame`: per-frame IoU / FPR / FDR and F-measure curves, one-shot set and
  AVSBench-compatible F-scores (fractions).
- :mod:`.global_metrics`: G-mIoU / G-F from positive and negative scores.
- :mod:`.meters`: streaming ``SegmentationMeter`` and ``RobustMeter`` (mIoU and F in
  percent, rates as fractions).
- :mod:`.temporal`: ``transition_flags`` and the streaming ``TemporalMeter``.
- :mod:`.calibration`: ``ErrorDetectionMeter`` (AUROC of an uncertainty for mask errors),
  ``threshold_margin`` (the baseline score it must beat) and ``CalibrationMeter`` (expected
  calibration error).
- :mod:`.bootstrap`: ``paired_bootstrap``, the spread of a difference between two models on the
  temporal metrics and G-mIoU over resamples of the same clips (``ClipRows``: one row of
  ``CLIP_COLUMNS`` per clip).

Per-frame IoU averaging is the only IoU here; dataset-level IoU (sum of intersections
over sum of unions) inflates results and must never be mixed into these tables.
"""

from streamavs.metrics.bootstrap import (BETTER, CLIP_COLUMNS, DEFAULT_RESAMPLES, GLOBAL_COLUMNS, METRIC_UNITS, ClipRows,
                                        clip_metrics, global_sums, paired_bootstrap)
from streamavs.metrics.calibration import CalibrationMeter, ErrorDetectionMeter, threshold_margin
from streamavs.metrics.frame import (
    BETA2,
    NUM_THRESHOLDS,
    f_thresholds,
    fdr_per_frame,
    fpr_per_frame,
    frame_metrics,
    fscore,
    fscore_avsbench,
    fscore_avsbench_batch,
    fscore_curves,
    iou_per_frame,
)
from streamavs.metrics.global_metrics import g_metric, g_metric_percent
from streamavs.metrics.meters import (
    CONDITIONS,
    FSCORE_MODES,
    NEGATIVE_CONDITIONS,
    UNITS,
    RobustMeter,
    SegmentationMeter,
)
from streamavs.metrics.temporal import SUM_COLUMNS, TemporalMeter, metrics_from_sums, transition_flags

__all__ = [
    "BETA2",
    "BETTER",
    "CONDITIONS",
    "CLIP_COLUMNS",
    "CalibrationMeter",
    "ClipRows",
    "DEFAULT_RESAMPLES",
    "ErrorDetectionMeter",
    "FSCORE_MODES",
    "GLOBAL_COLUMNS",
    "METRIC_UNITS",
    "NEGATIVE_CONDITIONS",
    "NUM_THRESHOLDS",
    "UNITS",
    "RobustMeter",
    "SUM_COLUMNS",
    "SegmentationMeter",
    "TemporalMeter",
    "clip_metrics",
    "f_thresholds",
    "fdr_per_frame",
    "fpr_per_frame",
    "frame_metrics",
    "fscore",
    "fscore_avsbench",
    "fscore_avsbench_batch",
    "fscore_curves",
    "g_metric",
    "g_metric_percent",
    "global_sums",
    "iou_per_frame",
    "metrics_from_sums",
    "paired_bootstrap",
    "transition_flags",
    "threshold_margin",
]
