"""Per-frame segmentation metrics (docs/metrics.md), numpy only.

Layout and units shared by every function here:

- ``pred``: float array (B, H, W) of per-pixel foreground probabilities in [0, 1].
- ``gt``: array (B, H, W) of bool, or numbers that are exactly 0 or 1 (binarise PNG masks
  with ``gt > 0`` first).
- Per-frame results are float64 arrays (B,) of fractions in [0, 1]; percent conversion
  happens only in the meters (:mod:`streamavs.metrics.meters`).

Binarisation for IoU, FPR and FDR is ``pred > threshold`` (strict), as AVSBench's
``mask_iou`` does with ``sigmoid(logits) > 0.5``. The F-score sweeps its own thresholds
with ``>=`` (see :func:`fscore_curves`).
"""

from __future__ import annotations

import numpy as np

from streamavs.errors import InputError

IOU_EPS = 1e-7
"""Added to the IoU union, as AVSBench does."""
PR_EPS = 1e-20
"""Added to the precision and recall denominators, as AVSBench does."""
BETA2 = 0.3
"""beta^2 of the F-measure (AVSBench, CAVP, AVSBench-Robust)."""
NUM_THRESHOLDS = 255
"""Number of F-measure thresholds, ``linspace(0, 1 - 1e-10, 255)``."""


def check_pred(pred: np.ndarray, name: str = "pred", layout: str = "(B, H, W)") -> np.ndarray:
    """Validate probabilities: a 3-D float array (`layout` names its axes in messages),
    finite, in [0, 1]. Returns it."""
    pred = np.asarray(pred)
    if pred.ndim != 3:
        if pred.ndim == 2:
            hint = f"Add a leading axis for a single frame: {name}[None]."
        elif pred.ndim == 4 and pred.shape[1] == 1:
            hint = f"Drop the channel axis of a (B, 1, H, W) model output: {name}[:, 0]."
        else:
            hint = "Pass one probability map per frame."
        raise InputError(f"{name} must be a 3-D array of probabilities {layout}; got shape {pred.shape}. {hint}")
    if not np.issubdtype(pred.dtype, np.floating):
        raise InputError(
            f"{name} must hold float probabilities in [0, 1]; got dtype {pred.dtype}. "
            "Pass sigmoid(logits) (or mask.astype(np.float32) for a binary mask)."
        )
    if pred.size and not (np.isfinite(pred).all() and pred.min() >= 0.0 and pred.max() <= 1.0):
        finite = pred[np.isfinite(pred)]
        got = f"values in [{finite.min()}, {finite.max()}]" if finite.size else "no finite value"
        if finite.size != pred.size:
            got += " and NaN/inf"
        raise InputError(
            f"{name} must hold finite probabilities in [0, 1]; got {got}. "
            "Apply a sigmoid to logits before measuring."
        )
    return pred


def check_gt(gt: np.ndarray, shape: tuple[int, ...], name: str = "gt") -> np.ndarray:
    """Validate a ground-truth mask of `shape` (bool or exactly 0/1); return it as bool."""
    gt = np.asarray(gt)
    if gt.shape != tuple(shape):
        raise InputError(
            f"{name} must have the prediction's shape {tuple(shape)}; got {gt.shape}. "
            "Resize the mask to the prediction (nearest neighbour) before measuring."
        )
    if gt.dtype == np.bool_:
        return gt
    if gt.size and not ((gt == 0) | (gt == 1)).all():
        raise InputError(
            f"{name} must be binary (bool or 0/1); got values in [{gt.min()}, {gt.max()}]. "
            "Binarise 0/255 PNG masks with gt > 0."
        )
    return gt.astype(bool)


def check_threshold(threshold: float) -> float:
    """Validate a binarisation threshold in [0, 1)."""
    if not 0.0 <= float(threshold) < 1.0:
        raise InputError(
            f"threshold must lie in [0, 1) (a pixel is foreground when pred > threshold); "
            f"got {threshold}. The AVSBench convention is 0.5."
        )
    return float(threshold)


