"""Starting a temporal stage from a trained one ([temporal] init_stage, streamavs.training.stage_init).

A gated stage started from an ungated one must produce exactly that stage's mask logits (its
gate open at a constant u0, the refinement compensating), on a stage whose delta head is away
from zero, so a wrongly scaled input would change the output.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _segmenter(seed: int):
    from streamavs.model.registry import create_model

    torch.manual_seed(seed)
    return create_model("avs_lite", image_size=64, backbone_pretrained=False).eval()


def _trained_ablation(path, seg):
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    stage = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=3, dim=8, heads=2, uncertainty=False))
    with torch.no_grad():
        stage.delta_head.weight.normal_(0, 0.5)  # zero at init: a trained stage changes the frame's logits
        stage.delta_head.bias.fill_(0.3)
    save_streaming_checkpoint(path, StreamingSegmenter(seg, stage).eval(), {})
    return stage.eval()


def _clip_inputs(channels: int):
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(2, 4, channels, 8, 8, generator=gen), torch.randn(2, 4, 1, 8, 8, generator=gen),
            torch.randn(2, 4, generator=gen))


def test_a_gated_stage_started_from_its_ablation_is_that_stage(tmp_path):
    from streamavs.model.temporal import TemporalConfig, TemporalStage
    from streamavs.training.stage_init import open_gate_uncertainty, warm_start

    seg = _segmenter(0)
    ablation = _trained_ablation(tmp_path / "att.pt", seg)
    gated = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=3, dim=8, heads=2)).eval()
    record = warm_start(gated, tmp_path / "att.pt", seg)
    assert record["open_gate"]["u0"] == pytest.approx(open_gate_uncertainty())
    inputs = _clip_inputs(seg.fused_channels)
    with torch.no_grad():
        want, got = ablation.forward_clip(*inputs), gated.forward_clip(*inputs)
    assert (want.mask_logits - inputs[1]).abs().max() > 0.1  # the ablation does change the frame's logits
    torch.testing.assert_close(got.mask_logits, want.mask_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.uncertainty, torch.full_like(got.uncertainty, open_gate_uncertainty()))


def test_a_stage_from_another_segmenter_or_shape_is_refused(tmp_path):
    from streamavs.errors import ConfigError
    from streamavs.model.temporal import TemporalConfig, TemporalStage
    from streamavs.training.stage_init import warm_start

    seg = _segmenter(0)
    _trained_ablation(tmp_path / "att.pt", seg)
    gated = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=3, dim=8, heads=2))
    with pytest.raises(ConfigError, match="another segmenter"):
        warm_start(gated, tmp_path / "att.pt", _segmenter(1))
    wider = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=5, dim=8, heads=2))
    with pytest.raises(ConfigError, match=r"\(in_channels, window, dim, heads\)"):
        warm_start(wider, tmp_path / "att.pt", seg)
