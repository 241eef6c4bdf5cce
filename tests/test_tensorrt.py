"""torch-tensorrt engines. The `gpu` tests need CUDA + torch-tensorrt and are skipped (with a reason)
elsewhere; the CPU tests pin what can be checked without a GPU: the casting wrapper that the
TensorRT build compiles, and the missing-package message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from streamavs.errors import MissingDependency  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _streaming(size: int, window: int | None = 3):
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    torch.manual_seed(0)
    seg = create_model("avs_lite", image_size=size, backbone_pretrained=False)
    temporal = None
    if window is not None:
        temporal = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=window, dim=16, heads=4))
    return StreamingSegmenter(seg, temporal).eval()


def _inputs(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    size = model.image_size
    frame = torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8, generator=g)
    log_mel = torch.randn(1, 1, 96, 64, generator=g) * 2 - 4
    return frame, log_mel, model.initial_cache()


def test_casting_wrapper_float32_equals_the_streaming_module():
    """What TensorRT compiles is the streaming module itself (bit-identical in float32), over 3 steps."""
    from streamavs.engine.tensorrt import CastingStreaming

    model = _streaming(64)
    wrapped = CastingStreaming(model, torch.float32)
    frame, log_mel, cache_a = _inputs(model)
    cache_b = cache_a.clone()
    with torch.no_grad():
        for _ in range(3):
            a, b = model(frame, log_mel, cache_a), wrapped(frame, log_mel, cache_b)
            for x, y in zip(a, b):
                assert x.dtype == y.dtype == torch.float32
                assert torch.equal(x, y)
            cache_a, cache_b = a[3], b[3]


# float16 against float32, max |difference| per output over 3 steps with the cache carried (measured at
# 32 px: mask 5e-4, uncertainty 1.4e-3, sounding 1.4e-4, cache 1.1e-2) and what a frame flipped upside
# down changes (mask 0.036, uncertainty 0.009, sounding 0.009, cache 1.9): each bound lies between.
_FLOAT16_TOLERANCE = {"mask_prob": 5e-3, "uncertainty": 5e-3, "sounding": 2e-3, "cache": 5e-2}


def test_casting_wrapper_float16_keeps_io_dtypes_and_leaves_the_model_alone():
    from streamavs.engine.tensorrt import CastingStreaming

    model = _streaming(32, window=3)
    wrapped = CastingStreaming(model, torch.float16)
    assert next(model.parameters()).dtype == torch.float32  # the reference stays float32
    assert next(wrapped.parameters()).dtype == torch.float16
    cache_ref = cache_out = model.initial_cache()
    with torch.no_grad():
        for step in range(3):
            frame, log_mel, _ = _inputs(model, seed=step)
            try:
                out = wrapped(frame, log_mel, cache_out)
            except RuntimeError as exc:  # some CPU builds lack half kernels
                pytest.skip(f"this torch build cannot run float16 on the CPU: {exc}")
            ref = model(frame, log_mel, cache_ref)
            assert [o.dtype for o in out] == [torch.float32] * 4
            for name, o, r in zip(_FLOAT16_TOLERANCE, out, ref):
                assert (o - r).abs().max().item() < _FLOAT16_TOLERANCE[name], (step, name)
            cache_ref, cache_out = ref[3], out[3]


def test_tensorrt_export_without_the_package_names_the_extra(tmp_path):
    try:
        import torch_tensorrt  # noqa: F401

        pytest.skip("torch_tensorrt is installed here")
    except ImportError:
        pass
    from streamavs.model.streaming import save_streaming_checkpoint
    from streamavs.training.export import export_engine

    ckpt = tmp_path / "m.pt"
    save_streaming_checkpoint(ckpt, _streaming(32, window=None), {})
    with pytest.raises(MissingDependency, match=r"TensorRT export needs the Python package 'torch_tensorrt'.*"
                                                r"pip install 'streamavs\[tensorrt\]'"):
        export_engine(ckpt, "tensorrt", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# -- on a GPU -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lite224_checkpoint(tmp_path_factory) -> Path:
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    torch.manual_seed(0)
    seg = create_model("avs_lite", image_size=224, backbone_pretrained=False)
    temporal = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=5))
    path = tmp_path_factory.mktemp("trt") / "lite224.pt"
    save_streaming_checkpoint(path, StreamingSegmenter(seg, temporal).eval(), {})
    return path


@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_export_parity_reload_and_speed(lite224_checkpoint, tmp_path, fp16):
    """Export (compile, save as ExportedProgram, reload, 20-frame parity vs eager fp32 on CUDA), then time it."""
    pytest.importorskip("torch_tensorrt")
    from streamavs.engine import load_engine
    from streamavs.training.export import DEFAULT_TOLERANCE, export_engine

    result = export_engine(lite224_checkpoint, "tensorrt", tmp_path, name="lite224-trt", fp16=fp16, n_check=20)
    m = result.manifest
    assert m.backend == "tensorrt" and m.precision == ("fp16" if fp16 else "fp32")
    assert result.model_path.suffix == ".ep"
    tol = DEFAULT_TOLERANCE[m.precision]
    assert all(v <= tol for v in result.max_abs_diff.values()), result.max_abs_diff
    from streamavs.bench.engine_speed import time_engine
    from streamavs.training.export import parity_inputs

    inputs, _ = parity_inputs(224, 10)
    with load_engine(result.manifest_path) as engine:
        assert engine.backend == "tensorrt"
        stats = time_engine(engine, inputs, repeats=200, warmup=20)  # run() returns host arrays: synchronised
    median, p95 = stats["median_ms"], stats["p95_ms"]
    print(f"TensorRT {m.precision} avs_lite+temporal 224: median {median:.2f} ms, p95 {p95:.2f} ms, diffs {result.max_abs_diff}")
    assert median < 25.0  # >= 40 FPS including host<->device copies
