"""Loading an engine: the name `streamavs engines` lists is the one --engine takes, a model file ONNX
Runtime cannot read or cannot run gets the fix that fits, the manifest's precision is checked
against the model file, and a thread count must be a whole number.

The engines are copies of the shipped ones (engines/), edited as a broken export or a hand edit
would leave them, loaded by real ONNX Runtime sessions; no torch except where marked.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamavs.cli import main
from streamavs.engine import load_engine
from streamavs.errors import EngineError, ManifestMismatch

SHIPPED = Path(__file__).resolve().parents[1] / "engines"
SYNTHETIC = "streamavs-synthetic-lite"  # FP32
REAL_INT8 = "streamavs-real-lite-int8"


def _copy_engine(shipped: str, folder: Path, stem: str | None = None, model: bytes | None = None, **fields) -> Path:
    """The shipped engine `shipped` copied into `folder` as `stem`.json + `stem`.onnx (the layout
    `streamavs export` writes), with `model` as its model file if given (the manifest's sha256
    made to match it, as when the exporter itself wrote a damaged file) and manifest `fields` replaced."""
    stem = stem or shipped
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads((SHIPPED / f"{shipped}.json").read_text())
    model_path = folder / f"{stem}.onnx"
    if model is None:
        shutil.copy(SHIPPED / data["model_file"], model_path)
    else:
        model_path.write_bytes(model)
    data.update(model_file=model_path.name, sha256=hashlib.sha256(model_path.read_bytes()).hexdigest(), **fields)
    manifest = folder / f"{stem}.json"
    manifest.write_text(json.dumps(data, indent=2))
    return manifest


def _shipped_model(name: str) -> bytes:
    return (SHIPPED / f"{name}.onnx").read_bytes()


# -- 1. the listing shows the handle --engine takes ---------------------------------------------------
def test_the_name_the_listing_shows_is_the_one_engine_takes(tmp_path, monkeypatch, capsys):
    """An engine whose manifest name differs from its file name (exported, then renamed): the listing's
    first column is the file name, which --engine and `streamavs engines NAME` take, and says the manifest
    name beside it; the manifest name given to --engine is refused with the name to use."""
    manifest = _copy_engine(SYNTHETIC, tmp_path / "engines", stem="fast", name="synthetic-fast")
    monkeypatch.chdir(tmp_path)

    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.endswith("(manifest name 'synthetic-fast')"))
    handle = row.split()[0]
    assert handle == "fast" and f"{manifest}" in row

    assert main(["engines", handle]) == 0
    out = capsys.readouterr().out
    assert "engine       fast (manifest name 'synthetic-fast')" in out
    with load_engine(handle, threads=1) as engine:
        assert engine.name == "synthetic-fast"

    assert main(["engines", "synthetic-fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"streamavs: error: no engine file named 'synthetic-fast': it is the manifest name of {manifest}; "
                   "--engine takes an engine's file name (the first column of `streamavs engines`): pass 'fast'")


def test_the_listing_is_unchanged_when_the_names_agree(capsys):
    assert main(["engines"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("streamavs-")]
    assert {row.split()[0] for row in rows} >= {SYNTHETIC, REAL_INT8, "streamavs-real-lite"}
    assert not any("manifest name" in row for row in rows)


# -- 2. a model file ONNX Runtime cannot read, or reads but cannot run -------------------------------
@pytest.mark.parametrize("damage", ["truncated", "not onnx", "empty"])
def test_a_damaged_model_file_with_a_matching_sha256_says_re_export_from_the_checkpoint(tmp_path, damage):
    model = {"truncated": _shipped_model(SYNTHETIC)[:1_000_000], "not onnx": b"<html>404</html>", "empty": b""}[damage]
    manifest = _copy_engine(SYNTHETIC, tmp_path, model=model)
    with pytest.raises(EngineError) as exc:
        load_engine(manifest, threads=1)
    message = str(exc.value)
    assert message.startswith(f"engine {SYNTHETIC!r}: model file {SYNTHETIC}.onnx is not a readable ONNX model "
                              "(ONNX Runtime: ")
    assert message.endswith("its sha256 matches its manifest, so the file was damaged before the manifest was "
                            "written, or both were replaced: re-export the engine from its checkpoint, or restore "
                            "both files from where the engine came from")
    assert "onnxruntime version" not in message


def _with_ir_version(model: bytes, version: int) -> bytes:
    """The model with its ir_version (ModelProto field 1, the file's first two bytes) replaced."""
    assert model[:2] == b"\x08\x0a" and 0 < version < 128  # field 1 varint, IR version 10
    return b"\x08" + bytes([version]) + model[2:]


def test_a_model_this_onnxruntime_parses_but_cannot_load_names_the_version_it_was_made_for(tmp_path):
    import onnxruntime

    this = onnxruntime.__version__
    model = _with_ir_version(_shipped_model(SYNTHETIC), 99)  # as written by a newer exporter
    manifest = _copy_engine(SYNTHETIC, tmp_path, model=model,
                            versions={**json.loads((SHIPPED / f"{SYNTHETIC}.json").read_text())["versions"],
                                      "onnxruntime": "99.0.0"})
    with pytest.raises(EngineError) as exc:
        load_engine(manifest, threads=1)
    message = str(exc.value)
    assert message.startswith(f"engine {SYNTHETIC!r}: ONNX Runtime {this} parses model file {SYNTHETIC}.onnx "
                              f"(ONNX IR version 99, opset 18) but cannot load it: FAIL : Unsupported model IR version")
    assert message.endswith(f"; the engine was exported with onnxruntime 99.0.0: run it with that version "
                            f"(pip install onnxruntime==99.0.0) or re-export the engine with this one ({this})")
    assert "not a readable ONNX model" not in message and "/onnxruntime_src/" not in message


def test_a_model_its_own_onnxruntime_version_cannot_load_says_re_export(tmp_path):
    """Exported with this very onnxruntime: another version is no fix, the export is."""
    manifest = _copy_engine(SYNTHETIC, tmp_path, model=_with_ir_version(_shipped_model(SYNTHETIC), 99))
    with pytest.raises(EngineError, match=r"but cannot load it: FAIL : Unsupported model IR version: 99.*; the engine "
                                          r"records this onnxruntime version \(.*\), so the export wrote a model it "
                                          r"cannot run: re-export the engine$"):
        load_engine(manifest, threads=1)


# -- 3. the manifest's precision against its model file -----------------------------------------------
def test_an_int8_manifest_over_a_float_model_is_refused(tmp_path):
    manifest = _copy_engine(SYNTHETIC, tmp_path, precision="int8")
    with pytest.raises(ManifestMismatch) as exc:
        load_engine(manifest, threads=1)
    assert str(exc.value) == (
        f"engine {SYNTHETIC!r}: manifest says precision int8 but model file {SYNTHETIC}.onnx holds no quantization "
        "operators (QuantizeLinear, DequantizeLinear, ...): it is a float (fp32) model; the manifest was written for "
        "another model file: restore the engine's files or re-export it"
    )


def test_an_fp32_manifest_over_an_int8_model_is_refused(tmp_path):
    manifest = _copy_engine(REAL_INT8, tmp_path, precision="fp32")
    with pytest.raises(ManifestMismatch) as exc:
        load_engine(manifest, threads=1)
    assert str(exc.value) == (
        f"engine {REAL_INT8!r}: manifest says precision fp32 but model file {REAL_INT8}.onnx is quantized (it holds "
        "DequantizeLinear, QuantizeLinear operators: an int8 model); the manifest was written for another model "
        "file: restore the engine's files or re-export it"
    )


@pytest.mark.parametrize("name", [SYNTHETIC, "streamavs-real-lite", REAL_INT8])
def test_each_shipped_engine_is_read_as_its_manifest_says(name):
    """The wire-format reader against the onnx package (the train extra) on every shipped model file."""
    onnx = pytest.importorskip("onnx", reason="the reference reader is the onnx package (the train extra)")
    from streamavs.engine.onnx_graph import read_onnx_summary

    data = _shipped_model(name)
    summary, reference = read_onnx_summary(data), onnx.load_from_string(data)
    assert summary.op_types == {node.op_type for node in reference.graph.node}
    assert summary.ir_version == reference.ir_version
    assert summary.opsets == {o.domain: o.version for o in reference.opset_import}
    assert summary.quantized == (json.loads((SHIPPED / f"{name}.json").read_text())["precision"] == "int8")


# -- 4. a thread count is a whole number --------------------------------------------------------------
@pytest.mark.parametrize("threads", [2.5, 1.0, True, "2"])
def test_a_thread_count_that_is_not_a_whole_number_is_refused(threads):
    with pytest.raises(EngineError, match=r"^threads must be a whole number from 1 to \d+ \(4 per core this "
                                          rf"process may use\), got {threads!r}; leave it out for the default, \d+$"):
        load_engine(SYNTHETIC, threads=threads)


def test_a_numpy_integer_thread_count_is_taken():
    with load_engine(SYNTHETIC, threads=np.int64(1)) as engine:
        assert engine.settings.threads == 1 and type(engine.settings.threads) is int


@pytest.mark.parametrize("command", [["run", "--synthetic", "--fast", "--frames", "1"], ["bench", "latency"]])
def test_the_cli_refuses_a_fractional_threads_option(command, capsys):
    """Every --threads that reaches an engine is parsed as an integer: 2.5 is a usage error, nothing runs."""
    assert main([*command, "--threads", "2.5"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Invalid value for '--threads'" in err and "integer" in err


def test_the_torch_engine_refuses_a_fractional_thread_count(one_torch_thread):
    """torch.set_num_threads is process-wide: 2.5 must not become 2 for every model in the process."""
    torch = pytest.importorskip("torch", reason="the PyTorch backend needs the train extra")
    from streamavs.engine.torch import TorchEngine
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter

    model = StreamingSegmenter(create_model("avs_lite", image_size=64, backbone_pretrained=False), None).eval()
    with pytest.raises(EngineError, match=r"^threads must be a whole number from 1 to \d+ .*got 2.5"):
        TorchEngine.from_module(model, threads=2.5)
    assert torch.get_num_threads() == 1


def test_the_tensorrt_engine_checks_the_thread_count_it_ignores(tmp_path):
    """The GPU backend takes threads only for a uniform load_engine call; 2.5 is refused there too,
    before the backend's own dependencies are looked for."""
    manifest = _copy_engine(SYNTHETIC, tmp_path, backend="tensorrt")
    with pytest.raises(EngineError, match=r"^threads must be a whole number from 1 to \d+ .*got 2.5"):
        load_engine(manifest, threads=2.5)


def test_a_session_failure_that_is_not_the_model_names_the_providers_not_the_export():
    """A provider that does not start (CUDA out of memory, as ONNX Runtime words it) is not a fault of
    the model file: no re-export or onnxruntime-version advice, the providers asked for instead."""
    import onnxruntime as ort

    from streamavs.engine import read_manifest, resolve_engine
    from streamavs.engine.onnxruntime import load_error

    path = resolve_engine(SYNTHETIC)
    manifest = read_manifest(path)
    data = (path.parent / manifest.model_file).read_bytes()
    cuda = RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: "
                        "CUDA failure 2: out of memory ; GPU=0")
    message = str(load_error(manifest, manifest.model_file, data, cuda, ort.__version__, ["CUDAExecutionProvider"]))
    assert "could not create a session" in message and "CUDAExecutionProvider" in message and "providers=['cpu']" in message
    assert "re-export" not in message and "pip install" not in message
    ir = RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Unsupported model IR version: 99, max supported IR version: 10")
    assert "re-export" in str(load_error(manifest, manifest.model_file, data, ir, ort.__version__, ["CPUExecutionProvider"]))
