"""Engine manifests: round trip, the checks against the runtime and the model file, discovery, the CLI.

The engine here is a real, tiny ONNX model (built with onnx.helper, run by ONNX Runtime) with
the streaming signature, so these tests need no torch and take well under a second each.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamavs.audio import LogMelParams
from streamavs.engine import FORMAT_VERSION, load_engine, read_manifest
from streamavs.engine.base import resolve_engine
from streamavs.engine.manifest import (
    FrameSpec, Manifest, TemporalSpec, TensorSpec, Thresholds, write_manifest,
)
from streamavs.errors import EngineError, InputError, ManifestMismatch, MissingDependency

SIZE = 32
CACHE = (1, 2, 5, 8, 8)


def _tiny_onnx(path: Path) -> None:
    """mask_prob = mean_c(frame)/255, uncertainty = 1 - mask_prob, sounding = sigmoid(mean(log_mel)),
    new_feature_cache = feature_cache + 1 (so carrying the cache is visible)."""
    import onnx
    from onnx import TensorProto, helper

    h = helper
    nodes = [
        h.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        h.make_node("ReduceMean", ["f", "ax3"], ["m"], keepdims=1),  # (1, H, W, 1)
        h.make_node("Transpose", ["m"], ["mt"], perm=[0, 3, 1, 2]),  # (1, 1, H, W)
        h.make_node("Div", ["mt", "c255"], ["mask_prob"]),
        h.make_node("Sub", ["one", "mask_prob"], ["uncertainty"]),
        h.make_node("ReduceMean", ["log_mel"], ["lm"], keepdims=0),
        h.make_node("Sigmoid", ["lm"], ["s"]),
        h.make_node("Reshape", ["s", "shape1"], ["sounding"]),
        h.make_node("Add", ["feature_cache", "one"], ["new_feature_cache"]),
    ]
    inits = [
        h.make_tensor("ax3", TensorProto.INT64, [1], [3]),
        h.make_tensor("c255", TensorProto.FLOAT, [], [255.0]),
        h.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        h.make_tensor("shape1", TensorProto.INT64, [1], [1]),
    ]
    graph = h.make_graph(
        nodes, "tiny",
        [h.make_tensor_value_info("frame", TensorProto.UINT8, [1, SIZE, SIZE, 3]),
         h.make_tensor_value_info("log_mel", TensorProto.FLOAT, [1, 1, 96, 64]),
         h.make_tensor_value_info("feature_cache", TensorProto.FLOAT, list(CACHE))],
        [h.make_tensor_value_info("mask_prob", TensorProto.FLOAT, [1, 1, SIZE, SIZE]),
         h.make_tensor_value_info("uncertainty", TensorProto.FLOAT, [1, 1, SIZE, SIZE]),
         h.make_tensor_value_info("sounding", TensorProto.FLOAT, [1]),
         h.make_tensor_value_info("new_feature_cache", TensorProto.FLOAT, list(CACHE))],
        inits,
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture
def engine_dir(tmp_path: Path) -> Path:
    """tiny.onnx + tiny.json in a fresh folder."""
    model = tmp_path / "tiny.onnx"
    _tiny_onnx(model)
    manifest = Manifest(
        name="tiny", backend="onnx", precision="fp32", model_file=model.name,
        sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
        inputs=(TensorSpec("frame", (1, SIZE, SIZE, 3), "uint8"), TensorSpec("log_mel", (1, 1, 96, 64), "float32"),
                TensorSpec("feature_cache", CACHE, "float32")),
        outputs=(TensorSpec("mask_prob", (1, 1, SIZE, SIZE), "float32"),
                 TensorSpec("uncertainty", (1, 1, SIZE, SIZE), "float32"),
                 TensorSpec("sounding", (1,), "float32"), TensorSpec("new_feature_cache", CACHE, "float32")),
        frame=FrameSpec(size=(SIZE, SIZE), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),  # the graph only divides by 255
        temporal=TemporalSpec(window=3, cache_shape=CACHE),
        model={"name": "tiny", "config": {}},
        training={"data": "none (test engine)", "metrics": {"positive": {"miou": 0.787}, "global": {"g_miou": 0.35}}},
        created="2026-01-01T00:00:00+00:00",
    )
    write_manifest(manifest, tmp_path / "tiny.json")
    return tmp_path


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_manifest_round_trip_and_required_fields(engine_dir):
    m = read_manifest(engine_dir / "tiny.json")
    data = json.loads((engine_dir / "tiny.json").read_text())
    assert data["format_version"] == FORMAT_VERSION == 1
    assert data["frame"]["layout"] == "NHWC uint8 RGB"
    assert data["frame"]["normalisation"] == "inside the engine: /255 then ImageNet mean/std"
    assert data["audio"]["sample_rate"] == 16000 and data["audio"]["window_s"] == 1.0
    assert data["audio"]["example"] == "example = last 15600 samples of the window"
    assert data["thresholds"] == {"mask": 0.5, "gate": 0.5, "hysteresis": 0.0, "hysteresis_reset": 0.2}
    assert data["audio_hop"] is False
    assert Manifest.from_dict(m.to_dict()) == m
    assert m.cache_shape == CACHE and m.audio.params == LogMelParams()


@pytest.mark.parametrize("drop, named", [(("mean",), "mean"), (("std",), "std"), (("mean", "std"), "mean and std")])
def test_manifest_without_normalisation_says_to_re_export(engine_dir, drop, named):
    _edit(engine_dir / "tiny.json", lambda d: [d["frame"].pop(k) for k in drop])
    with pytest.raises(EngineError) as exc:
        load_engine(engine_dir / "tiny.json")
    assert str(exc.value) == (f"tiny.json: frame states no {named} (the normalisation the engine was trained with); "
                              "re-export the engine")


def test_missing_thresholds_take_the_defaults(engine_dir):
    _edit(engine_dir / "tiny.json", lambda d: d.update(thresholds={"gate": 0.25}))
    assert read_manifest(engine_dir / "tiny.json").thresholds == Thresholds(mask=Thresholds().mask, gate=0.25)
    _edit(engine_dir / "tiny.json", lambda d: d.pop("thresholds"))
    assert read_manifest(engine_dir / "tiny.json").thresholds == Thresholds()


def test_engine_runs_and_carries_the_cache(engine_dir):
    frame = np.full((SIZE, SIZE, 3), 51, np.uint8)
    log_mel = np.zeros((96, 64), np.float32)
    with load_engine(engine_dir / "tiny.onnx", threads=1) as engine:
        assert engine.name == "tiny" and engine.backend == "onnxruntime"
        assert engine.active_providers == ["CPUExecutionProvider"]
        cache = engine.initial_cache()
        assert cache.shape == CACHE and cache.dtype == np.float32 and not cache.any()
        for _ in range(3):
            out = engine.run(frame, log_mel, cache)
            cache = out.cache
        assert out.mask_prob.shape == (SIZE, SIZE) and out.mask_prob.dtype == np.float32
        np.testing.assert_allclose(out.mask_prob, 0.2, atol=1e-6)
        np.testing.assert_allclose(out.uncertainty, 0.8, atol=1e-6)
        assert out.sounding == pytest.approx(0.5)
        assert np.all(cache == 3.0)  # three steps, each +1
    engine.close()  # idempotent
    with pytest.raises(EngineError, match="closed"):
        engine.run(frame, log_mel, cache)


def test_run_rejects_wrong_inputs_naming_expected_and_got(engine_dir):
    with load_engine(engine_dir / "tiny.json", threads=1) as engine:
        ok_frame, ok_mel, cache = np.zeros((SIZE, SIZE, 3), np.uint8), np.zeros((96, 64), np.float32), engine.initial_cache()
        with pytest.raises(InputError, match=r"frame of shape \(32, 32, 3\) uint8 RGB, got shape \(64, 64, 3\) uint8"):
            engine.run(np.zeros((64, 64, 3), np.uint8), ok_mel, cache)
        with pytest.raises(InputError, match=r"got shape \(32, 32, 3\) float32"):
            engine.run(ok_frame.astype(np.float32), ok_mel, cache)
        with pytest.raises(InputError, match=r"cache of shape \(1, 2, 5, 8, 8\) float32, got shape \(1, 1, 1, 1, 1\)"):
            engine.run(ok_frame, ok_mel, np.zeros((1, 1, 1, 1, 1), np.float32))
        with pytest.raises(InputError, match=r"log_mel example of shape \(96, 64\) float32, got shape \(1, 96, 64\)"):
            engine.run(ok_frame, ok_mel[None], cache)


def test_frame_size_mismatch_with_the_runtime(engine_dir):
    with pytest.raises(ManifestMismatch) as exc:
        load_engine(engine_dir / "tiny.json", frame_size=(64, 64))
    msg = str(exc.value)
    assert msg == ("engine 'tiny' expects frame size 32x32 but this runtime feeds 64x64; resize frames to 32x32 "
                   "or use an engine exported at 64x64")


def test_frame_size_mismatch_between_manifest_and_model_file(engine_dir):
    def edit(d):
        d["frame"]["size"] = [64, 64]
        d["inputs"][0]["shape"] = [1, 64, 64, 3]

    _edit(engine_dir / "tiny.json", edit)
    with pytest.raises(ManifestMismatch, match=r"frame input \[1, 64, 64, 3\] \(frame size 64x64\) but model file "
                                               r"tiny.onnx takes \[1, 32, 32, 3\]"):
        load_engine(engine_dir / "tiny.json")


@pytest.mark.parametrize("field, value, runtime", [
    ("sample_rate", 16000, LogMelParams(sample_rate=22050)),
    ("n_mels", 64, LogMelParams(n_mels=40)),
    ("fmax_hz", 7500.0, LogMelParams(fmax_hz=8000.0)),
])
def test_audio_front_end_mismatch(engine_dir, field, value, runtime):
    with pytest.raises(ManifestMismatch) as exc:
        load_engine(engine_dir / "tiny.json", audio_params=runtime)
    got = getattr(runtime, field)
    assert str(exc.value).startswith(f"engine 'tiny' expects audio {field} {value} but this runtime's front end uses {got};")
    assert "\n" not in str(exc.value)


def test_cache_shape_mismatch_between_manifest_and_model_file(engine_dir):
    def edit(d):
        d["inputs"][2]["shape"] = d["outputs"][3]["shape"] = [1, 4, 5, 8, 8]
        d["temporal"] = {"window": 5, "cache_shape": [1, 4, 5, 8, 8]}

    _edit(engine_dir / "tiny.json", edit)
    with pytest.raises(ManifestMismatch) as exc:
        load_engine(engine_dir / "tiny.json")
    assert str(exc.value) == ("engine 'tiny': manifest says cache shape [1, 4, 5, 8, 8] but model file tiny.onnx "
                              "takes feature_cache [1, 2, 5, 8, 8]; re-export the engine")


def test_newer_format_version_says_to_upgrade(engine_dir):
    _edit(engine_dir / "tiny.json", lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ManifestMismatch) as exc:
        load_engine(engine_dir / "tiny.json")
    msg = str(exc.value)
    assert f"uses manifest format_version {FORMAT_VERSION + 1}" in msg
    assert f"reads format_version <= {FORMAT_VERSION}; upgrade streamavs" in msg and "\n" not in msg


def test_corrupted_model_file_fails_the_hash_check(engine_dir):
    model = engine_dir / "tiny.onnx"
    data = bytearray(model.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte
    model.write_bytes(bytes(data))
    with pytest.raises(ManifestMismatch, match=r"engine 'tiny': model file tiny.onnx has sha256 [0-9a-f]{16}\.\.\. but its "
                                               r"manifest says [0-9a-f]{16}\.\.\.; the file is corrupted or was modified"):
        load_engine(engine_dir / "tiny.json")


def test_missing_model_file_and_unknown_name(engine_dir, monkeypatch, tmp_path_factory):
    (engine_dir / "tiny.onnx").unlink()
    with pytest.raises(EngineError, match="model file .*tiny.onnx named by its manifest does not exist"):
        load_engine(engine_dir / "tiny.json")
    monkeypatch.chdir(tmp_path_factory.mktemp("empty"))
    with pytest.raises(EngineError, match=r"no engine 'nope': not a file, and not among the engines found"):
        load_engine("nope")


def test_missing_backend_names_its_extra(engine_dir):
    pytest.importorskip("torch")
    try:
        import torch_tensorrt  # noqa: F401
        pytest.skip("torch_tensorrt is installed here")
    except ImportError:
        pass
    _edit(engine_dir / "tiny.json", lambda d: d.update(backend="tensorrt", model_file="tiny.ep"))
    shutil.copy(engine_dir / "tiny.onnx", engine_dir / "tiny.ep")
    with pytest.raises(MissingDependency, match=r"needs the Python package 'torch_tensorrt'.*pip install 'streamavs\[tensorrt\]'"):
        load_engine(engine_dir / "tiny.json")


def test_backend_that_cannot_run_the_format(engine_dir):
    with pytest.raises(EngineError, match=r"backend 'torch' cannot run a 'onnx' engine"):
        load_engine(engine_dir / "tiny.json", backend="torch")
    with pytest.raises(EngineError, match=r"unknown backend 'tflite'; choose one of \['auto', 'onnxruntime', 'tensorrt', 'torch'\]"):
        load_engine(engine_dir / "tiny.json", backend="tflite")


def test_unavailable_execution_provider(engine_dir):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has the CUDA provider")
    with pytest.raises(EngineError, match=r"execution provider 'CUDAExecutionProvider' is not available .*onnxruntime-gpu"):
        load_engine(engine_dir / "tiny.json", providers=["cuda"])


def test_discovery_by_name_in_cwd_engines(engine_dir, tmp_path_factory, monkeypatch):
    work = tmp_path_factory.mktemp("work")
    shutil.copytree(engine_dir, work / "engines")
    monkeypatch.chdir(work)
    with load_engine("tiny", threads=1) as engine:
        assert engine.manifest.model_file == "tiny.onnx"


def test_a_path_is_never_looked_up_by_name(engine_dir, tmp_path_factory, monkeypatch):
    """A path with a folder part names a file: without its .json it finds the manifest there, and a
    missing one is an error, never the engine of the same name in ./engines (or the shipped one)."""
    work = tmp_path_factory.mktemp("work")
    shutil.copytree(engine_dir, work / "engines")
    monkeypatch.chdir(work)
    assert resolve_engine(engine_dir / "tiny") == engine_dir / "tiny.json"
    assert resolve_engine("tiny.json") == work / "engines" / "tiny.json"  # a bare file name is a name
    with pytest.raises(EngineError, match=r"no engine file '.*elsewhere/tiny' \(nor tiny.json beside it\); check the path"):
        resolve_engine(work / "elsewhere" / "tiny")
    with pytest.raises(EngineError, match=r"no engine file 'streamavs-real-lite/x'"):
        resolve_engine("streamavs-real-lite/x")
    (work / "empty").mkdir()
    with pytest.raises(EngineError, match=r"empty is a folder with no engine manifests in it"):
        resolve_engine(work / "empty")  # not the engines of the default folders
    with pytest.raises(EngineError, match=r"engines is a folder; name an engine in it: \['tiny'\]$"):
        resolve_engine(work / "engines")


def test_a_name_for_two_different_engines_is_refused_listing_both(engine_dir, tmp_path_factory, monkeypatch):
    work = tmp_path_factory.mktemp("work")
    shutil.copytree(engine_dir, work / "engines")
    monkeypatch.chdir(work)
    shipped = resolve_engine("streamavs-synthetic-lite")
    shutil.copy(shipped, work / "engines" / shipped.name)  # the same manifest twice: one engine
    assert resolve_engine("streamavs-synthetic-lite").read_bytes() == shipped.read_bytes()
    _edit(work / "engines" / shipped.name, lambda d: d.update(thresholds={**d["thresholds"], "mask": 0.55}))
    with pytest.raises(EngineError, match=r"engine name 'streamavs-synthetic-lite' names different engines in \[.*\]; "
                                          r"pass the path of the one to run"):
        resolve_engine("streamavs-synthetic-lite")


def test_a_misspelt_threshold_key_is_refused_not_ignored(engine_dir):
    _edit(engine_dir / "tiny.json", lambda d: d.update(thresholds={"mask": 0.6, "hysterisis": 0.2}))
    with pytest.raises(ManifestMismatch, match=r"unknown thresholds \['hysterisis'\] in the manifest; the keys are "
                                               r"\['mask', 'gate', 'hysteresis', 'hysteresis_reset'\]: correct the key"):
        read_manifest(engine_dir / "tiny.json")


@pytest.mark.parametrize("model_file", ["../tiny.onnx", "/tmp/tiny.onnx", "sub/tiny.onnx", ""])
def test_a_model_file_outside_the_manifest_folder_is_refused(engine_dir, model_file):
    _edit(engine_dir / "tiny.json", lambda d: d.update(model_file=model_file))
    with pytest.raises(EngineError, match=r"must be a file name in the manifest's own folder"):
        read_manifest(engine_dir / "tiny.json")


@pytest.mark.parametrize("threads", [0, -1, 10**5])
def test_a_thread_count_outside_1_to_4_per_core_is_refused(engine_dir, threads):
    with pytest.raises(EngineError, match=r"threads must be a whole number from 1 to \d+ \(4 per core this process may use\), "
                                          rf"got {threads}; leave it out for the default"):
        load_engine(engine_dir / "tiny.json", threads=threads)


def test_cli_engines_lists_and_describes(engine_dir, capsys):
    from streamavs.cli import main

    assert main(["engines", "--path", str(engine_dir)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tiny "))
    assert row.split()[:6] == ["tiny", "onnx", "fp32", "32x32", "3", "0.0"]
    assert str(engine_dir / "tiny.json") in row

    assert main(["engines", str(engine_dir / "tiny.onnx")]) == 0
    out = capsys.readouterr().out
    assert "frame        32x32 NHWC uint8 RGB; inside the engine: /255 then ImageNet mean/std" in out
    assert "temporal     window 3, cache [1, 2, 5, 8, 8]" in out
    assert "  positive.miou                0.787" in out and "  global.g_miou                0.35" in out

    assert main(["engines", str(engine_dir / "tiny.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny"

    assert main(["engines", str(engine_dir / "missing.onnx")]) != 0
    assert "no engine" in capsys.readouterr().err


@pytest.mark.parametrize("mask", [0.0, 1.0, 1.5])
def test_a_threshold_outside_0_1_is_refused_with_its_key(engine_dir, mask):
    from streamavs.errors import InputError

    _edit(engine_dir / "tiny.json", lambda d: d.update(thresholds={"mask": mask, "gate": 0.5}))
    with pytest.raises((InputError, EngineError), match=r"thresholds.mask must be a probability strictly between 0 and 1"):
        read_manifest(engine_dir / "tiny.json")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["outputs"][0].update(shape=[1, 1, 16, 16]),
     r"manifest says mask_prob \[1, 1, 16, 16\] but the runtime reads \[1, 1, 32, 32\]"),
    (lambda d: d["inputs"][1].update(shape=[1, 1, 48, 64]),
     r"manifest says log_mel \[1, 1, 48, 64\] but the runtime feeds \[1, 1, 96, 64\]"),
    (lambda d: d["inputs"][0].update(dtype="float32"),
     r"manifest says input frame \[1, 32, 32, 3\] float32 but model file tiny.onnx has \[1, 32, 32, 3\] uint8"),
    (lambda d: d["outputs"][3].update(dtype="float16"),
     r"manifest says output new_feature_cache \[1, 2, 5, 8, 8\] float16 but model file tiny.onnx has .* float32"),
])
def test_a_manifest_that_does_not_describe_its_model_is_refused_at_load(engine_dir, edit, message):
    """Refused when the engine loads, naming the tensor; not on the first frame with the backend's error."""
    _edit(engine_dir / "tiny.json", edit)
    with pytest.raises(ManifestMismatch, match=message):
        load_engine(engine_dir / "tiny.json", audio_params=LogMelParams())
