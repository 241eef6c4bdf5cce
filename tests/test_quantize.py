"""INT8 engines: static quantization of an FP32 ONNX engine, `streamavs export --int8` and its gates,
and the shipped INT8 engine against the shipped FP32 engine it was made from.

The small cases quantize the shared untrained 64x64 test engine (conftest ``tiny_engine``);
its outputs are noise, so the gates there are set wide, and the refusal is shown on the shipped
FP32 engine. The shipped INT8 engine is checked on real media against its FP32 engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

import streamavs.engines  # noqa: E402
from streamavs.cli import main  # noqa: E402
from streamavs.engine import load_engine, read_manifest  # noqa: E402
from streamavs.engine.base import REAL_ENGINE  # noqa: E402
from streamavs.engine.manifest import Manifest, file_sha256, write_manifest  # noqa: E402
from streamavs.errors import InputError, ManifestMismatch  # noqa: E402

ENGINES = Path(streamavs.engines.__file__).resolve().parent
INT8_ENGINE = f"{REAL_ENGINE}-int8"
WIDE_GATES = ["--tolerance", "0.5", "--max-miou-drop", "100", "--max-fpr-rise", "1"]  # untrained engine: noise
needs_real = pytest.mark.skipif(not (ENGINES / f"{REAL_ENGINE}.json").is_file(),
                                reason=f"{REAL_ENGINE} is not in streamavs/engines/")
needs_shipped = pytest.mark.skipif(not (ENGINES / f"{INT8_ENGINE}.json").is_file(),
                                   reason=f"{INT8_ENGINE} is not in streamavs/engines/")


def _int8_args(source: Path, out: Path, name: str = "tiny-int8") -> list[str]:
    return ["export", str(source), "--int8", "--name", name, "--out", str(out), "--calibration", "synthetic-val",
            "--calibration-clips", "2", "--eval", "synthetic-single", "--eval-clips", "4"]


# -- the manifest ------------------------------------------------------------------------------
def test_manifest_takes_int8_for_onnx_and_refuses_other_precisions(tiny_engine):
    data = json.loads(tiny_engine.read_text())
    assert Manifest.from_dict({**data, "precision": "int8"}).precision == "int8"
    with pytest.raises(ManifestMismatch, match=r"has precision 'int4'; this streamavs runs fp32 \| fp16 \| int8: re-export"):
        Manifest.from_dict({**data, "precision": "int4"}, source="x.json")
    with pytest.raises(ManifestMismatch, match="says precision int8 for backend tensorrt, which only onnx engines have"):
        Manifest.from_dict({**data, "backend": "tensorrt", "precision": "int8"})


def test_quantize_config_names_what_it_expects():
    from streamavs.training.quantize import QuantizeConfig

    with pytest.raises(InputError, match="calibration data must be one of .*'real-train'.*got 'real-test'"):
        QuantizeConfig(calibration="real-test")  # the accuracy gate's split is never calibrated on
    with pytest.raises(InputError, match=r"\['decoderz'\] are not stages; choose among"):
        QuantizeConfig(exclude_stages=("decoderz",))


# -- quantization of the small engine ------------------------------------------------------------
@pytest.mark.slow  # ~4.3 s: an INT8 export with calibration
def test_quantized_engine_runs_int8_kernels_keeps_the_sensitive_parts_float_and_stays_close(tiny_engine, tmp_path):
    import onnx
    import onnxruntime as ort

    from streamavs.training.export import parity_inputs
    from streamavs.training.graph_stages import node_stages
    from streamavs.training.quantize import QuantizeConfig, calibration_inputs, compare_engines, excluded_nodes, quantize_model

    config = QuantizeConfig(calibration="synthetic-val", calibration_clips=2)
    feeds, described = calibration_inputs(tiny_engine, config)
    assert len(feeds) == 10 and "stream order" in described  # 2 clips x 5 frames
    caches = [f["feature_cache"] for f in feeds]
    assert not caches[0].any() and not caches[5].any()  # each clip starts a stream
    assert all(c.any() for i, c in enumerate(caches) if i % 5)  # later frames see the caches the engine made

    fp32 = read_manifest(tiny_engine)
    source = onnx.load(str(tiny_engine.parent / fp32.model_file))
    stages = node_stages(source.graph)
    kept = set(excluded_nodes(source, config))
    first_conv = next(n for n in source.graph.node if n.op_type == "Conv")
    assert first_conv.name in kept
    assert {n for n, s in stages.items() if s in ("audio", "preprocess")} <= kept
    temporal = [n for n in source.graph.node if stages[n.name] == "temporal"]
    assert {n.name for n in temporal if n.op_type in ("Softmax", "Softplus", "Sigmoid", "Div")} <= kept
    assert not {n.name for n in temporal if n.op_type == "Conv"} & kept

    model = tmp_path / "tiny-int8.onnx"
    record = quantize_model(tiny_engine.parent / fp32.model_file, model, feeds, config)
    assert record["calibration_inputs"] == 10 and record["nodes_by_op"]["QuantizeLinear"] > 10
    import dataclasses

    manifest = write_manifest(dataclasses.replace(fp32, name="tiny-int8", precision="int8", model_file=model.name,
                                                  sha256=file_sha256(model)), tmp_path / "tiny-int8.json")
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}
    assert {"QLinearConv", "Conv"} <= ops  # int8 convolutions, and the first one in float

    inputs, _ = parity_inputs(64, 10, seed=3)
    with load_engine(tiny_engine, threads=1) as a, load_engine(manifest, threads=1) as b:
        assert b.manifest.precision == "int8"
        parity = compare_engines(a, b, inputs)
    assert parity["frames"] == 10 and all(np.isfinite(v) for v in parity["max_abs_diff"].values())
    assert parity["mean_abs_diff"]["mask_prob"] < 0.05 and parity["mean_abs_diff"]["sounding"] < 0.05
    assert 0 <= parity["mask_disagreement"] <= 1 and 0 <= parity["mask_iou"] <= 1


# -- streamavs export --int8 ---------------------------------------------------------------------
@pytest.mark.slow  # a calibration and an INT8 export with its gates: ~8 s
def test_export_int8_writes_an_engine_with_its_gates_and_command(tiny_engine, tmp_path, capsys):
    out = tmp_path / "engines"
    assert main([*_int8_args(tiny_engine, out), *WIDE_GATES]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tiny-int8.json", "tiny-int8.onnx"]  # no temporary folder left
    assert "wrote " in capsys.readouterr().out
    m = read_manifest(out / "tiny-int8.json")
    assert m.precision == "int8" and m.backend == "onnx" and m.sha256 == file_sha256(out / "tiny-int8.onnx")
    export = m.export
    assert export["command"].startswith("streamavs export ") and " --int8 --name tiny-int8 " in export["command"]
    assert export["source"]["fp32_sha256"] == read_manifest(tiny_engine).sha256
    assert export["quantization"]["quant_format"] == "qdq" and export["quantization"]["calibration_inputs"] == 10
    assert export["parity"]["passed"] and export["parity"]["frames"] == 20 and export["accuracy_gate"]["passed"]
    assert set(export["accuracy_gate"]["delta_int8_minus_fp32"]) == {"gate_off", "gate_on"}
    assert m.training["eval"]["data"] == "synthetic-single" and m.training["eval"]["clips"] == 4
    assert m.training["eval"]["command"] == "streamavs eval --engine tiny-int8.json --data synthetic-single --clips 4"
    with load_engine(out / "tiny-int8.json", threads=1) as engine:  # the runtime loads what export wrote
        assert engine.run(np.zeros((64, 64, 3), np.uint8), np.zeros((96, 64), np.float32),
                          engine.initial_cache()).mask_prob.shape == (64, 64)


@needs_real
@pytest.mark.slow  # an INT8 export on real clips: ~6 s
def test_export_int8_refused_by_its_parity_gate_writes_nothing(real_media, tmp_path, capsys):
    """The shipped FP32 engine quantized from one clip, with a tolerance no 8-bit engine meets
    (its masks differ from FP32 on ~0.1% of the pixels of the parity frames): a one-line refusal."""
    out = tmp_path / "engines"
    args = ["export", REAL_ENGINE, "--int8", "--out", str(out), "--calibration", "real-val", "--calibration-clips", "1",
            "--n-check", "3", "--tolerance", "1e-9"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress lines
    assert err.startswith(f"streamavs: error: INT8 export of {REAL_ENGINE} refused: "), err
    assert "of mask pixels differ from the FP32 engine over 3 frames (tolerance 1e-07%)" in err
    assert "nothing was written" in err
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_export_int8_from_a_checkpoint_exports_fp32_first(tiny_engine, tmp_path):
    checkpoint = tiny_engine.with_suffix(".pt")  # the checkpoint the test engine was exported from
    out = tmp_path / "engines"
    assert main([*_int8_args(checkpoint, out, name="tiny-ckpt-int8"), *WIDE_GATES]) == 0
    m = read_manifest(out / "tiny-ckpt-int8.json")
    source = m.export["source"]
    assert source["exported_fp32_in_this_run"] and source["checkpoint"] == "tiny.pt"
    assert source["fp32_export"]["parity"]["passed"]  # the FP32 step kept its check against PyTorch
    assert sorted(p.name for p in out.iterdir()) == ["tiny-ckpt-int8.json", "tiny-ckpt-int8.onnx"]


def test_export_int8_option_errors_are_one_line(tiny_engine, tmp_path, capsys):
    cases = [
        (["--fp16"], "--int8 makes an ONNX Runtime engine; drop --fp16 and --backend tensorrt"),
        (["--calibration", "real-test"], "calibration data must be one of ('real-train', 'real-val', 'synthetic-train', "),
    ]
    for extra, message in cases:
        assert main([*_int8_args(tiny_engine, tmp_path / "x"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"streamavs: error: {message}") and "\n" not in err, err


# -- the shipped INT8 engine -----------------------------------------------------------------------


@needs_shipped
def test_shipped_int8_engine_comes_from_the_shipped_fp32_engine_and_met_its_gates():
    """Fast: the manifests agree. If the FP32 engine is re-exported, this fails until the INT8 one is too."""
    fp32, int8 = read_manifest(ENGINES / f"{REAL_ENGINE}.json"), read_manifest(ENGINES / f"{INT8_ENGINE}.json")
    assert int8.precision == "int8" and int8.sha256 == file_sha256(ENGINES / int8.model_file)
    assert int8.export["source"]["fp32_sha256"] == fp32.sha256, (
        f"{INT8_ENGINE} was quantized from another {REAL_ENGINE}; rebuild it with: {int8.export['command']}")
    assert (int8.inputs, int8.outputs, int8.frame, int8.audio, int8.temporal) == \
        (fp32.inputs, fp32.outputs, fp32.frame, fp32.audio, fp32.temporal)
    a, b = fp32.training["eval"], int8.training["eval"]
    assert (a["data"], a["clips"]) == (b["data"], b["clips"]) == ("real-test", 80)
    assert b["gate_off"]["positive"]["miou"] >= a["gate_off"]["positive"]["miou"] - 1.0
    assert b["gate_off"]["global"]["g_fpr"] <= a["gate_off"]["global"]["g_fpr"] + 0.002


@needs_shipped
def test_engines_describes_the_int8_parity_gate_media_and_test_table(capsys):
    """`streamavs engines NAME` states the INT8 engine's parity in the unit it was gated on (share of
    mask pixels, not a max abs difference against a 0.02 tolerance), its media and licences, and
    which table is the engine's own test table."""
    from streamavs.cli import main

    parity = read_manifest(ENGINES / f"{INT8_ENGINE}.json").export["parity"]
    assert main(["engines", INT8_ENGINE]) == 0
    out = capsys.readouterr().out
    share = f"{100 * parity['mask_disagreement']:.2f}% of mask pixels differ (tolerance 2%)"
    assert f"parity       passed against the FP32 engine, ONNX Runtime: {share}" in out
    assert "media        tuxpaint-stamps-default " in out and "GPL-2" in out
    assert "test         the engine on real-test (80 clips; training.eval)" in out
    # what each part learned from: the segmenter's negatives, then the stage's clips
    assert "training     segmenter data: {'kind': 'real'" in out and "'negative_share': 0.3" in out
    assert "temporal stage: {'kind': 'real'" in out and "'train_clips': 1200" in out and "negative share 0.25" in out
    assert "max abs diff" not in out


