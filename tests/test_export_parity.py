"""Export to ONNX and verify it: ONNX Runtime vs PyTorch eager over a frame sequence, cache carried.

Random-weight checkpoints (backbone_pretrained=False) keep this fast; the parity question does
not depend on the weights being trained.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from streamavs.engine import load_engine, read_manifest  # noqa: E402
from streamavs.engine.manifest import file_sha256  # noqa: E402

TOL = 1e-3


def _checkpoint(path: Path, name: str, size: int, window: int | None, dim: int = 16, audio_change: bool = False,
                **overrides) -> Path:
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    torch.manual_seed(0)
    seg = create_model(name, image_size=size, **overrides)
    temporal = None
    if window is not None:
        temporal = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=window, dim=dim, heads=4,
                                                audio_dim=seg.config.audio_dim if audio_change else 0))
        with torch.no_grad():  # random init leaves alpha ~ softplus(0) + 1: push it around so uncertainty varies
            temporal.alpha_head.bias.normal_(0, 2.0)
            temporal.delta_head.weight.normal_(0, 0.5)  # zero at init (the identity): let history change the output
    model = StreamingSegmenter(seg, temporal).eval()
    metrics = {"positive": {"miou": 0.5, "fscore": 0.6}, "global": {"g_miou": 0.4}}
    save_streaming_checkpoint(path, model, {"metrics": metrics})
    return path


@pytest.fixture(scope="module")
def lite64(tmp_path_factory):
    """avs_lite + temporal stage (T=3) at 64x64, exported to ONNX with a 20-frame parity check."""
    from streamavs.training.export import export_engine

    root = tmp_path_factory.mktemp("lite64")
    ckpt = _checkpoint(root / "lite64.pt", "avs_lite", 64, window=3, backbone_pretrained=False)
    result = export_engine(ckpt, "onnx", root / "engines", name="lite64", n_check=20, threads=1)
    return ckpt, result


@pytest.mark.slow  # moved from the default step (2026-12-01, seventh session) to keep it under 5 minutes
def test_export_writes_engine_with_parity_recorded(lite64):
    ckpt, result = lite64
    out_dir = result.model_path.parent
    assert sorted(p.name for p in out_dir.iterdir()) == ["lite64.json", "lite64.onnx"]  # no temp leftovers
    m = read_manifest(result.manifest_path)
    assert m == result.manifest
    assert m.backend == "onnx" and m.precision == "fp32" and m.sha256 == file_sha256(result.model_path)
    assert m.export["exporter"] in ("dynamo", "torchscript") and m.export["opset"] >= 17
    assert m.versions["opset"] == m.export["opset"] and m.versions["onnxruntime"]
    parity = m.export["parity"]
    assert parity["passed"] and parity["tolerance"] == TOL and "20 consecutive frames" in parity["inputs"]
    assert all(0 <= v <= TOL for v in parity["max_abs_diff"].values())
    assert m.temporal is not None and m.temporal.window == 3 and m.cache_shape == (1, 2, 16 + 3, 16, 16)  # dim + frame logit, sounding logit, valid
    assert m.frame.size == (64, 64) and m.model["name"] == "avs_lite"
    assert m.training["metrics"]["positive"]["miou"] == 0.5
    assert m.export["checkpoint_sha256"] == file_sha256(ckpt)


@pytest.mark.slow  # moved from the default step (2026-12-01, seventh session) to keep it under 5 minutes
def test_onnxruntime_matches_eager_over_a_sequence(lite64):
    """Independent of the export's own check: runtime loader vs the eager torch engine, 20 frames."""
    from streamavs.engine.torch import TorchEngine
    from streamavs.training.export import check_parity, parity_inputs

    ckpt, result = lite64
    inputs, source = parity_inputs(64, 20, seed=7)
    assert "synthetic" in source
    with load_engine(result.manifest_path, threads=1) as ort_engine, TorchEngine.from_checkpoint(ckpt, threads=1) as eager:
        assert ort_engine.backend == "onnxruntime" and eager.backend == "torch"
        diffs = check_parity(eager, ort_engine, inputs)
        # the cache really moves: after 20 frames every slot is valid and outputs depend on history
        cache = ort_engine.initial_cache()
        probs = []
        for frame, mel in inputs[:4]:
            out = ort_engine.run(frame, mel, cache)
            cache = out.cache
            probs.append(out.mask_prob)
        again = ort_engine.run(*inputs[3], ort_engine.initial_cache())  # same frame, empty history
    for key in ("mask_prob", "uncertainty", "sounding"):
        assert diffs[key] <= TOL, f"{key} differs by {diffs[key]}"
    assert diffs["cache"] <= 1e-3
    assert np.all(cache[0, :, -1] == 1.0)  # valid flags of both cached slots
    assert np.abs(again.mask_prob - probs[3]).max() > 1e-6  # history changes the output
    assert 0.0 <= probs[0].min() and probs[0].max() <= 1.0 and 0.0 <= out.sounding <= 1.0
    assert out.uncertainty.std() > 0


