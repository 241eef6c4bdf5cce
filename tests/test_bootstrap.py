"""Paired bootstrap over clips of the temporal metrics (streamavs.metrics.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamavs.errors import InputError
from streamavs.metrics import SUM_COLUMNS, TemporalMeter, metrics_from_sums, paired_bootstrap, transition_flags


def _clip(rng: np.random.Generator, t: int = 6, size: int = 8):
    """A random clip: per-second on/off source over a fixed square, predictions near the target."""
    on = rng.random(t) < 0.5
    gt = np.zeros((t, size, size), dtype=bool)
    gt[on, 2:6, 2:6] = True
    pred = np.clip(gt + rng.normal(0.0, 0.4, gt.shape), 0.0, 1.0).astype(np.float32)
    started, silenced = transition_flags(on)
    return pred, gt, started, silenced


def test_per_clip_sums_pool_to_the_meters_result():
    rng = np.random.default_rng(1)
    meter = TemporalMeter()
    for _ in range(5):
        meter.update(*_clip(rng))
    rows = meter.per_clip()
    assert rows.shape == (5, len(SUM_COLUMNS))
    pooled = metrics_from_sums(rows.sum(axis=0))
    result = meter.result()
    for name in ("miou_started", "fpr_silenced", "flicker"):
        assert float(pooled[name]) == pytest.approx(result[name])
    assert result["n_started"] == int(rows[:, 1].sum()) and result["n_stable"] == int(rows[:, 5].sum())


def test_metrics_from_sums_is_nan_where_nothing_is_counted_and_checks_its_columns():
    m = metrics_from_sums(np.array([[0.0, 0, 0.0, 0, 0, 0], [1.5, 2, 0.5, 1, 3, 30]]))  # IoU sums are fractions
    assert np.isnan(m["miou_started"][0]) and np.isnan(m["fpr_silenced"][0]) and np.isnan(m["flicker"][0])
    assert (m["miou_started"][1], m["fpr_silenced"][1], m["flicker"][1]) == (pytest.approx(75.0), 0.5, 0.1)
    with pytest.raises(InputError, match="6 columns"):
        metrics_from_sums(np.zeros((2, 5)))


def test_a_model_against_itself_differs_by_nothing():
    rng = np.random.default_rng(2)
    meter = TemporalMeter()
    for _ in range(8):
        meter.update(*_clip(rng))
    out = paired_bootstrap(meter.per_clip(), meter.per_clip(), resamples=200)
    for m in out.values():
        assert m["diff"] == 0.0 and m["low"] == 0.0 and m["high"] == 0.0 and m["a_better"] == 0.0


def test_a_model_better_on_every_clip_wins_every_resample_and_the_interval_excludes_zero():
    rng = np.random.default_rng(3)
    better, worse = TemporalMeter(), TemporalMeter()
    for _ in range(12):
        pred, gt, started, silenced = _clip(rng)
        noisy = np.clip(pred + rng.normal(0.0, 0.4, pred.shape), 0.0, 1.0).astype(np.float32)
        better.update(gt.astype(np.float32), gt, started, silenced)  # perfect masks
        worse.update(noisy, gt, started, silenced)
    out = paired_bootstrap(better.per_clip(), worse.per_clip(), resamples=300)
    assert out["flicker"]["a_better"] == 1.0 and out["flicker"]["high"] < 0.0 < -out["flicker"]["diff"]
    assert out["miou_started"]["a_better"] == 1.0 and out["miou_started"]["low"] > 0.0
    assert out["fpr_silenced"]["a"] == 0.0 and out["fpr_silenced"]["high"] <= 0.0


def test_resamples_pool_clips_as_the_meter_does_not_average_clip_ratios():
    # Two clips: A = B on clip 0 (1 silenced frame, FPR 0), A worse on clip 1 (3 silenced frames).
    a = np.array([[0.0, 0, 0.0, 1, 0, 10], [0.0, 0, 0.3, 3, 0, 10]])
    b = np.array([[0.0, 0, 0.0, 1, 0, 10], [0.0, 0, 0.0, 3, 0, 10]])
    out = paired_bootstrap(a, b, resamples=500)["fpr_silenced"]
    assert out["diff"] == pytest.approx(0.3 / 4)  # pooled over 4 frames, not the mean of 0 and 0.1
    assert out["low"] == 0.0 and out["high"] == pytest.approx(0.1)  # resamples of only clip 0, only clip 1
    assert out["a_better"] == 0.0  # A is never strictly better: ties on clip 0, worse on clip 1
    assert np.isnan(paired_bootstrap(a, b, resamples=50)["miou_started"]["low"])  # no onset in any clip


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=6), st.integers(min_value=0, max_value=10_000))
def test_the_interval_is_ordered_and_the_share_is_a_fraction(clips, seed):
    rng = np.random.default_rng(seed)
    a, b = TemporalMeter(), TemporalMeter()
    for _ in range(clips):
        pred, gt, started, silenced = _clip(rng)
        a.update(pred, gt, started, silenced)
        b.update(np.clip(pred + rng.normal(0, 0.2, pred.shape), 0, 1).astype(np.float32), gt, started, silenced)
    for m in paired_bootstrap(a.per_clip(), b.per_clip(), resamples=50, seed=seed).values():
        if not np.isnan(m["low"]):
            assert m["low"] <= m["high"] and 0.0 <= m["a_better"] <= 1.0


@pytest.mark.parametrize("a, b, match", [(np.zeros((3, 6)), np.zeros((2, 6)), "same clips"),
                                         (np.zeros((3, 5)), np.zeros((3, 5)), "same clips"),
                                         (np.zeros((0, 6)), np.zeros((0, 6)), "no clips")])
def test_bad_inputs_say_what_was_expected(a, b, match):
    with pytest.raises(InputError, match=match):
        paired_bootstrap(a, b)
    with pytest.raises(InputError, match="resamples"):
        paired_bootstrap(np.zeros((2, 6)), np.zeros((2, 6)), resamples=0)
