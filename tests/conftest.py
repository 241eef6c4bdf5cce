"""Shared pytest fixtures and skips. Fixtures that make real media live in tests/media.py."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` with a reason when CUDA is absent."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """Path of the ffmpeg binary (installed by .ci/run); tests that make media need it."""
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("ffmpeg is not installed; run: apt-get install ffmpeg (.ci/run does)")
    return path


def _build_tiny_engine(directory: Path) -> Path:
    """An untrained 64x64 avs_lite + temporal (T=3) engine as ONNX + manifest; returns the manifest.

    Made once per session (the folder is shared by the test modules). It uses the TorchScript
    ONNX exporter directly (~3 s) instead of streamavs.training.export.export_engine (dynamo +
    parity, ~30 s on this CPU); the runtime checks the manifest and hash on every load.
    """
    manifest_path = directory / "tiny.json"
    if manifest_path.is_file():
        return manifest_path
    torch = pytest.importorskip("torch", reason="building the test engine needs torch (the train extra)")
    from streamavs.engine.manifest import file_sha256, write_manifest
    from streamavs.engine.torch import streaming_manifest
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import INPUT_NAMES, OUTPUT_NAMES, StreamingSegmenter
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    segmenter = create_model("avs_lite", image_size=64, backbone_pretrained=False)
    temporal = TemporalStage(TemporalConfig(in_channels=segmenter.config.decoder_channels, window=3, dim=8, heads=2))
    model = StreamingSegmenter(segmenter, temporal).eval()
    example = (torch.zeros(1, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 1, 96, 64), model.initial_cache())
    onnx_path = directory / "tiny.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model, example, str(onnx_path), opset_version=17, dynamo=False,
            input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
        )  # fmt: skip
    manifest = streaming_manifest(
        model, {}, name="tiny", backend="onnx", model_file=onnx_path.name, sha256=file_sha256(onnx_path),
        export={"exporter": "torchscript (test fixture, no parity check)"},
    )  # fmt: skip
    write_manifest(manifest, manifest_path)
    return manifest_path



@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory) -> Path:
    """Manifest path of an untrained 64x64 avs_lite + temporal ONNX engine, built once per session."""
    return _build_tiny_engine(tmp_path_factory.getbasetemp() / "tiny-engine")


@pytest.fixture(scope="session")
def real_media() -> Path:
    """The real-media cache (fetched with apt-get download by `streamavs data fetch`; .ci/run does it first).

    Fetching is idempotent: with the packages already in the cache it only re-indexes (a few seconds).
    """
    from streamavs.realmedia.fetch import default_cache, fetch_media

    root = default_cache()
    if not (root / "media.json").is_file() and shutil.which("apt-get") is None:
        pytest.skip("no fetched real media and no apt-get to fetch them (a Debian/Ubuntu machine runs these tests)")
    fetch_media(root, progress=lambda _: None)
    return root


@pytest.fixture(scope="session")
def c_subscriber(tmp_path_factory) -> Path:
    """tests/c/subscriber.c compiled against libzmq (a client that is not Python)."""
    gcc, pkg_config = shutil.which("gcc"), shutil.which("pkg-config")
    if gcc is None or pkg_config is None:
        pytest.skip("the C subscriber needs gcc and pkg-config: apt-get install gcc pkg-config libzmq3-dev")
    flags = subprocess.run([pkg_config, "--cflags", "--libs", "libzmq"], capture_output=True, text=True)
    if flags.returncode != 0:
        pytest.skip("the C subscriber needs libzmq's headers: apt-get install libzmq3-dev")
    exe = tmp_path_factory.mktemp("c") / "subscriber"
    src = Path(__file__).parent / "c" / "subscriber.c"
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(exe), str(src), *shlex.split(flags.stdout)], check=True)
    return exe
