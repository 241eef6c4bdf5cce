"""Paired bootstrap over clips of the temporal metrics and G-mIoU (streamavs.metrics.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamavs.errors import InputError
from streamavs.metrics import (CLIP_COLUMNS, NEGATIVE_CONDITIONS, SUM_COLUMNS, ClipRows, RobustMeter, TemporalMeter,
                               clip_metrics, global_sums, metrics_from_sums, paired_bootstrap, transition_flags)


def _clip(rng: np.random.Generator, t: int = 6, size: int = 8):
    """A random clip of one object (a fixed square) that sounds in some seconds, predictions near
    the target. Returns (pred, gt, started, silenced, gt_eval, conditions): silent seconds get a
    random negative condition and are scored against the object's visible mask, as in the benchmark."""
    on = rng.random(t) < 0.5
    gt = np.zeros((t, size, size), dtype=bool)
    gt[on, 2:6, 2:6] = True
    pred = np.clip(gt + rng.normal(0.0, 0.4, gt.shape), 0.0, 1.0).astype(np.float32)
    started, silenced = transition_flags(on)
    gt_eval = gt.copy()
    gt_eval[:, 2:6, 2:6] = True
    conditions = np.where(on, "positive", rng.choice(NEGATIVE_CONDITIONS, size=t))
    return pred, gt, started, silenced, gt_eval, conditions


def _noisier(rng, clip, sigma=0.4):
    pred, *rest = clip
    return (np.clip(pred + rng.normal(0.0, sigma, pred.shape), 0.0, 1.0).astype(np.float32), *rest)


def test_per_clip_sums_pool_to_the_meters_result():
    rng = np.random.default_rng(1)
    meter = TemporalMeter()
    for _ in range(5):
        meter.update(*_clip(rng)[:4])
    rows = meter.per_clip()
    assert rows.shape == (5, len(SUM_COLUMNS))
    pooled = metrics_from_sums(rows.sum(axis=0))
    result = meter.result()
    for name in ("miou_started", "fpr_silenced", "flicker"):
        assert float(pooled[name]) == pytest.approx(result[name])
    assert result["n_started"] == meter.n_started == int(rows[:, 1].sum())
    assert result["n_stable"] == meter.n_stable == int(rows[:, 5].sum())


def test_metrics_from_sums_is_nan_where_nothing_is_counted_and_checks_its_columns():
    m = metrics_from_sums(np.array([[0.0, 0, 0.0, 0, 0, 0], [1.5, 2, 0.5, 1, 3, 30]]))  # IoU sums are fractions
    assert np.isnan(m["miou_started"][0]) and np.isnan(m["fpr_silenced"][0]) and np.isnan(m["flicker"][0])
    assert (m["miou_started"][1], m["fpr_silenced"][1], m["flicker"][1]) == (pytest.approx(75.0), 0.5, 0.1)
    with pytest.raises(InputError, match="6 columns"):
        metrics_from_sums(np.zeros((2, 5)))


def test_g_miou_of_the_rows_is_the_robust_tables_over_every_negative_condition():
    rng = np.random.default_rng(5)
    rows, robust = ClipRows(0.5), RobustMeter(0.5)
    seen = set()
    for _ in range(12):
        pred, gt, started, silenced, gt_eval, conditions = _clip(rng)
        rows.update(pred, gt, started, silenced, gt_eval, conditions)
        for cond in set(conditions):
            robust.update(cond, pred[conditions == cond], gt_eval[conditions == cond])
        seen |= set(conditions)
    assert seen == {"positive", *NEGATIVE_CONDITIONS}  # silence, noise and off-screen all pooled
    assert rows.per_clip().shape == (12, len(CLIP_COLUMNS))
    pooled = clip_metrics(rows.per_clip().sum(axis=0))
    assert float(pooled["g_miou"]) == pytest.approx(robust.table()["global"]["g_miou"], abs=1e-9)
    assert float(pooled["flicker"]) == rows.temporal.result()["flicker"]


def test_a_model_against_itself_differs_by_nothing():
    rng = np.random.default_rng(2)
    rows = ClipRows()
    for _ in range(8):
        rows.update(*_clip(rng))
    out = paired_bootstrap(rows.per_clip(), rows.per_clip(), resamples=200)
    for m in out.values():
        assert (m["diff"], m["low"], m["high"], m["a_better"], m["b_better"]) == (0.0, 0.0, 0.0, 0.0, 0.0)