@pytest.mark.slow  # moved from the default step (2026-12-01) to keep it under 5 minutes
def test_export_refuses_an_impossible_tolerance_and_writes_nothing(lite64, tmp_path, capsys):
    """Through the CLI: tolerance 0 cannot hold for two different runtimes; nothing lands in --out."""
    from streamavs.cli import main

    ckpt, _ = lite64
    out = tmp_path / "refused"
    code = main(["export", str(ckpt), "--backend", "onnx", "--out", str(out), "--tolerance", "0", "--n-check", "3",
                 "--threads", "1"])
    err = capsys.readouterr().err
    assert code != 0
    assert "refused: outputs differ from PyTorch by more than the tolerance 0 over 3 frames" in err
    assert "nothing was written" in err
    assert list(out.iterdir()) == []


@pytest.mark.slow  # moved from the default step (2026-12-01, seventh session) to keep it under 5 minutes
def test_check_parity_catches_a_broken_engine(lite64, tmp_path):
    """An engine whose weights differ from the reference (a wrong export) shows large diffs."""
    from streamavs.engine.torch import TorchEngine
    from streamavs.training.export import check_parity, parity_inputs

    _, result = lite64
    other = _checkpoint(tmp_path / "other.pt", "avs_lite", 64, window=3, backbone_pretrained=False)
    state = torch.load(other, weights_only=True)
    with torch.no_grad():
        for k, v in state["temporal_state_dict"].items():
            if v.is_floating_point():
                v.add_(0.5)
    torch.save(state, other)
    inputs, _ = parity_inputs(64, 3)
    with load_engine(result.manifest_path, threads=1) as engine, TorchEngine.from_checkpoint(other, threads=1) as ref:
        diffs = check_parity(ref, engine, inputs)
    assert diffs["mask_prob"] > 1e-2 and diffs["cache"] > 1e-2


@pytest.mark.slow  # ~11 s (an export): the default step ran 4:37-4:43 on a quiet machine
def test_export_checks_eval_first_and_names_run_checkpoints_after_their_run(lite64, tmp_path, capsys):
    """A typo in --eval was reported (as --data) only after the export had written the engine; every
    temporal run's checkpoint is temporal.pt, so two runs exported into one folder replaced each other."""
    import shutil

    from streamavs.cli import main
    from streamavs.engine.manifest import default_engine_name

    ckpt, _ = lite64
    out = tmp_path / "engines"
    assert main(["export", str(ckpt), "--out", str(out), "--n-check", "2", "--threads", "1",
                 "--eval", "synthtic-single"]) == 2
    assert "unknown --eval 'synthtic-single'; expected one of" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())
    run = tmp_path / "runs" / "my_stage"
    run.mkdir(parents=True)
    shutil.copy(ckpt, run / "temporal.pt")
    assert default_engine_name(run / "temporal.pt") == "my_stage" and default_engine_name(ckpt) == "lite64"
    assert main(["export", str(run / "temporal.pt"), "--out", str(out), "--n-check", "2", "--threads", "1"]) == 0
    assert (out / "my_stage.json").is_file() and (out / "my_stage.onnx").is_file()


@pytest.mark.slow  # moved from the default step (2026-12-01, seventh session) to keep it under 5 minutes
def test_cli_export_rejects_fp16_for_onnx(lite64, tmp_path, capsys):
    from streamavs.cli import main

    ckpt, _ = lite64
    assert main(["export", str(ckpt), "--fp16", "--out", str(tmp_path)]) != 0
    assert "--fp16 applies to --backend tensorrt; ONNX engines are exported in FP32" in capsys.readouterr().err


