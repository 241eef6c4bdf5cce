"""The causal temporal stage: streaming with the cache equals the batch form; uncertainty bounds."""

from __future__ import annotations

import pytest
import torch

from streamavs.errors import ConfigError
from streamavs.model.temporal import TemporalConfig, TemporalStage, dirichlet_uncertainty


def _inputs(b: int, length: int, c: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random stage inputs: fused (B, L, C, h, w), frame logits (B, L, 1, h, w), sounding logits (B, L)."""
    return torch.randn(b, length, c, h, w), 3 * torch.randn(b, length, 1, h, w), 3 * torch.randn(b, length)


def _randomise_delta(stage: TemporalStage) -> None:
    """The delta head starts at zero (identity); give it weights so the stage does something."""
    with torch.no_grad():
        stage.delta_head.weight.normal_(0, 0.5)
        stage.delta_head.bias.normal_(0, 0.5)


def _run_stream(stage: TemporalStage, inputs):
    fused, logits, sounding = inputs
    b, length, c, h, w = fused.shape
    cache = torch.zeros(b, *stage.config.cache_shape(h, w))
    outs = []
    for i in range(length):
        out, cache = stage.step(fused[:, i], logits[:, i], sounding[:, i], cache)
        outs.append(out)
    return outs, cache


@pytest.mark.parametrize("uncertainty", [True, False])
@pytest.mark.parametrize("window", [1, 3, 5])
def test_streaming_equals_causal_batch(window, uncertainty):
    torch.manual_seed(0)
    stage = TemporalStage(TemporalConfig(in_channels=12, window=window, dim=16, heads=4, uncertainty=uncertainty)).eval()
    _randomise_delta(stage)
    inputs = _inputs(2, 8, 12, 7, 9)  # longer than the window
    with torch.no_grad():
        batch = stage.forward_clip(*inputs)
        stream, cache = _run_stream(stage, inputs)
    for i, out in enumerate(stream):
        for name in ("mask_logits", "mask_prob", "uncertainty"):
            diff = (getattr(out, name) - getattr(batch, name)[:, i]).abs().max().item()
            assert diff <= 1e-5, f"frame {i} {name} differs by {diff}"
    assert cache.shape == (2, window - 1, 16 + 3, 7, 9)
    if window > 1:
        assert torch.all(cache[:, :, -1] == 1)  # after 8 frames every slot holds a real frame


def test_frames_never_attend_to_the_future():
    torch.manual_seed(1)
    stage = TemporalStage(TemporalConfig(in_channels=8, window=4, dim=8, heads=2)).eval()
    _randomise_delta(stage)
    inputs = _inputs(1, 6, 8, 5, 5)
    changed = tuple(x.clone() for x in inputs)
    for x in changed:
        x[:, 4:] = torch.randn_like(x[:, 4:])  # alter the last two frames only
    with torch.no_grad():
        a, b = stage.forward_clip(*inputs), stage.forward_clip(*changed)
    assert torch.allclose(a.mask_prob[:, :4], b.mask_prob[:, :4], atol=1e-6)
    assert not torch.allclose(a.mask_prob[:, 4:], b.mask_prob[:, 4:])


def test_first_frame_ignores_the_empty_cache_contents():
    """Invalid (zero) slots are masked: stream start behaves as a clip of one frame."""
    torch.manual_seed(2)
    stage = TemporalStage(TemporalConfig(in_channels=8, window=5, dim=8, heads=2)).eval()
    _randomise_delta(stage)
    fused, logits, sounding = _inputs(1, 1, 8, 4, 4)
    with torch.no_grad():
        out, _ = stage.step(fused[:, 0], logits[:, 0], sounding[:, 0], torch.zeros(1, 4, 8 + 3, 4, 4))
        one = stage.forward_clip(fused, logits, sounding)
    assert torch.allclose(out.mask_prob, one.mask_prob[:, 0], atol=1e-6)


def test_dirichlet_uncertainty_is_normalised_eq10():
    no_evidence = torch.ones(1, 2, 1, 1)
    assert dirichlet_uncertainty(no_evidence).item() == pytest.approx(1.0)
    alpha = torch.tensor([3.0, 7.0]).reshape(1, 2, 1, 1)
    s = 10.0
    delta = 3.0 * (s - 3.0) / (s * s * (s + 1.0))  # eq. 10, class 0 (equal for class 1 when C=2)
    assert dirichlet_uncertainty(alpha).item() == pytest.approx(12 * delta)
    confident = torch.tensor([1.0, 1000.0]).reshape(1, 2, 1, 1)
    assert dirichlet_uncertainty(confident).item() < 1e-2


def test_outputs_are_bounded_and_the_uncertainty_gates_the_past():
    torch.manual_seed(3)
    stage = TemporalStage(TemporalConfig(in_channels=4, window=3, dim=8, heads=2)).eval()
    _randomise_delta(stage)
    fused, logits, sounding = _inputs(1, 3, 4, 6, 6)
    with torch.no_grad():
        for p in stage.parameters():
            p.mul_(50)  # extreme weights: the output must stay a probability
        outs, cache = _run_stream(stage, (fused * 10, logits, sounding))
    out = outs[-1]
    assert out.mask_prob.min() >= 0 and out.mask_prob.max() <= 1
    assert out.uncertainty.min() > 0 and out.uncertainty.max() <= 1

    def last_step(cache):
        with torch.no_grad():
            return stage.step(fused[:, -1], logits[:, -1], sounding[:, -1], cache)[0].mask_logits

    other_past = cache.clone()
    other_past[:, :, :8] = torch.randn_like(other_past[:, :, :8]) * 10  # other projected features in the past
    assert (last_step(cache) - last_step(other_past)).abs().max() > 1e-3  # the past matters ...
    with torch.no_grad():  # ... until there is no evidence anywhere (u = 1): then the past is shut out
        stage.alpha_head.weight.zero_()
        stage.alpha_head.bias.fill_(-30.0)
    assert torch.equal(last_step(cache), last_step(other_past))


@pytest.mark.parametrize("uncertainty", [True, False])
def test_an_untrained_stage_is_the_frame_only_model(uncertainty):
    """The delta head starts at zero: step 0 of training is exactly frame-only, to the bit."""
    torch.manual_seed(4)
    stage = TemporalStage(TemporalConfig(in_channels=6, window=3, dim=8, heads=2, uncertainty=uncertainty)).eval()
    inputs = _inputs(2, 5, 6, 4, 4)
    with torch.no_grad():
        batch = stage.forward_clip(*inputs)
        stream, _ = _run_stream(stage, inputs)
    assert torch.equal(batch.mask_logits, inputs[1])
    for i, out in enumerate(stream):
        assert torch.equal(out.mask_logits, inputs[1][:, i])


def test_first_stage_checkpoints_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="retrain the stage"):
        TemporalConfig.from_dict({"in_channels": 4, "window": 5, "dim": 32, "heads": 4, "uncertainty": True})
    with pytest.raises(ConfigError, match="retrain the stage"):  # version 2 gated the whole correction
        TemporalConfig.from_dict({"in_channels": 4, "uncertainty": True, "version": 2})
    ungated = TemporalConfig.from_dict({"in_channels": 4, "uncertainty": False, "version": 2})
    assert ungated.version == 3  # without the uncertainty, version 2 is the same network


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="divisible by heads"):
        TemporalConfig(in_channels=4, dim=10, heads=4)
    with pytest.raises(ConfigError, match="unknown temporal config keys"):
        TemporalConfig.from_dict({"in_channels": 4, "depth": 2})


def _audio_stage(seed: int = 0) -> TemporalStage:
    from streamavs.model.temporal import AUDIO_CODE  # noqa: F401 (the cache layout below counts on it)

    torch.manual_seed(seed)
    stage = TemporalStage(TemporalConfig(in_channels=12, window=4, dim=16, heads=4, audio_dim=10)).eval()
    _randomise_delta(stage)
    return stage


def test_the_audio_change_stage_streams_as_its_batch_form_and_caches_the_code():
    from streamavs.model.temporal import AUDIO_CODE

    stage = _audio_stage()
    fused, logits, sounding = _inputs(2, 7, 12, 5, 6)
    audio = torch.randn(2, 7, 10)
    with torch.no_grad():
        batch = stage.forward_clip(fused, logits, sounding, audio)
        cache = torch.zeros(2, *stage.config.cache_shape(5, 6))
        assert cache.shape == (2, 3, 16 + 3 + AUDIO_CODE, 5, 6)
        for i in range(7):
            out, cache = stage.step(fused[:, i], logits[:, i], sounding[:, i], cache, audio[:, i])
            assert (out.mask_logits - batch.mask_logits[:, i]).abs().max() <= 1e-5, f"frame {i}"
    code = cache[:, -1, 16 + 2:16 + 2 + AUDIO_CODE]  # the newest slot's code: unit length at every pixel
    assert torch.allclose(code.norm(dim=1), torch.ones(2, 5, 6), atol=1e-5)
    with pytest.raises(ConfigError, match="audio embedding"):
        stage.forward_clip(fused, logits, sounding)


def test_the_audio_change_is_zero_when_the_sound_stays_and_read_when_it_moves():
    """The refinement and the evidence read the change (1 - cosine of the current code and the past's
    mean) as their last input channel: zeroing their weights on it changes nothing while the audio
    embedding stays the same, and changes the mask once it moves."""
    stage = _audio_stage()
    blind = _audio_stage()
    with torch.no_grad():
        blind.refine[0].weight[:, -1] = 0.0
        blind.evidence[0].weight[:, -1] = 0.0
    fused, logits, sounding = _inputs(1, 6, 12, 5, 6)
    steady = torch.randn(1, 1, 10).expand(1, 6, 10).clone()
    moved = steady.clone()
    moved[:, 4:] = torch.randn(1, 2, 10)
    with torch.no_grad():
        a, b = stage.forward_clip(fused, logits, sounding, steady), blind.forward_clip(fused, logits, sounding, steady)
        assert (a.mask_logits - b.mask_logits).abs().max() <= 1e-5
        c, d = stage.forward_clip(fused, logits, sounding, moved), blind.forward_clip(fused, logits, sounding, moved)
    assert torch.allclose(c.mask_logits[:, :4], a.mask_logits[:, :4], atol=1e-6)  # causal: the past is unchanged
    assert (c.mask_logits[:, 4] - d.mask_logits[:, 4]).abs().max() > 1e-3