def test_a_model_better_on_every_clip_wins_every_resample_and_the_interval_excludes_zero():
    rng = np.random.default_rng(3)
    better, worse = ClipRows(), ClipRows()
    for _ in range(12):
        clip = _clip(rng)
        pred, gt, *rest = clip
        better.update(gt.astype(np.float32), gt, *rest)  # perfect masks
        worse.update(*_noisier(rng, clip))
    out = paired_bootstrap(better.per_clip(), worse.per_clip(), resamples=300)
    assert out["flicker"]["a_better"] == 1.0 and out["flicker"]["high"] < 0.0 < -out["flicker"]["diff"]
    assert out["miou_started"]["a_better"] == 1.0 and out["miou_started"]["low"] > 0.0
    assert out["fpr_silenced"]["a"] == 0.0 and out["fpr_silenced"]["high"] <= 0.0
    assert out["g_miou"]["a"] == pytest.approx(100.0) and out["g_miou"]["a_better"] == 1.0  # perfect masks: 100
    assert all(m["b_better"] == 0.0 for m in out.values())


def test_resamples_pool_clips_as_the_meter_does_not_average_clip_ratios():
    # Two clips: A = B on clip 0 (1 silenced frame, FPR 0), A worse on clip 1 (3 silenced frames).
    g = [0.8, 1, 0.0, 1]  # G-mIoU columns: one positive frame at IoU 0.8, one negative at 0
    a = np.array([[0.0, 0, 0.0, 1, 0, 10, *g], [0.0, 0, 0.3, 3, 0, 10, *g]])
    b = np.array([[0.0, 0, 0.0, 1, 0, 10, *g], [0.0, 0, 0.0, 3, 0, 10, *g]])
    out = paired_bootstrap(a, b, resamples=500)["fpr_silenced"]
    assert out["diff"] == pytest.approx(0.3 / 4)  # pooled over 4 frames, not the mean of 0 and 0.1
    assert out["low"] == 0.0 and out["high"] == pytest.approx(0.1)  # resamples of only clip 0, only clip 1
    assert out["a_better"] == 0.0 and 0.5 < out["b_better"] < 1.0  # ties when only clip 0 is drawn
    assert np.isnan(paired_bootstrap(a, b, resamples=50)["miou_started"]["low"])  # no onset in any clip


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=6), st.integers(min_value=0, max_value=10_000))
def test_swapping_a_and_b_mirrors_the_interval_and_the_shares(clips, seed):
    rng = np.random.default_rng(seed)
    a, b = ClipRows(), ClipRows()
    for _ in range(clips):
        clip = _clip(rng)
        a.update(*clip)
        b.update(*_noisier(rng, clip, 0.2))
    forward = paired_bootstrap(a.per_clip(), b.per_clip(), resamples=50, seed=seed)
    backward = paired_bootstrap(b.per_clip(), a.per_clip(), resamples=50, seed=seed)  # the same draw, A and B swapped
    for name, m in forward.items():
        if not np.isnan(m["low"]):
            assert m["low"] <= m["high"] and 0.0 <= m["a_better"] + m["b_better"] <= 1.0
            back = backward[name]
            assert back["diff"] == pytest.approx(-m["diff"]) and back["low"] == pytest.approx(-m["high"])
            assert (back["a_better"], back["b_better"]) == (m["b_better"], m["a_better"])


@pytest.mark.parametrize("a, b, match", [(np.zeros((3, 10)), np.zeros((2, 10)), "same clips"),
                                         (np.zeros((3, 6)), np.zeros((3, 6)), "6 columns: stream the clips again"),
                                         (np.zeros(0), np.zeros(0), r"must be \(clips, 10\)"),
                                         (np.zeros((0, 10)), np.zeros((0, 10)), "no clips")])
def test_bad_rows_say_what_was_expected(a, b, match):
    with pytest.raises(InputError, match=match):
        paired_bootstrap(a, b)


@pytest.mark.parametrize("resamples", [0, 2.5])
def test_bad_resample_counts_are_refused(resamples):
    with pytest.raises(InputError, match="resamples must be an integer"):
        paired_bootstrap(np.zeros((2, 10)), np.zeros((2, 10)), resamples=resamples)


@pytest.mark.parametrize("conditions, match", [(["positive", "quiet"], "unknown audio conditions"),
                                                (["positive"], "one audio condition per frame"),
                                                ("positive", "one audio condition per frame")])
def test_global_sums_need_one_known_condition_per_frame(conditions, match):
    with pytest.raises(InputError, match=match):
        global_sums(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), bool), conditions, 0.5)
