"""The gate knocked out (streamavs.bench.knockout, TemporalStage.fixed_gate_state).

The folded ungated stage must give the gated stage's mask logits with u held at the fixed
value: the reference is the gated stage itself with its Dirichlet head made constant (zero
weights, a bias giving that u), so a wrong scale or a wrong slice of the refinement shows.
"""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")


def _gated_checkpoint(path):
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    torch.manual_seed(0)
    seg = create_model("avs_lite", image_size=64, backbone_pretrained=False).eval()
    stage = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=3, dim=8, heads=2))
    with torch.no_grad():  # a trained stage: its correction and its gate are away from their starts
        stage.delta_head.weight.normal_(0, 0.5)
        stage.alpha_head.weight.normal_(0, 0.5)
    save_streaming_checkpoint(path, StreamingSegmenter(seg, stage).eval(), {"provenance": "test"})
    return seg, stage.eval()


def _inputs(channels: int):
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(2, 4, channels, 8, 8, generator=gen), torch.randn(2, 4, 1, 8, 8, generator=gen),
            torch.randn(2, 4, generator=gen))


def _with_constant_gate(stage, u: float):
    """The gated stage with its Dirichlet head constant: alpha = 1 + e for both classes, u = 3 / (3 + 2e)."""
    evidence = 3.0 * (1.0 - u) / (2.0 * u)
    with torch.no_grad():
        stage.alpha_head.weight.zero_()
        stage.alpha_head.bias.fill_(math.log(math.expm1(evidence)) if evidence < 30 else evidence)
    return stage


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """(path, segmenter, gated stage) of one gated checkpoint, shared by the tests (building it costs seconds)."""
    path = tmp_path_factory.mktemp("knockout") / "full.pt"
    seg, gated = _gated_checkpoint(path)
    return path, seg, gated


@pytest.mark.parametrize("u", [1e-7, 0.3])
def test_the_knocked_out_stage_is_the_gated_one_with_u_fixed(full, tmp_path, u):
    from streamavs.bench.knockout import knock_out_gate
    from streamavs.engine.manifest import file_sha256
    from streamavs.model.streaming import load_streaming

    path, seg, gated = full
    gated = copy.deepcopy(gated)  # _with_constant_gate edits it
    knock_out_gate(path, tmp_path / "ko.pt", u, recorded="full.pt")
    model, extra = load_streaming(tmp_path / "ko.pt")
    assert not model.temporal.config.uncertainty and model.temporal.alpha_head is None
    assert extra["knockout"]["u"] == u and extra["knockout"]["stage"] == "full.pt" and extra["provenance"] == "test"
    assert extra["knockout"]["stage_sha256"] == file_sha256(path)
    inputs = _inputs(seg.fused_channels)
    with torch.no_grad():
        before = gated.forward_clip(*inputs)
        want = _with_constant_gate(gated, u).forward_clip(*inputs)
        got = model.temporal.forward_clip(*inputs)
    torch.testing.assert_close(want.uncertainty, torch.full_like(want.uncertainty, u), rtol=1e-4, atol=1e-6)
    assert (before.mask_logits - want.mask_logits).abs().max() > 1e-3  # the trained gate did vary: knocking it out shows
    torch.testing.assert_close(got.mask_logits, want.mask_logits, atol=1e-5, rtol=1e-5)
    for key in model.segmenter.state_dict():  # the segmenter is carried unchanged
        assert torch.equal(model.segmenter.state_dict()[key], seg.state_dict()[key])


def test_what_cannot_be_knocked_out_is_refused_with_the_fix(full, tmp_path):
    from streamavs.errors import ConfigError, InputError
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.bench.knockout import knock_out_gate, main

    path, seg, _ = full
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(InputError, match=r"--u must be a number in \[0, 1\]"):
            knock_out_gate(path, tmp_path / "ko.pt", bad)
    with pytest.raises(InputError, match="no such file"):
        knock_out_gate(tmp_path / "missing.pt", tmp_path / "ko.pt", 0.0)
    save_streaming_checkpoint(tmp_path / "seg.pt", StreamingSegmenter(seg, None), {})
    with pytest.raises(ConfigError, match="holds no temporal stage"):
        knock_out_gate(tmp_path / "seg.pt", tmp_path / "ko.pt", 0.0)
    knock_out_gate(path, tmp_path / "ko.pt", 0.0)
    with pytest.raises(ConfigError, match="an ungated stage"):
        knock_out_gate(tmp_path / "ko.pt", tmp_path / "ko2.pt", 0.0)
    assert not (tmp_path / "ko2.pt").exists()
    with pytest.raises(ConfigError, match="an ungated stage"):
        main([str(tmp_path / "ko.pt"), "--out", str(tmp_path / "ko2.pt")])
    with pytest.raises(InputError, match="needs --data"):
        main([str(path), "--u", "mean", "--out", str(tmp_path / "ko2.pt")])


def test_the_mean_gate_is_the_average_u_of_streamed_validation_clips(full, tmp_path):
    from streamavs.bench.knockout import mean_uncertainty
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint

    path, seg, gated = full
    gated = copy.deepcopy(gated)
    assert 0.0 < mean_uncertainty(path, "synthetic", clips=1) < 1.0  # at the model's 64 x 64
    save_streaming_checkpoint(tmp_path / "flat.pt", StreamingSegmenter(seg, _with_constant_gate(gated, 0.4)), {})
    assert mean_uncertainty(tmp_path / "flat.pt", "synthetic", clips=2, image_size=64) == pytest.approx(0.4, rel=1e-5)
