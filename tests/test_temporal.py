"""The causal temporal stage: streaming with the cache equals the batch form; uncertainty bounds."""

from __future__ import annotations

import pytest
import torch

from streamavs.errors import ConfigError
from streamavs.model.temporal import TemporalConfig, TemporalStage, dirichlet_uncertainty


def _run_stream(stage: TemporalStage, fused: torch.Tensor):
    b, length, c, h, w = fused.shape
    cache = torch.zeros(b, *stage.config.cache_shape(h, w))
    outs = []
    for i in range(length):
        out, cache = stage.step(fused[:, i], cache)
        outs.append(out)
    return outs, cache


@pytest.mark.parametrize("uncertainty", [True, False])
@pytest.mark.parametrize("window", [1, 3, 5])
def test_streaming_equals_causal_batch(window, uncertainty):
    torch.manual_seed(0)
    stage = TemporalStage(TemporalConfig(in_channels=12, window=window, dim=16, heads=4, uncertainty=uncertainty)).eval()
    fused = torch.randn(2, 8, 12, 7, 9)  # (B, L, C, h, w): longer than the window
    with torch.no_grad():
        batch = stage.forward_clip(fused)
        stream, cache = _run_stream(stage, fused)
    for i, out in enumerate(stream):
        for name in ("mask_logits", "mask_prob", "uncertainty"):
            diff = (getattr(out, name) - getattr(batch, name)[:, i]).abs().max().item()
            assert diff <= 1e-5, f"frame {i} {name} differs by {diff}"
    assert cache.shape == (2, window - 1, 17, 7, 9)
    if window > 1:
        assert torch.all(cache[:, :, -1] == 1)  # after 8 frames every slot holds a real frame


def test_frames_never_attend_to_the_future():
    torch.manual_seed(1)
    stage = TemporalStage(TemporalConfig(in_channels=8, window=4, dim=8, heads=2)).eval()
    fused = torch.randn(1, 6, 8, 5, 5)
    changed = fused.clone()
    changed[:, 4:] = torch.randn_like(changed[:, 4:])  # alter the last two frames only
    with torch.no_grad():
        a, b = stage.forward_clip(fused), stage.forward_clip(changed)
    assert torch.allclose(a.mask_prob[:, :4], b.mask_prob[:, :4], atol=1e-6)
    assert not torch.allclose(a.mask_prob[:, 4:], b.mask_prob[:, 4:])


def test_first_frame_ignores_the_empty_cache_contents():
    """Invalid (zero) slots are masked: stream start behaves as a clip of one frame."""
    torch.manual_seed(2)
    stage = TemporalStage(TemporalConfig(in_channels=8, window=5, dim=8, heads=2)).eval()
    fused = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        out, _ = stage.step(fused, torch.zeros(1, 4, 9, 4, 4))
        one = TemporalStage.forward_clip(stage, fused.unsqueeze(1))
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


def test_reduced_probability_is_bounded():
    torch.manual_seed(3)
    stage = TemporalStage(TemporalConfig(in_channels=4, window=2, dim=8, heads=2))
    with torch.no_grad():
        for p in stage.parameters():
            p.mul_(50)  # extreme weights: the output must stay a probability
        out, _ = stage.step(torch.randn(1, 4, 6, 6) * 10, torch.zeros(1, 1, 9, 6, 6))
    assert out.mask_prob.min() >= 0 and out.mask_prob.max() <= 1
    assert out.uncertainty.min() > 0 and out.uncertainty.max() <= 1


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="divisible by heads"):
        TemporalConfig(in_channels=4, dim=10, heads=4)
    with pytest.raises(ConfigError, match="unknown temporal config keys"):
        TemporalConfig.from_dict({"in_channels": 4, "depth": 2})
