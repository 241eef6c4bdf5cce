"""Error-detection AUROC and calibration error: known answers on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from streamavs.errors import InputError
from streamavs.metrics import CalibrationMeter, ErrorDetectionMeter, threshold_margin


def _frame(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(1, 1, -1)  # (T=1, H=1, W)


def test_auroc_is_one_when_the_score_ranks_every_error_first_and_half_for_a_constant():
    pred = _frame([0.9, 0.9, 0.1, 0.1])  # thresholded: 1 1 0 0
    gt = _frame([1, 0, 0, 1]).astype(bool)  # wrong at pixels 1 and 3
    perfect = ErrorDetectionMeter()
    perfect.update(pred, gt, _frame([0.1, 0.8, 0.2, 0.9]))
    assert perfect.result() == {"auroc": 1.0, "n_error": 2, "n_correct": 2, "error_rate": 0.5}
    inverted = ErrorDetectionMeter()
    inverted.update(pred, gt, _frame([0.8, 0.1, 0.9, 0.2]))
    assert inverted.result()["auroc"] == 0.0
    constant = ErrorDetectionMeter()
    constant.update(pred, gt, _frame([0.5, 0.5, 0.5, 0.5]))
    assert constant.result()["auroc"] == 0.5


def test_auroc_matches_the_pairwise_definition_on_random_scores():
    rng = np.random.default_rng(0)
    pred, gt, score = rng.random((3, 8, 8)), rng.random((3, 8, 8)) > 0.6, rng.random((3, 8, 8))
    meter = ErrorDetectionMeter(bins=100_000)  # bins finer than any gap between the scores
    meter.update(pred, gt, score)
    wrong = ((pred > 0.5) != gt).ravel()
    err, ok = score.ravel()[wrong], score.ravel()[~wrong]
    pairwise = ((err[:, None] > ok[None, :]).sum() + 0.5 * (err[:, None] == ok[None, :]).sum()) / (err.size * ok.size)
    assert meter.result()["auroc"] == pytest.approx(pairwise, abs=1e-9)


def test_threshold_margin_is_one_at_the_threshold_and_ranks_the_near_misses_first():
    np.testing.assert_allclose(threshold_margin(np.array([0.0, 0.35, 0.7, 0.85, 1.0]), 0.7),
                               [0.0, 0.5, 1.0, 11.0 / 14.0, 4.0 / 7.0], atol=1e-6)
    # cut at 0.7: the two pixels nearest the threshold are the wrong ones, so the margin finds them
    pred = _frame([0.95, 0.72, 0.66, 0.05])
    gt = _frame([1, 0, 1, 0]).astype(bool)
    meter = ErrorDetectionMeter(0.7)
    meter.update(pred, gt, threshold_margin(pred, 0.7))
    assert meter.result()["auroc"] == 1.0 and meter.result()["n_error"] == 2


@pytest.mark.parametrize("bins", [0, -3, 2.5, True])
def test_bins_must_be_a_positive_integer(bins):
    with pytest.raises(InputError, match="bins must be a positive integer"):
        ErrorDetectionMeter(bins=bins)
    with pytest.raises(InputError, match="bins must be a positive integer"):
        CalibrationMeter(bins=bins)


def test_auroc_is_nan_without_errors():
    meter = ErrorDetectionMeter()
    meter.update(_frame([0.9, 0.1]), _frame([1, 0]).astype(bool), _frame([0.3, 0.4]))
    assert np.isnan(meter.result()["auroc"])


def test_ece_is_zero_when_calibrated_and_the_gap_otherwise():
    calibrated = CalibrationMeter(bins=10)
    calibrated.update(_frame([0.25] * 4 + [0.95] * 20), _frame([1, 0, 0, 0] + [1] * 19 + [0]).astype(bool))
    assert calibrated.result()["ece"] == pytest.approx(0.0, abs=1e-12)
    over = CalibrationMeter(bins=10)
    over.update(_frame([0.95] * 4), _frame([1, 0, 0, 0]).astype(bool))  # says 0.95, right 25% of the time
    assert over.result() == {"ece": pytest.approx(0.70), "n": 4}


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="score must have the shape"):
        ErrorDetectionMeter().update(_frame([0.9]), _frame([1]).astype(bool), np.zeros((1, 1, 2)))
