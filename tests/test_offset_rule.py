"""The offset rule (TemporalConfig.offset_gain): where the sounding probability fell, the
uncertainty releases the gate and switches its doubtful pixels off; elsewhere the stage is the
trained one. References are built by hand from the stage's own parts, so a wrong sign of the
fall, a wrong gate or a missing term shows.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from streamavs.errors import ConfigError  # noqa: E402
from streamavs.model.temporal import TemporalConfig, TemporalStage  # noqa: E402

CHANNELS = 12


def _stage(gain: float | None, seed: int = 0) -> TemporalStage:
    """A 'trained' gated stage (correction and gate away from their starts) with the rule at `gain`."""
    torch.manual_seed(seed)
    stage = TemporalStage(TemporalConfig(in_channels=CHANNELS, window=3, dim=16, heads=4, offset_gain=gain))
    with torch.no_grad():
        stage.delta_head.weight.normal_(0, 0.5)
        stage.alpha_head.weight.normal_(0, 0.5)
        stage.alpha_head.bias.normal_(0, 1.0)
    return stage.eval()


def _same_weights(stage: TemporalStage, gain: float | None) -> TemporalStage:
    other = TemporalStage(TemporalConfig.from_dict({**stage.config.to_dict(), "offset_gain": gain}))
    other.load_state_dict(stage.state_dict())
    return other.eval()


def _clip(sounding: list[float], seed: int = 1):
    """Stage inputs over len(sounding) frames with the given sounding logits (one clip)."""
    gen = torch.Generator().manual_seed(seed)
    n = len(sounding)
    return (torch.randn(1, n, CHANNELS, 6, 7, generator=gen), 3 * torch.randn(1, n, 1, 6, 7, generator=gen),
            torch.tensor([sounding]))


def test_where_the_sound_is_steady_or_rising_the_rule_changes_nothing():
    stage = _stage(gain=4.0)
    plain = _same_weights(stage, None)
    inputs = _clip([-6.0, -6.0, -2.0, 3.0, 3.0, 5.0])  # silent, then an onset, then louder
    with torch.no_grad():
        a, b = stage.forward_clip(*inputs), plain.forward_clip(*inputs)
    assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(a.uncertainty, b.uncertainty)


def test_at_an_offset_the_gain_takes_gain_u_fall_off_the_logits():
    inputs = _clip([4.0, 4.0, 4.0, -1.0])  # the last frame's sounding probability fell
    fall = 1.0 / (1.0 + math.exp(-4.0)) - 1.0 / (1.0 + math.exp(1.0))  # sigmoid(past mean) - sigmoid(current)
    stage = _stage(gain=5.0)
    with torch.no_grad():
        ruled, released = stage.forward_clip(*inputs), _same_weights(stage, 0.0).forward_clip(*inputs)
    u = ruled.uncertainty[:, -1]
    assert u.min() > 0.05  # the test means something: the gate is open enough to matter
    expected = released.mask_logits[:, -1] - 5.0 * u * fall
    assert torch.allclose(ruled.mask_logits[:, -1], expected, atol=1e-5)
    assert torch.equal(ruled.mask_logits[:, :-1], released.mask_logits[:, :-1])  # no fall before the last frame


def test_a_full_offset_lets_the_past_in_as_the_knockout_does():
    """f -> 1: the gate u (1 - f) is 0, so with gain 0 the logits are the u = 0 knockout's."""
    stage = _stage(gain=0.0)
    knockout = TemporalStage(TemporalConfig.from_dict({**stage.config.to_dict(), "uncertainty": False,
                                                       "offset_gain": None}))
    knockout.load_state_dict(stage.fixed_gate_state(0.0))
    plain = _same_weights(stage, None)
    inputs = _clip([30.0, 30.0, 30.0, -30.0])
    with torch.no_grad():
        ruled, ko, trained = (m.eval().forward_clip(*inputs) for m in (stage, knockout, plain))
    assert torch.allclose(ruled.mask_logits[:, -1], ko.mask_logits[:, -1], atol=1e-5)
    assert (trained.mask_logits[:, -1] - ko.mask_logits[:, -1]).abs().max() > 1e-2  # the gate mattered there


def test_streaming_with_the_rule_equals_the_causal_batch_form():
    stage = _stage(gain=3.0)
    inputs = _clip([5.0, -4.0, 2.0, -3.0, -3.5, 6.0, 1.0])
    fused, logits, sounding = inputs
    with torch.no_grad():
        batch = stage.forward_clip(*inputs)
        cache = torch.zeros(1, *stage.config.cache_shape(6, 7))
        for i in range(fused.shape[1]):
            out, cache = stage.step(fused[:, i], logits[:, i], sounding[:, i], cache)
            assert (out.mask_logits - batch.mask_logits[:, i]).abs().max() <= 1e-5, f"frame {i}"


def test_only_u_zero_folds_with_the_rule():
    stage = _stage(gain=2.0)
    assert set(stage.fixed_gate_state(0.0)) == set(_stage(None).fixed_gate_state(0.0))
    with pytest.raises(ConfigError, match="only u = 0"):
        stage.fixed_gate_state(0.3)


@pytest.mark.parametrize("gain, match", [(-1.0, ">= 0"), (math.nan, ">= 0"), (math.inf, ">= 0"), (True, ">= 0")])
def test_bad_gains_are_refused(gain, match):
    with pytest.raises(ConfigError, match=match):
        TemporalConfig(in_channels=4, dim=8, heads=2, offset_gain=gain)


def test_the_rule_needs_the_uncertainty_path():
    with pytest.raises(ConfigError, match="uncertainty"):
        TemporalConfig(in_channels=4, dim=8, heads=2, uncertainty=False, offset_gain=1.0)


def test_the_writer_keeps_the_weights_and_sets_the_gain(tmp_path):
    from streamavs.bench.offset_rule import with_offset_rule
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter, load_streaming, save_streaming_checkpoint

    torch.manual_seed(0)
    seg = create_model("avs_lite", image_size=64, backbone_pretrained=False).eval()
    stage = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=3, dim=8, heads=2))
    save_streaming_checkpoint(tmp_path / "s.pt", StreamingSegmenter(seg, stage).eval(), {"provenance": "test"})
    with_offset_rule(tmp_path / "s.pt", tmp_path / "r.pt", 4.0)
    model, extra = load_streaming(tmp_path / "r.pt")
    assert model.temporal.config.offset_gain == 4.0 and extra["offset_rule"]["gain"] == 4.0
    for key, value in stage.state_dict().items():
        assert torch.equal(model.temporal.state_dict()[key], value), key