def frame_metrics(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """IoU, FPR and FDR of each frame from one pass, each (B,) float64 in [0, 1].

    Keys ``"iou"``, ``"fpr"``, ``"fdr"``; see :func:`iou_per_frame`, :func:`fpr_per_frame`
    and :func:`fdr_per_frame` for the definitions.
    """
    pred = check_pred(pred)
    gt = check_gt(gt, pred.shape)
    threshold = check_threshold(threshold)
    fg = pred > threshold  # (B, H, W)
    pp = fg.sum(axis=(1, 2), dtype=np.int64)  # predicted positive
    tp = (fg & gt).sum(axis=(1, 2), dtype=np.int64)  # true positive
    gp = gt.sum(axis=(1, 2), dtype=np.int64)  # GT positive
    npix = pred.shape[1] * pred.shape[2]
    empty = gp == 0
    inter = np.where(empty, npix - pp, tp)  # on an empty GT: true-negative pixels
    union = np.where(empty, npix, pp + gp - tp)
    return {
        "iou": inter / (union + IOU_EPS),
        "fpr": pp / float(npix),
        "fdr": np.where(pp > 0, (pp - tp) / np.maximum(pp, 1), 0.0),
    }


def iou_per_frame(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """IoU of each frame, (B,) float64 in [0, 1].

    ``inter / (union + 1e-7)``; when a frame's GT is empty the IoU is
    ``true-negative pixels / (H*W + 1e-7)``, i.e. 1 - FPR of that frame (AVSBench
    ``mask_iou``). mIoU is the mean of this over frames.
    """
    return frame_metrics(pred, gt, threshold)["iou"]


def fpr_per_frame(pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """False-positive rate of each frame (AVSBench-Robust eq. 1), (B,) float64 in [0, 1].

    Predicted-foreground pixels / (H*W). It ignores the ground truth: it is meant for
    negative-audio samples, where every predicted pixel is a false positive.
    """
    pred = check_pred(pred)
    threshold = check_threshold(threshold)
    npix = pred.shape[1] * pred.shape[2]
    return (pred > threshold).sum(axis=(1, 2), dtype=np.int64) / float(npix)


def fdr_per_frame(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """False-discovery rate of each frame (CAVP), (B,) float64 in [0, 1].

    False-positive pixels / predicted-positive pixels = 1 - precision. A frame with an
    empty prediction made no discoveries, so none is false: its FDR is 0 (the usual
    convention for FDR). CAVP does not say how frames are aggregated; the meters average
    this per-frame value over frames, like mIoU.
    """
    return frame_metrics(pred, gt, threshold)["fdr"]


def f_thresholds(num: int = NUM_THRESHOLDS, float32: bool = False) -> np.ndarray:
    """The F-measure thresholds ``linspace(0, 1 - 1e-10, num)``, ascending.

    float64 by default. ``float32=True`` gives the float32 rounding of those values, which
    is what the published torch code compares float32 probabilities against (its own
    float32 ``torch.linspace`` may differ from this by one float32 ulp at a few
    thresholds depending on the kernel; that only matters for a probability within one
    ulp of a threshold). Note that in float32 the last threshold rounds to exactly 1.0.
    """
    th = np.linspace(0.0, 1.0 - 1e-10, int(num))
    return th.astype(np.float32) if float32 else th


def fscore_curves(
    pred: np.ndarray,
    gt: np.ndarray,
    beta2: float = BETA2,
    num: int = NUM_THRESHOLDS,
    float32: bool = False,
) -> np.ndarray:
    """F-measure curve of every frame whose GT is not empty, (M, num) float64 in [0, 1].

    For threshold ``th[i]`` (:func:`f_thresholds`) a pixel is foreground when
    ``pred >= th[i]``; ``precision = tp / (predicted + 1e-20)``,
    ``recall = tp / (gt pixels + 1e-20)``,
    ``F = (1 + beta2) * P * R / (beta2 * P + R)`` with NaN (P = R = 0) set to 0.
    Frames with an empty GT are skipped, so M <= B. ``float32=True`` compares in float32
    as the published torch code did.

    The counts come from one histogram per frame rather than `num` passes over the
    pixels: ``searchsorted(th, p, side="right")`` is the number of thresholds with
    ``p >= th``, which gives the same counts as the comparisons.
    """
    pred = check_pred(pred)
    gt = check_gt(gt, pred.shape)
    num = int(num)
    keep = gt.any(axis=(1, 2))  # (B,) frames with objects
    pred, gt = pred[keep], gt[keep]  # (M, H, W)
    m = pred.shape[0]
    if m == 0:
        return np.zeros((0, num), dtype=np.float64)
    dtype = np.float32 if float32 else np.float64
    th = f_thresholds(num, float32=float32)
    k = np.searchsorted(th, pred.astype(dtype, copy=False).reshape(m, -1), side="right")  # (M, HW)
    k += (np.arange(m) * (num + 1))[:, None]  # one histogram of num+1 bins per frame
    hist = np.bincount(k.ravel(), minlength=m * (num + 1)).reshape(m, num + 1)
    hist_tp = np.bincount(k[gt.reshape(m, -1)], minlength=m * (num + 1)).reshape(m, num + 1)
    # pixels with p >= th[i] are those whose count k >= i + 1: reverse cumulative sums.
    pos = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # (M, num)
    tp = np.cumsum(hist_tp[:, ::-1], axis=1)[:, ::-1][:, 1:]  # (M, num)
    gsum = gt.reshape(m, -1).sum(axis=1)[:, None]  # (M, 1)
    prec = tp / (pos + PR_EPS)
    rec = tp / (gsum + PR_EPS)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (1.0 + beta2) * prec * rec / (beta2 * prec + rec)
    return np.nan_to_num(f, nan=0.0)


def fscore(pred: np.ndarray, gt: np.ndarray, beta2: float = BETA2, num: int = NUM_THRESHOLDS) -> float:
    """Batch-independent max F-measure of a whole set, a fraction in [0, 1].

    The per-frame curves (:func:`fscore_curves`) are averaged over every frame with a
    non-empty GT, then the maximum over thresholds is taken. NaN when no frame has an
    object (the measure is undefined there).
    """
    curves = fscore_curves(pred, gt, beta2, num)
    if curves.shape[0] == 0:
        return float("nan")
    return float(curves.mean(axis=0).max())


def fscore_avsbench_batch(pred: np.ndarray, gt: np.ndarray, beta2: float = BETA2, num: int = NUM_THRESHOLDS) -> float:
    """AVSBench's ``Eval_Fmeasure`` on one batch, a fraction in [0, 1].

    Reproduces the published code: per non-empty-GT frame, precision and recall at each
    threshold (float32 ``>=`` comparisons, eps 1e-20) give a per-frame F curve with
    NaN -> 0; the curves are averaged over the batch's non-empty frames and the maximum
    over thresholds is returned. A batch whose frames all have an empty GT returns 0
    (the code's ``score`` starts as zeros). Note that the published code averages the
    per-frame F curves, not precision and recall; this follows the code. A one-off check
    against a torch re-implementation of ``Eval_Fmeasure`` (batch sizes 1-12, values on
    the thresholds, saturated 0/1 frames, empty-GT frames) agreed to float32 rounding.
    """
    curves = fscore_curves(pred, gt, beta2, num, float32=True)
    if curves.shape[0] == 0:
        return 0.0
    return float(curves.mean(axis=0).max())


def fscore_avsbench(
    pred: np.ndarray, gt: np.ndarray, batch_size: int, beta2: float = BETA2, num: int = NUM_THRESHOLDS
) -> float:
    """AVSBench's test-set F-measure: :func:`fscore_avsbench_batch` averaged over batches.

    Frames are split in order into batches of `batch_size` (the last may be shorter, as
    with a DataLoader) and the per-batch values are averaged with equal weight, so the
    result depends on `batch_size`. AVSBench batches whole videos (5 frames each); pass
    ``batch_size = videos_per_batch * 5`` to match.
    """
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be a positive number of frames; got {batch_size}.")
    pred = check_pred(pred)
    gt = check_gt(gt, pred.shape)
    b = int(batch_size)
    scores = [fscore_avsbench_batch(pred[i : i + b], gt[i : i + b], beta2, num) for i in range(0, pred.shape[0], b)]
    return float(np.mean(scores)) if scores else float("nan")
