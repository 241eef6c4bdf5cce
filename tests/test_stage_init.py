"""Starting a temporal stage from a trained one ([temporal] init_stage, streamavs.training.stage_init).

A gated stage started from an ungated one must produce that stage's mask logits (to float
rounding; its gate open at a constant u0, the refinement compensating), on a stage whose delta head is away
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


def test_a_gated_stage_started_from_its_ablation_gives_its_mask_logits(tmp_path):
    from streamavs.model.temporal import TemporalConfig, TemporalStage
    from streamavs.training.stage_init import warm_start

    seg = _segmenter(0)
    ablation = _trained_ablation(tmp_path / "att.pt", seg)
    gated = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=3, dim=8, heads=2)).eval()
    record = warm_start(gated, tmp_path / "att.pt", seg, recorded="att/temporal.pt")
    assert record["init_stage"] == "att/temporal.pt"
    u0 = record["open_gate"]["u0"]
    assert u0 == pytest.approx(3.0 / 13.0)  # evidence 5 per class: alpha = (6, 6), 12 * 36 / (144 * 13)
    inputs = _clip_inputs(seg.fused_channels)
    with torch.no_grad():
        want, got = ablation.forward_clip(*inputs), gated.forward_clip(*inputs)
    assert (want.mask_logits - inputs[1]).abs().max() > 0.1  # the ablation does change the frame's logits
    torch.testing.assert_close(got.mask_logits, want.mask_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.uncertainty, torch.full_like(got.uncertainty, u0))


def test_a_stage_that_cannot_start_this_one_is_refused_with_the_fix(tmp_path):
    from streamavs.errors import ConfigError
    from streamavs.model.checkpoint import save_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage
    from streamavs.training.stage_init import warm_start

    seg = _segmenter(0)
    _trained_ablation(tmp_path / "att.pt", seg)
    config = lambda **kw: TemporalConfig(**{"in_channels": seg.fused_channels, "window": 3, "dim": 8, "heads": 2, **kw})  # noqa: E731
    gated = TemporalStage(config())
    with pytest.raises(ConfigError, match="set \\[model\\] init_checkpoint"):
        warm_start(gated, tmp_path / "att.pt", _segmenter(1), recorded="att.pt")
    with pytest.raises(ConfigError, match=r"set \[temporal\] window = 3 \(not 5\)"):
        warm_start(TemporalStage(config(window=5)), tmp_path / "att.pt", seg, recorded="att.pt")
    with pytest.raises(ConfigError, match="no such file"):
        warm_start(gated, tmp_path / "missing.pt", seg, recorded="missing.pt")
    save_checkpoint(tmp_path / "seg.pt", seg, {})
    with pytest.raises(ConfigError, match="holds no temporal stage"):
        warm_start(gated, tmp_path / "seg.pt", seg, recorded="seg.pt")
    warm_start(gated, tmp_path / "att.pt", seg, recorded="att.pt")
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint

    save_streaming_checkpoint(tmp_path / "full.pt", StreamingSegmenter(seg, gated), {})
    with pytest.raises(ConfigError, match="set \\[temporal\\] uncertainty = true"):
        warm_start(TemporalStage(config(uncertainty=False)), tmp_path / "full.pt", seg, recorded="full.pt")


def test_an_empty_init_stage_is_refused():
    from streamavs.errors import ConfigError
    from streamavs.training.config import TemporalSection

    with pytest.raises(ConfigError, match="init_stage is empty"):
        TemporalSection(init_stage=" ")