@pytest.mark.slow  # moved from the default step (2026-12-01) to keep it under 5 minutes
def test_avs_lite_224_with_temporal_exports_within_tolerance(tmp_path):
    """The shipped configuration: avs_lite at 224x224 with the default temporal stage (T=5, d=32)."""
    from streamavs.training.export import export_engine

    t0 = time.perf_counter()
    ckpt = _checkpoint(tmp_path / "lite224.pt", "avs_lite", 224, window=5, dim=32, backbone_pretrained=False)
    result = export_engine(ckpt, "onnx", tmp_path / "engines", n_check=20, threads=1)
    diffs = result.max_abs_diff
    assert all(diffs[k] <= TOL for k in ("mask_prob", "uncertainty", "sounding")), diffs
    assert result.manifest.cache_shape == (1, 4, 32 + 3, 56, 56)
    print(f"avs_lite 224 export + 20-frame parity: {time.perf_counter() - t0:.1f} s, diffs {diffs}")


@pytest.mark.slow  # an export
def test_a_stage_with_the_audio_change_exports_within_tolerance(tmp_path):
    """[temporal] audio_change: the audio code in the cache and its cosine change run in ONNX Runtime as
    in torch over 20 frames whose sound changes (the parity clips), the cache carried."""
    from streamavs.model.temporal import AUDIO_CODE
    from streamavs.training.export import export_engine

    ckpt = _checkpoint(tmp_path / "ac.pt", "avs_lite", 64, window=3, audio_change=True, backbone_pretrained=False)
    result = export_engine(ckpt, "onnx", tmp_path / "engines", n_check=20, threads=1)
    assert all(v <= TOL for v in result.max_abs_diff.values()), result.max_abs_diff
    assert result.manifest.cache_shape == (1, 2, 16 + 3 + AUDIO_CODE, 16, 16)
    assert result.manifest.model["temporal_config"]["audio_dim"] > 0


@pytest.mark.slow
def test_avs_tpavi_b5_exports_and_passes_parity(tmp_path):
    """The paper configuration (PVT-v2-b5 + VGGish, random weights, no temporal stage) at 224x224."""
    from streamavs.training.export import export_engine

    t0 = time.perf_counter()
    ckpt = _checkpoint(tmp_path / "b5.pt", "avs_tpavi_b5", 224, window=None)
    result = export_engine(ckpt, "onnx", tmp_path / "engines", n_check=4, threads=2)
    diffs = result.max_abs_diff
    assert all(diffs[k] <= TOL for k in ("mask_prob", "uncertainty", "sounding")), diffs
    assert result.manifest.temporal is None and result.manifest.cache_shape == (1, 1, 1, 1, 1)
    print(f"avs_tpavi_b5 export + 4-frame parity: {time.perf_counter() - t0:.1f} s, diffs {diffs}")


@pytest.mark.slow  # ~11 s (an export): the default step ran 4:37-4:43 on a quiet machine
def test_export_records_the_chosen_operating_point(lite64, tmp_path):
    """--mask-threshold and --hysteresis are the engine's operating point: written to the manifest
    and loaded with the engine."""
    from streamavs.errors import InputError
    from streamavs.training.export import export_engine

    ckpt, default = lite64
    assert default.manifest.thresholds.mask == 0.5 and default.manifest.thresholds.hysteresis == 0.0
    result = export_engine(ckpt, "onnx", tmp_path / "engines", name="lite64-t", n_check=2, threads=1, mask_threshold=0.65,
                           hysteresis=0.2)
    assert read_manifest(result.manifest_path).thresholds.mask == 0.65
    with load_engine(result.manifest_path, threads=1) as engine:
        assert engine.manifest.thresholds.mask == 0.65 and engine.manifest.thresholds.hysteresis == 0.2
    for bad in (0.0, 1.0, True, "0.6"):
        with pytest.raises(InputError, match=r"--mask-threshold\) must be a probability strictly between 0 and 1"):
            export_engine(ckpt, "onnx", tmp_path / "bad", n_check=2, mask_threshold=bad)
    for bad in (-0.1, 0.5, "0.2"):
        with pytest.raises(InputError, match=r"--hysteresis\) must be a probability band in \[0, 0.5\)"):
            export_engine(ckpt, "onnx", tmp_path / "bad", n_check=2, hysteresis=bad)
    assert not (tmp_path / "bad").exists()  # refused before any work
