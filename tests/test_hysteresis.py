"""Mask hysteresis (streamavs.engine.hysteresis) against a direct statement of the rule, and its manifest keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamavs.engine.hysteresis import MaskHysteresis, hysteresis_clip
from streamavs.engine.thresholds import Thresholds
from streamavs.errors import InputError


def reference(prob: np.ndarray, sounding: np.ndarray, threshold: float, band: float, reset: float) -> np.ndarray:
    """The rule in words, pixel by pixel: in -> stays in while p >= threshold - band; out -> enters
    when p >= threshold + band; first frame and frames where the sounding moved by more than
    `reset`: p >= threshold."""
    on = np.zeros(prob.shape, dtype=bool)
    for t in range(prob.shape[0]):
        for idx in np.ndindex(prob.shape[1:]):
            p = float(prob[(t, *idx)])
            if t == 0 or abs(float(sounding[t]) - float(sounding[t - 1])) > reset:
                on[(t, *idx)] = p >= threshold
            elif on[(t - 1, *idx)]:
                on[(t, *idx)] = p >= threshold - band
            else:
                on[(t, *idx)] = p >= threshold + band
    return on


def test_a_hovering_pixel_holds_and_a_clear_change_passes():
    prob = np.array([0.55, 0.45, 0.55, 0.45, 0.30, 0.58, 0.65], dtype=np.float32)[:, None, None]
    sounding = np.full(7, 0.8, dtype=np.float32)
    plain = hysteresis_clip(prob, sounding, 0.5, 0.0)[:, 0, 0] >= 0.5
    held = hysteresis_clip(prob, sounding, 0.5, 0.1)[:, 0, 0] >= 0.5
    assert plain.tolist() == [True, False, True, False, False, True, True]
    # holds through 0.45, leaves below 0.4, does not re-enter at 0.58 (< 0.6), enters at 0.65
    assert held.tolist() == [True, True, True, True, False, False, True]


def test_a_change_of_sounding_cuts_at_the_plain_threshold():
    prob = np.array([0.9, 0.45, 0.45], dtype=np.float32)[:, None, None]
    steady = hysteresis_clip(prob, np.array([0.9, 0.9, 0.9]), 0.5, 0.1, reset=0.2)[:, 0, 0] >= 0.5
    stopped = hysteresis_clip(prob, np.array([0.9, 0.3, 0.3]), 0.5, 0.1, reset=0.2)[:, 0, 0] >= 0.5
    assert steady.tolist() == [True, True, True]
    assert stopped.tolist() == [True, False, False]  # the sound stopped: the mask goes at once, then stays out


def test_band_zero_is_the_identity_and_inputs_are_not_changed():
    rng = np.random.default_rng(0)
    prob = rng.random((5, 8, 8), dtype=np.float32)
    before = prob.copy()
    np.testing.assert_array_equal(hysteresis_clip(prob, rng.random(5), 0.6, 0.0), prob)
    hysteresis_clip(prob, rng.random(5), 0.6, 0.2)
    np.testing.assert_array_equal(prob, before)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), threshold=st.sampled_from([0.3, 0.5, 0.6, 0.7]),
       band=st.sampled_from([0.05, 0.1, 0.2, 0.3]), reset=st.sampled_from([0.1, 0.2, 1.0]))
def test_the_published_probability_cut_at_the_threshold_is_the_rule(seed, threshold, band, reset):
    rng = np.random.default_rng(seed)
    prob = rng.random((8, 4, 4)).astype(np.float32)
    sounding = rng.random(8).astype(np.float32)
    out = hysteresis_clip(prob, sounding, threshold, band, reset)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    expected = reference(prob, sounding, threshold, band, reset)
    edge = np.minimum.reduce([abs(prob - threshold), abs(prob - threshold - band), abs(prob - threshold + band)])
    clear = edge > 1e-6  # float32 rounding decides exact ties either way
    np.testing.assert_array_equal((out >= threshold)[clear], expected[clear])


def test_a_sounding_that_is_not_a_number_or_a_new_frame_size_cuts_plainly():
    step = MaskHysteresis(0.5, 0.2)
    step(np.full((2, 2), 0.9, np.float32), 0.8)
    assert not (step(np.full((2, 2), 0.4, np.float32), float("nan")) >= 0.5).any()  # NaN: a change, plain cut
    assert not (step(np.full((2, 2), 0.45, np.float32), 0.8) >= 0.5).any()  # and after it: held out
    step(np.full((2, 2), 0.9, np.float32), 0.8)
    assert not (step(np.full((3, 3), 0.4, np.float32), 0.8) >= 0.5).any()  # another frame size: a new mask


def test_restart_forgets_the_stream():
    step = MaskHysteresis(0.5, 0.2)
    step(np.full((2, 2), 0.9, np.float32), 0.8)
    assert (step(np.full((2, 2), 0.4, np.float32), 0.8) >= 0.5).all()  # held
    step.restart()
    assert not (step(np.full((2, 2), 0.4, np.float32), 0.8) >= 0.5).any()  # a new stream: plain cut


@pytest.mark.parametrize("kwargs, key", [({"hysteresis": 0.5}, "thresholds.hysteresis"),
                                         ({"hysteresis": -0.1}, "thresholds.hysteresis"),
                                         ({"hysteresis": True}, "thresholds.hysteresis"),
                                         ({"hysteresis_reset": 0.0}, "thresholds.hysteresis_reset"),
                                         ({"hysteresis_reset": 1.5}, "thresholds.hysteresis_reset")])
def test_manifest_thresholds_refuse_bad_hysteresis(kwargs, key):
    with pytest.raises(InputError, match=key):
        Thresholds(**kwargs)


def test_manifest_thresholds_round_trip_and_default_to_no_hysteresis():
    limits = Thresholds(mask=0.6, hysteresis=0.2, hysteresis_reset=0.3)
    assert Thresholds.from_dict(limits.to_dict()) == limits
    old = Thresholds.from_dict({"mask": 0.6, "gate": 0.5})  # a manifest written before hysteresis
    assert old.hysteresis == 0.0 and old.mask == 0.6


def test_bad_shapes_are_refused():
    with pytest.raises(InputError, match=r"prob \(T, H, W\)"):
        hysteresis_clip(np.zeros((3, 4), np.float32), np.zeros(3), 0.5, 0.1)
    with pytest.raises(InputError, match="band"):
        MaskHysteresis(0.5, 0.6)
