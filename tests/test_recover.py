"""Recovering a streaming checkpoint from an FP32 ONNX engine (streamavs.training.recover).

The engine is exported from a checkpoint whose BatchNorms, GroupNorm, similarity scale and
stage heads are all away from their initial values, so a tensor mapped to the wrong place (or
left at its default) changes the outputs; the recovered model must match the ORIGINAL model
(not only the engine) with and without its stage.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


def _perturbed_checkpoint(path):
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    torch.manual_seed(0)
    seg = create_model("avs_lite", image_size=64, backbone_pretrained=False)
    stage = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=3, dim=8, heads=2))
    model = StreamingSegmenter(seg, stage).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.3)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
        seg.similarity_head.log_scale.fill_(1.3)
        stage.delta_head.weight.normal_(0, 0.5)  # zero at init: let the stage change the output (its bias stays 0)
        stage.alpha_head.bias.normal_(0, 2.0)
    save_streaming_checkpoint(path, model, {})
    return model


def _outputs(model, inputs):
    outs, cache = [], model.initial_cache()
    with torch.inference_mode():
        for frame, mel in inputs:
            prob, unc, snd, cache = model(torch.from_numpy(frame)[None], torch.from_numpy(mel)[None, None], cache)
            outs.append(np.concatenate([prob.numpy().ravel(), unc.numpy().ravel(), snd.numpy().ravel()]))
    return np.stack(outs)


@pytest.mark.slow  # an export and a recovery with parity: ~30 s
def test_recovered_checkpoint_equals_the_original_model_with_and_without_its_stage(tmp_path, one_torch_thread):
    from streamavs.model.streaming import StreamingSegmenter, load_streaming
    from streamavs.training.export import export_engine, parity_inputs
    from streamavs.training.recover import recover_checkpoint

    original = _perturbed_checkpoint(tmp_path / "orig.pt")
    result = export_engine(tmp_path / "orig.pt", "onnx", tmp_path / "engines", name="perturbed", n_check=3, threads=1)
    out, diffs, not_in_graph = recover_checkpoint(result.manifest_path, tmp_path / "recovered.pt")
    assert max(diffs.values()) < 1e-3
    assert not_in_graph == ["temporal.delta_head.bias"]  # zero, so the exporter folded its Add away
    recovered, extra = load_streaming(out)
    assert "recovered from engine perturbed" in extra["provenance"]
    assert extra["recovered_from"]["parity"]["max_abs_diff"] == diffs
    inputs, _ = parity_inputs(64, 6)
    np.testing.assert_allclose(_outputs(recovered, inputs), _outputs(original, inputs), atol=1e-4)
    frame_only, _ = load_streaming(out, use_temporal=False)  # the frame-only arm of the temporal ablation
    original_frame_only = StreamingSegmenter(original.segmenter, None).eval()
    np.testing.assert_allclose(_outputs(frame_only, inputs), _outputs(original_frame_only, inputs), atol=1e-4)


def test_recovery_writes_nothing_when_parity_fails_and_refuses_other_engines(tmp_path, tiny_engine, capsys):
    from streamavs.errors import EngineError, InputError
    from streamavs.training.recover import main, recover_checkpoint

    with pytest.raises(EngineError, match="tolerance 0.0"):  # the recovered model differs by ~1e-6: above 0
        recover_checkpoint(tiny_engine, tmp_path / "none.pt", tolerance=0.0)
    assert not (tmp_path / "none.pt").exists()
    with pytest.raises(InputError, match="finite number >= 0"):  # NaN would compare False and pass any parity
        recover_checkpoint(tiny_engine, tmp_path / "none.pt", tolerance=float("nan"))
    manifest = tmp_path / "int8.json"  # the same engine said to be INT8: quantised weights cannot be recovered
    text = tiny_engine.read_text().replace('"precision": "fp32"', '"precision": "int8"')
    manifest.write_text(text)
    (tmp_path / "tiny.onnx").write_bytes((tiny_engine.parent / "tiny.onnx").read_bytes())
    with pytest.raises(InputError, match="FP32 ONNX engine"):
        recover_checkpoint(manifest, tmp_path / "none.pt")
    assert main([str(manifest), "--out", str(tmp_path / "none.pt")]) == 2
    assert "pass the FP32 manifest" in capsys.readouterr().err and not (tmp_path / "none.pt").exists()