@needs_shipped
def test_shipped_int8_engine_matches_fp32_on_real_clips_streamed(real_media):
    """Six real-media test clips with negative seconds, streamed with the cache: masks and gate agree."""
    from streamavs.datasets.conditions import NegativeMix
    from streamavs.datasets.real import real_clips
    from streamavs.synthetic import SceneConfig
    from streamavs.training.quantize import compare_engines

    clips = real_clips("test", 6, SceneConfig(image_size=224, state_change_prob=0.3), media=real_media,
                       mix=NegativeMix(share=0.25), seed=5)
    with load_engine(REAL_ENGINE, threads=1) as fp32, load_engine(INT8_ENGINE, threads=1) as int8:
        results = [compare_engines(fp32, int8, list(zip(c["frame"], c["log_mel"]))) for c in map(clips.__getitem__, range(6))]
    disagreement = np.mean([r["mask_disagreement"] for r in results])
    assert disagreement < 0.01, disagreement  # measured: 0.12% of pixels, sounding within 0.012, no gate flips
    assert max(r["max_abs_diff"]["sounding"] for r in results) < 0.05
    assert sum(r["gate_flips"] for r in results) <= 1


@needs_shipped
@pytest.mark.slow
def test_shipped_int8_engine_reproduces_its_recorded_accuracy(tmp_path):
    """`streamavs eval --engine` (torch unimportable) gives the table the manifest records (80 real-test clips)."""
    from test_engine_eval import assert_eval_reproduces_manifest

    assert_eval_reproduces_manifest(ENGINES / f"{INT8_ENGINE}.json", tmp_path)
