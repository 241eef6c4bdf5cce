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


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test, then the process-wide setting restored: eager torch and training
    with two threads on a busy 2-core machine spin against each other and run many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """Path of the ffmpeg binary (installed by .ci/run); tests that make media need it."""
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("ffmpeg is not installed; run: apt-get install ffmpeg (.ci/run does)")
    return path


def _build_tiny_engine(directory: Path) -> Path:
    """An untrained 64x64 avs_lite + temporal (T=3) engine as ONNX + manifest; returns the manifest.

    Made once per session (the folder is shared by the test modules) the way production makes
    engines: a streaming checkpoint through streamavs.training.export.export_engine (the dynamo
    exporter, onnx.checker, then a 3-frame parity check against PyTorch eager through the
    runtime's own loader). About 7 s on an idle 2-core CPU and 15 s beside two CPU-bound
    processes (the TorchScript exporter took 2 s and 9 s). The 20-frame parity check of
    production exports is covered by tests/test_export_parity.py.
    """
    manifest_path = directory / "tiny.json"
    if manifest_path.is_file():
        return manifest_path
    torch = pytest.importorskip("torch", reason="building the test engine needs torch (the train extra)")
    pytest.importorskip("onnx", reason="building the test engine needs onnx (the train extra)")
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage
    from streamavs.training.export import export_engine

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    segmenter = create_model("avs_lite", image_size=64, backbone_pretrained=False)
    temporal = TemporalStage(TemporalConfig(in_channels=segmenter.config.decoder_channels, window=3, dim=8, heads=2))
    checkpoint = directory / "tiny.pt"
    save_streaming_checkpoint(checkpoint, StreamingSegmenter(segmenter, temporal).eval(), {})
    result = export_engine(checkpoint, "onnx", directory, name="tiny", n_check=3, threads=1)
    assert result.manifest_path == manifest_path
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


@pytest.fixture
def raw_pub():
    """A bare PUB socket on an ephemeral port, for messages a Publisher would never send."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)  # never drop: tests count every message (set before bind: it is copied then)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(linger=0)
    ctx.term()
