"""Tests of streamavs.metrics: hand-computed values, the paper's worked examples,
AVSBench batch dependence, streaming == one-shot, temporal metrics."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from streamavs.errors import ConfigError, InputError
from streamavs.metrics import (
    RobustMeter,
    SegmentationMeter,
    TemporalMeter,
    f_thresholds,
    fdr_per_frame,
    fpr_per_frame,
    fscore,
    fscore_avsbench,
    fscore_avsbench_batch,
    fscore_curves,
    g_metric,
    g_metric_percent,
    iou_per_frame,
    transition_flags,
)

# A 2x2 frame whose object is the top-left pixel.
OBJ = np.array([[[1, 0], [0, 0]]], dtype=bool)  # (1, 2, 2)
EMPTY_GT = np.zeros((1, 2, 2), dtype=bool)
ZEROS = np.zeros((1, 2, 2), dtype=np.float32)
ONES = np.ones((1, 2, 2), dtype=np.float32)
PERFECT = OBJ.astype(np.float32)
# At threshold 0 every pixel is foreground: P = 1/4, R = 1, F = 1.3 * 0.25 / (0.3 * 0.25 + 1).
F_ALL_FG = 1.3 * 0.25 / (0.075 + 1.0)


# ---------------------------------------------------------------- worked examples (docs/metrics.md)


def test_table2_worked_example_baseline():
    neg_miou = np.mean([76.6, 77.6, 78.2])
    neg_f = np.mean([87.1, 88.0, 88.2])
    # The paper prints 35.032 from unrounded inputs; from these 0.1-rounded ones it is 35.035.
    assert abs(g_metric_percent(78.7, neg_miou) - 35.03) < 0.01
    assert round(g_metric_percent(87.9, neg_f), 2) == 21.48


def test_table8_worked_example_method():
    assert round(g_metric_percent(78.15, 0.16), 2) == 87.67
    assert round(g_metric_percent(88.22, 22.59), 2) == 82.46


def test_g_metric_units_are_explicit():
    assert g_metric(0.7815, 0.0016) == pytest.approx(g_metric_percent(78.15, 0.16) / 100)
    assert g_metric(0.0, 1.0) == 0.0
    assert g_metric(1.0, 0.0) == 1.0
    with pytest.raises(InputError, match="g_metric_percent"):
        g_metric(78.7, 0.5)
    with pytest.raises(InputError, match=r"\[0, 100\]"):
        g_metric_percent(120.0, 3.0)


# ---------------------------------------------------------------- hand-computed frames


def test_object_frame_empty_prediction():
    assert iou_per_frame(ZEROS, OBJ)[0] == 0.0
    assert fpr_per_frame(ZEROS)[0] == 0.0
    assert fdr_per_frame(ZEROS, OBJ)[0] == 0.0  # no discoveries, none false
    # Only threshold 0 (p >= 0) selects pixels; every other threshold has P = R = 0 -> 0.
    curve = fscore_curves(ZEROS, OBJ)[0]
    assert curve[0] == pytest.approx(F_ALL_FG)
    assert np.all(curve[1:] == 0.0)
    assert fscore(ZEROS, OBJ) == pytest.approx(F_ALL_FG)


def test_object_frame_all_ones_prediction():
    assert iou_per_frame(ONES, OBJ)[0] == pytest.approx(0.25)
    assert fpr_per_frame(ONES)[0] == 1.0
    assert fdr_per_frame(ONES, OBJ)[0] == 0.75
    # 1.0 >= every threshold, so the curve is flat at P = 1/4, R = 1.
    assert np.allclose(fscore_curves(ONES, OBJ)[0], F_ALL_FG)
    assert fscore_avsbench_batch(ONES, OBJ) == pytest.approx(F_ALL_FG, rel=1e-6)


def test_object_frame_perfect_prediction():
    assert iou_per_frame(PERFECT, OBJ)[0] == pytest.approx(1.0, abs=1e-6)
    assert fpr_per_frame(PERFECT)[0] == 0.25  # FPR ignores the ground truth
    assert fdr_per_frame(PERFECT, OBJ)[0] == 0.0
    assert fscore(PERFECT, OBJ) == pytest.approx(1.0)


def test_empty_gt_frames():
    # IoU on an empty GT is true negatives / all pixels = 1 - FPR.
    assert iou_per_frame(ZEROS, EMPTY_GT)[0] == pytest.approx(1.0, abs=1e-6)
    assert iou_per_frame(ONES, EMPTY_GT)[0] == 0.0
    half = np.array([[[0.9, 0.9], [0.1, 0.1]]], dtype=np.float32)
    assert iou_per_frame(half, EMPTY_GT)[0] == pytest.approx(0.5)
    assert fpr_per_frame(half)[0] == 0.5
    assert fdr_per_frame(half, EMPTY_GT)[0] == 1.0
    assert fdr_per_frame(ONES, EMPTY_GT)[0] == 1.0
    # F skips empty-GT frames: undefined for the set, 0 for an AVSBench batch.
    assert fscore_curves(ONES, EMPTY_GT).shape == (0, 255)
    assert np.isnan(fscore(ONES, EMPTY_GT))
    assert fscore_avsbench_batch(ONES, EMPTY_GT) == 0.0


def test_binarisation_is_strict_and_configurable():
    pred = np.array([[[0.5, 0.6], [0.3, 0.0]]], dtype=np.float32)
    assert fpr_per_frame(pred)[0] == 0.25  # 0.5 is background: pred > 0.5
    assert fpr_per_frame(pred, threshold=0.2)[0] == 0.75
    assert iou_per_frame(pred, OBJ, threshold=0.2)[0] == pytest.approx(1 / 3)


def test_fscore_curves_match_threshold_loop():
    """The histogram implementation equals the definition: one >= pass per threshold."""
    rng = np.random.default_rng(1)
    for float32 in (False, True):
        th = f_thresholds(float32=float32)
        # Values drawn from the thresholds themselves hit the >= boundary exactly.
        pred = rng.choice(th, size=(4, 6, 5)).astype(np.float32 if float32 else np.float64)
        gt = rng.random((4, 6, 5)) < 0.4
        gt[2] = False
        got = fscore_curves(pred, gt, float32=float32)
        want = []
        for p, g in zip(pred, gt):
            if not g.any():
                continue
            fg = p[None] >= th[:, None, None]  # (255, H, W)
            tp = (fg & g).sum(axis=(1, 2))
            prec, rec = tp / (fg.sum(axis=(1, 2)) + 1e-20), tp / (g.sum() + 1e-20)
            with np.errstate(invalid="ignore"):
                f = 1.3 * prec * rec / (0.3 * prec + rec)
            want.append(np.nan_to_num(f))
        assert got.shape == (3, 255)
        np.testing.assert_allclose(got, np.array(want), rtol=1e-12, atol=0)


def test_thresholds():
    th = f_thresholds()
    assert th.dtype == np.float64 and th.shape == (255,)
    assert th[0] == 0.0 and th[-1] == 1.0 - 1e-10
    assert f_thresholds(float32=True)[-1] == np.float32(1.0)


def test_float32_thresholds_match_torch_within_one_ulp():
    torch = pytest.importorskip("torch")
    ours = f_thresholds(float32=True)
    theirs = torch.linspace(0, 1 - 1e-10, 255).numpy()
    assert np.all(np.abs(ours - theirs) <= np.spacing(theirs))


# ---------------------------------------------------------------- F-score modes


def _three_frames():
    """Frame 1 perfect, frame 2 empty prediction, frame 3 empty GT."""
    pred = np.concatenate([PERFECT, ZEROS, ONES])
    gt = np.concatenate([OBJ, OBJ, EMPTY_GT])
    return pred, gt


def test_avsbench_mode_depends_on_batch_size():
    pred, gt = _three_frames()
    # Curves: frame 1 = [F0, 1, 1, ...], frame 2 = [F0, 0, 0, ...]; frame 3 is skipped.
    assert fscore_avsbench(pred, gt, batch_size=3) == pytest.approx(0.5)
    assert fscore_avsbench(pred, gt, batch_size=2) == pytest.approx(0.25)  # [f1, f2] 0.5, [f3] 0
    assert fscore_avsbench(pred, gt, batch_size=1) == pytest.approx((1.0 + F_ALL_FG + 0.0) / 3, rel=1e-6)
    with pytest.raises(InputError, match="batch_size"):
        fscore_avsbench(pred, gt, batch_size=0)


def test_evaluation_in_avsbench_mode_updates_once_per_whole_video():
    """AVSBench's test batches are whole videos: the engine and checkpoint evaluations feed the meters
    one video per update in that mode (16-frame batches cut videos apart and moved G-F by 1.2 points)."""
    from streamavs.evaluation import MeterFeed

    rng = np.random.default_rng(0)
    videos = [(f"v{i}", rng.random((5, 8, 8), dtype=np.float32), rng.random((5, 8, 8)) > 0.7) for i in range(4)]
    for batch_size in (3, 16):
        feed = MeterFeed(0.5, 0.5, "avsbench", batch_size)
        for name, pred, gt in videos:
            for t in range(5):
                feed.add(pred[t], 1.0, gt[t], "positive", name)
        table = feed.close()["gate_off"].table()
        per_video = np.mean([fscore_avsbench(pred, gt, batch_size=5) for _, pred, gt in videos])
        assert table["positive"]["fscore"] == pytest.approx(100 * per_video, rel=1e-6)
    all_pred, all_gt = np.concatenate([v[1] for v in videos]), np.concatenate([v[2] for v in videos])
    cut = fscore_avsbench(all_pred, all_gt, batch_size=3)  # what batches that cut videos apart measure
    assert abs(100 * cut - table["positive"]["fscore"]) > 0.1


def test_set_mode_is_batch_independent():
    pred, gt = _three_frames()
    for chunk in (1, 2, 3):
        meter = SegmentationMeter()
        for i in range(0, 3, chunk):
            meter.update(pred[i : i + chunk], gt[i : i + chunk])
        assert meter.result()["fscore"] == pytest.approx(50.0)


def test_avsbench_meter_batch_with_only_empty_gt_scores_zero():
    meter = SegmentationMeter(fscore_mode="avsbench")
    meter.update(np.concatenate([ONES, ZEROS]), np.concatenate([EMPTY_GT, EMPTY_GT]))
    assert meter.result()["fscore"] == 0.0
    meter.update(PERFECT, OBJ)
    assert meter.result()["fscore"] == pytest.approx(50.0)  # (0 + 1) / 2 batches


def test_meter_equals_one_shot():
    rng = np.random.default_rng(7)
    pred = rng.random((23, 16, 12)).astype(np.float32)
    gt = rng.random((23, 16, 12)) < 0.3
    gt[[3, 10, 11]] = False
    set_meter, avs_meter = SegmentationMeter(), SegmentationMeter(fscore_mode="avsbench")
    for i in range(0, 23, 5):  # uneven last batch of 3
        set_meter.update(pred[i : i + 5], gt[i : i + 5])
        avs_meter.update(pred[i : i + 5], gt[i : i + 5])
    res = set_meter.result()
    assert res["n"] == 23
    assert res["miou"] == pytest.approx(100 * iou_per_frame(pred, gt).mean(), rel=1e-12)
    assert res["fscore"] == pytest.approx(100 * fscore(pred, gt), rel=1e-12)
    assert res["fpr"] == pytest.approx(fpr_per_frame(pred).mean(), rel=1e-12)
    assert res["fdr"] == pytest.approx(fdr_per_frame(pred, gt).mean(), rel=1e-12)
    avs = avs_meter.result()
    assert avs["fscore"] == pytest.approx(100 * fscore_avsbench(pred, gt, batch_size=5), rel=1e-12)
    assert avs["fscore"] != pytest.approx(res["fscore"], rel=1e-6)
    assert avs["miou"] == res["miou"]


def test_empty_meter_and_bad_config():
    res = SegmentationMeter().result()
    assert res["n"] == 0 and np.isnan(res["miou"]) and np.isnan(res["fscore"])
    with pytest.raises(ConfigError, match="avsbench"):
        SegmentationMeter(fscore_mode="batch")
    with pytest.raises(ConfigError, match="threshold"):
        SegmentationMeter(threshold=1.5)


# ---------------------------------------------------------------- robust table


def test_robust_table_hand_computed():
    meter = RobustMeter()
    meter.update("positive", PERFECT, OBJ)
    meter.update("silence", ZEROS, OBJ)  # against the original object mask
    meter.update("noise", ONES, OBJ)
    meter.update("offscreen", PERFECT, OBJ)  # a model that ignores the audio
    t = meter.table()
    assert t["positive"]["miou"] == pytest.approx(100.0, abs=1e-4)
    assert t["positive"]["fscore"] == pytest.approx(100.0)
    assert t["silence"]["miou"] == 0.0 and t["silence"]["fpr"] == 0.0
    assert t["noise"]["miou"] == pytest.approx(25.0) and t["noise"]["fpr"] == 1.0
    assert t["offscreen"]["fpr"] == 0.25
    neg = t["negative"]
    assert neg["n"] == 3
    assert neg["miou"] == pytest.approx(125.0 / 3, rel=1e-6)
    # Pooled curve: F0 at threshold 0, (0 + F0 + 1) / 3 above it.
    f_n = (F_ALL_FG + 1.0) / 3
    assert neg["fscore"] == pytest.approx(100 * f_n)
    assert t["global"]["g_fpr"] == pytest.approx(1.25 / 3)
    assert t["global"]["g_miou"] == pytest.approx(100 * 2 * (1 - 125 / 300) / (2 - 125 / 300), rel=1e-6)
    assert t["global"]["g_f"] == pytest.approx(100 * 2 * (1 - f_n) / (2 - f_n), rel=1e-6)


def test_robust_table_before_negatives_and_bad_condition():
    meter = RobustMeter()
    meter.update("positive", PERFECT, OBJ)
    t = meter.table()
    assert np.isnan(t["global"]["g_miou"]) and np.isnan(t["global"]["g_fpr"])
    assert t["silence"]["n"] == 0
    with pytest.raises(InputError, match="offscreen"):
        meter.update("off-screen", PERFECT, OBJ)


# ---------------------------------------------------------------- input checks


def test_input_errors_give_the_fix():
    with pytest.raises(InputError, match="gt > 0"):
        iou_per_frame(ONES, OBJ.astype(np.uint8) * 255)
    with pytest.raises(InputError, match="sigmoid"):
        iou_per_frame(ONES * 3, OBJ)
    with pytest.raises(InputError, match="sigmoid"):
        fpr_per_frame(np.full((1, 2, 2), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match=r"pred\[None\]"):
        fpr_per_frame(ONES[0])
    with pytest.raises(InputError, match=r"\(B, 1, H, W\) model output: pred\[:, 0\]"):
        fpr_per_frame(ONES[:, None])
    with pytest.raises(InputError, match="shape"):
        iou_per_frame(ONES, np.zeros((1, 3, 2), dtype=bool))
    with pytest.raises(InputError, match="float"):
        fpr_per_frame(OBJ)


# ---------------------------------------------------------------- temporal


def test_transition_flags():
    sounding = np.array([[0, 0], [1, 0], [1, 1], [0, 0], [0, 1]], dtype=bool)  # (T=5, 2 objects)
    started, silenced = transition_flags(sounding)
    assert started.tolist() == [False, True, True, False, True]
    assert silenced.tolist() == [False, False, False, True, False]
    started, silenced = transition_flags(sounding, previous=np.array([True, False]))
    assert started[0] == False and silenced[0] == True  # noqa: E712
    started, silenced = transition_flags(np.array([1, 0, 0, 1]))  # one object
    assert started.tolist() == [False, False, False, True]
    assert silenced.tolist() == [False, True, False, False]
    with pytest.raises(InputError, match="previous"):
        transition_flags(sounding, previous=np.array([True]))


def test_temporal_meter_hand_computed():
    meter = TemporalMeter()
    # Clip 1: the object (top-left) starts at t=1; the prediction overshoots to the
    # top-right pixel at t=1 only.
    gt = np.array([[[0, 0], [0, 0]], [[1, 0], [0, 0]], [[1, 0], [0, 0]]], dtype=bool)
    pred = np.array([[[0, 0], [0, 0]], [[1, 1], [0, 0]], [[1, 0], [0, 0]]], dtype=np.float32)
    started, silenced = transition_flags(gt.any(axis=(1, 2)))
    assert started.tolist() == [False, True, False]
    meter.update(pred, gt, started, silenced)
    r = meter.result()
    assert r["miou_started"] == pytest.approx(50.0)
    assert np.isnan(r["fpr_silenced"])
    # Pair 0->1: 3 GT-stable pixels, 1 flips (top-right; top-left changes in GT too).
    # Pair 1->2: 4 stable, 1 flips (top-right).
    assert (r["flicker"], r["n_stable"]) == (pytest.approx(2 / 7), 7)
    # Clip 2: the object goes silent at t=1 and the prediction lights the bottom-right pixel.
    gt2 = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
    pred2 = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 1]]], dtype=np.float32)
    meter.update(pred2, gt2, np.array([False, False]), np.array([False, True]))
    r = meter.result()
    assert r["fpr_silenced"] == 0.25 and r["n_silenced"] == 1
    assert r["miou_started"] == pytest.approx(50.0) and r["n_started"] == 1
    assert r["flicker"] == pytest.approx(3 / 10) and r["n_stable"] == 10
    with pytest.raises(InputError, match="started"):
        meter.update(pred2, gt2, np.array([False]), np.array([False, True]))


def test_metrics_import_no_torch():
    code = "import sys, streamavs.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
