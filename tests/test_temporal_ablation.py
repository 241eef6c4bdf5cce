"""The temporal-stage ablation harness and its figure, on tiny untrained models (64x64)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from streamavs.bench.temporal_ablation import (compare, compare_uncertainty, evaluate_streaming, main, operating_points,
                                               select_operating_point)
from streamavs.bench.temporal_targets import target_margins
from streamavs.bench.temporal_figure import find_transition_clip, has_both_transitions, render_temporal_figure
from streamavs.errors import ConfigError, InputError
from streamavs.model.registry import create_model
from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
from streamavs.model.temporal import TemporalConfig, TemporalStage

SPLIT = dict(image_size=64, seconds=4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on the shared 2-core CPU two threads run these tiny models ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Frame-only, attention-only and full checkpoints sharing one random 64x64 avs_lite."""
    root = tmp_path_factory.mktemp("temporal_ckpt")
    torch.manual_seed(0)
    seg = create_model("avs_lite", image_size=64, backbone_pretrained=False)
    paths = {}
    for name, temporal in (("frame_only", None),
                           ("no_uncertainty", TemporalConfig(seg.fused_channels, window=3, dim=16, uncertainty=False)),
                           ("full", TemporalConfig(seg.fused_channels, window=3, dim=16))):
        paths[name] = root / f"{name}.pt"
        stage = TemporalStage(temporal) if temporal is not None else None
        if stage is not None:  # an untrained stage is the identity: give its correction weights
            torch.nn.init.normal_(stage.delta_head.weight, 0.0, 0.5)
        save_streaming_checkpoint(paths[name], StreamingSegmenter(seg, stage), {"note": name})
    return paths


def test_evaluate_streaming_keys_and_ranges(checkpoints):
    frame_only = evaluate_streaming(checkpoints["frame_only"], False, 2, **SPLIT)
    full = evaluate_streaming(checkpoints["full"], True, 2, **SPLIT)
    assert frame_only["temporal_config"] is None and full["temporal_config"]["window"] == 3
    for r in (frame_only, full):
        assert set(r) >= {"temporal", "silenced_by_audio", "robust", "state_silent", "counts", "ms_per_frame",
                          "mean_sounding", "uncertainty"}
        for part in ("transition", "all"):
            u = r["uncertainty"][part]
            assert 0.0 <= u["ece"] <= 1.0 and 0.0 <= u["error_rate"] <= 1.0
            assert u["error_auroc"] is None or 0.0 <= u["error_auroc"] <= 1.0
        assert r["counts"]["frames"] == 8 and sum(r["counts"]["audio"].values()) == 8
        assert sum(r["counts"]["eval"].values()) == 8
        t = r["temporal"]
        assert t["n_started"] + t["n_silenced"] >= 1 and t["n_stable"] > 0
        assert t["miou_started"] is None or 0.0 <= t["miou_started"] <= 100.0
        assert t["fpr_silenced"] is None or 0.0 <= t["fpr_silenced"] <= 1.0
        assert 0.0 <= t["flicker"] <= 1.0
        assert set(r["robust"]) == {"positive", "silence", "noise", "offscreen", "negative", "global"}
        for cond in ("positive", "silence", "noise", "offscreen"):
            res = r["robust"][cond]
            assert res["n"] == r["counts"]["eval"].get(cond, 0)
            if res["n"]:
                assert 0.0 <= res["miou"] <= 100.0 and 0.0 <= res["fpr"] <= 1.0
        g = r["robust"]["global"]
        assert g["g_miou"] is None or 0.0 <= g["g_miou"] <= 100.0
        assert 0.0 <= r["mean_sounding"]["empty_gt"] <= 1.0 and r["ms_per_frame"]["mean"] > 0
    assert frame_only["uncertainty"]["all"]["error_auroc"] in (None, 0.5)  # no uncertainty (zeros): chance
    # Same data for both models; the stages differ in their masks, not in the data.
    assert frame_only["counts"] == full["counts"]
    with pytest.raises(ConfigError, match="no temporal stage"):
        evaluate_streaming(checkpoints["frame_only"], True, 1, **SPLIT)
    with pytest.raises(ConfigError, match="image_size=64"):
        evaluate_streaming(checkpoints["frame_only"], False, 1, image_size=96, seconds=2)


def test_sweep_is_the_operating_curve_of_the_same_stream(checkpoints):
    r = evaluate_streaming(checkpoints["full"], True, 2, **SPLIT, sweep=(0.3, 0.5, 0.7))
    at_half = r["sweep"][1]
    assert at_half["threshold"] == 0.5 and at_half["temporal"] == r["temporal"]  # the main result, cut again
    assert at_half["g_miou"] == r["robust"]["global"]["g_miou"] and at_half["area"] == r["area"]
    areas = [row["area"]["predicted"] for row in r["sweep"]]
    assert areas[0] >= areas[1] >= areas[2] and areas[0] > areas[2]  # a higher threshold marks fewer pixels
    assert len({row["area"]["gt"] for row in r["sweep"]}) == 1


def test_hysteresis_rows_are_the_stream_held_as_the_runtime_holds_it(checkpoints):
    from streamavs.bench.temporal_ablation import run_clip, streaming_test_split
    from streamavs.engine.hysteresis import hysteresis_clip
    from streamavs.metrics import TemporalMeter
    from streamavs.model.streaming import load_streaming

    r = evaluate_streaming(checkpoints["full"], True, 2, **SPLIT, sweep=(0.5,), bands=(0.0, 0.2))
    plain, held = r["sweep"]
    assert (plain["band"], held["band"]) == (0.0, 0.2) and plain["temporal"] == r["temporal"]
    model, _ = load_streaming(checkpoints["full"])
    meters = {band: TemporalMeter(0.5) for band in (0.0, 0.2)}
    for clip in streaming_test_split(2, **SPLIT):
        out = run_clip(model, clip)
        for band, meter in meters.items():
            meter.update(hysteresis_clip(out["prob"], out["sounding"], 0.5, band), clip.gt, clip.started, clip.silenced)
    assert held["temporal"] == pytest.approx(meters[0.2].result())
    assert plain["temporal"] == pytest.approx(meters[0.0].result())
    assert held["temporal"]["flicker"] != plain["temporal"]["flicker"]  # the random stage hovers near 0.5: it shows


def test_an_engine_streams_at_its_manifests_operating_point(tiny_engine, tmp_path):
    import shutil

    from streamavs.bench.temporal_ablation import evaluate_engine_streaming, run_clip_engine, streaming_test_split
    from streamavs.engine import load_engine
    from streamavs.engine.hysteresis import hysteresis_clip
    from streamavs.metrics import TemporalMeter

    data = json.loads(tiny_engine.read_text())
    data["thresholds"].update(mask=0.55, hysteresis=0.2, hysteresis_reset=0.5)
    shutil.copy(tiny_engine.parent / data["model_file"], tmp_path / data["model_file"])
    manifest = tmp_path / tiny_engine.name
    manifest.write_text(json.dumps(data))
    r = evaluate_engine_streaming(manifest, 2, sweep=(0.55, 0.6), bands=(0.0, 0.2), **SPLIT)
    assert r["operating_point"]["mask"] == 0.55 and r["operating_point"]["hysteresis"] == 0.2
    meters = {"held": TemporalMeter(0.55), "plain": TemporalMeter(0.55), "curve": TemporalMeter(0.6)}
    with load_engine(manifest, threads=1) as engine:
        for clip in streaming_test_split(2, **SPLIT):
            out = run_clip_engine(engine, clip)
            meters["held"].update(hysteresis_clip(out["prob"], out["sounding"], 0.55, 0.2, 0.5), clip.gt, clip.started,
                                  clip.silenced)
            meters["plain"].update(out["prob"], clip.gt, clip.started, clip.silenced)
            meters["curve"].update(hysteresis_clip(out["prob"], out["sounding"], 0.6, 0.2, 0.5), clip.gt, clip.started,
                                   clip.silenced)  # every point of the curve with the manifest's reset
    assert r["temporal"] == pytest.approx(meters["held"].result())  # the main row: the manifest's point, held
    assert [(row["threshold"], row["band"]) for row in r["sweep"]] == [(0.55, 0.0), (0.55, 0.2), (0.6, 0.0), (0.6, 0.2)]
    assert r["sweep"][0]["temporal"] == pytest.approx(meters["plain"].result())
    assert r["sweep"][1]["temporal"] == r["temporal"]  # the manifest's point, measured once
    assert r["sweep"][3]["temporal"] == pytest.approx(meters["curve"].result())
    assert r["temporal"]["flicker"] != r["sweep"][0]["temporal"]["flicker"]


def test_operating_points_mark_points_where_every_target_is_met_and_validation_takes_the_steadiest():
    def row(threshold, fpr, miou, flicker, g, band=0.0):
        return {"threshold": threshold, "band": band,
                "temporal": {"fpr_silenced": fpr, "miou_started": miou, "flicker": flicker}, "g_miou": g}

    frame_only = {"temporal": {"fpr_silenced": 0.3, "miou_started": 50.0, "flicker": 0.1}, "robust": {"global": {"g_miou": 70.0}}}
    candidate = {"sweep": [row(0.5, 0.31, 56.0, 0.12, 72.0), row(0.6, 0.25, 52.0, 0.09, 70.5), row(0.7, 0.2, 49.0, 0.07, 68.0)]}
    points = operating_points(candidate, frame_only)
    assert [p["all_met"] for p in points] == [False, True, False]
    assert points[2]["targets"]["miou_started_higher"]["met"] is False and points[2]["targets"]["flicker_lower"]["met"]
    assert operating_points({}, frame_only) == []
    assert select_operating_point(points) == {"threshold": 0.6, "band": 0.0}
    candidate["sweep"].insert(0, row(0.55, 0.28, 53.0, 0.095, 71.0))  # meets every target, higher G-mIoU, flickers more
    assert select_operating_point(operating_points(candidate, frame_only)) == {"threshold": 0.6, "band": 0.0}
    candidate["sweep"].append(row(0.6, 0.25, 51.0, 0.08, 69.8, band=0.1))  # steadier, every target still met
    candidate["sweep"].append(row(0.6, 0.25, 50.0, 0.06, 69.0, band=0.2))  # steadiest, but onsets no better
    assert select_operating_point(operating_points(candidate, frame_only)) == {"threshold": 0.6, "band": 0.1}
    assert select_operating_point(points[::2]) is None
    points = operating_points(candidate, frame_only)
    # balanced: each point's smallest margin (fraction of frame-only's value) is G-mIoU's here:
    # 0.55: (71 - 69.7) / 70; 0.6: (70.5 - 69.7) / 70; 0.6 band 0.1: (69.8 - 69.7) / 70 (steadiest of the three)
    margins = {(p["threshold"], p["band"]): min(target_margins(p["targets"]).values()) for p in points if p["all_met"]}
    assert margins == pytest.approx({(0.55, 0.0): 1.3 / 70, (0.6, 0.0): 0.8 / 70, (0.6, 0.1): 0.1 / 70})
    assert target_margins(points[0]["targets"])["flicker_lower"] == pytest.approx(0.05)  # (0.1 - 0.095) / 0.1
    assert select_operating_point(points, "balanced") == {"threshold": 0.55, "band": 0.0}
    assert select_operating_point([p for p in points if not p["all_met"]], "balanced") is None
    with pytest.raises(InputError, match="flicker, balanced"):
        select_operating_point(points, "onsets")


def test_compare_targets():
    def result(fpr, miou, flicker, g):
        return {"temporal": {"fpr_silenced": fpr, "miou_started": miou, "flicker": flicker},
                "robust": {"global": {"g_miou": g}}}

    base = result(0.30, 50.0, 0.10, 70.0)
    good = compare(result(0.10, 55.0, 0.05, 69.75), base)
    assert all(row["met"] for row in good.values())
    bad = compare(result(0.30, 49.0, 0.20, 69.65), base)  # 0.35 points of G-mIoU lost: over the 0.3 allowed
    assert not any(row["met"] for row in bad.values())
    missing = compare(result(None, 55.0, 0.05, 70.0), base)
    assert missing["fpr_silenced_lower"]["met"] is None and missing["miou_started_higher"]["met"] is True
    # frame-only at zero (no onset found, nothing segmented): the margins stay defined, as the checks do
    zero = result(0.0, 0.0, 0.0, 0.0)
    margins = target_margins(compare(result(0.0, 5.0, 0.0, 0.0), zero))
    assert margins["miou_started_higher"] == math.inf and margins["g_miou_within_target"] == math.inf
    assert target_margins(compare(zero, zero))["miou_started_higher"] == 0.0


def test_compare_uncertainty_targets():
    def result(fpr, miou, auroc):
        return {"temporal": {"fpr_silenced": fpr, "miou_started": miou},
                "uncertainty": {"transition": {"error_auroc": auroc}}}

    ungated = result(0.02, 60.0, None)
    assert all(r["met"] for r in compare_uncertainty(result(0.01, 61.0, 0.85), ungated).values())
    worse = compare_uncertainty(result(0.03, 59.0, 0.79), ungated)
    assert not any(r["met"] for r in worse.values())


def test_cli_writes_strict_json_and_table(checkpoints, tmp_path, capsys):
    out = tmp_path / "ablation.json"
    argv = ["--frame-only", str(checkpoints["frame_only"]), "--no-uncertainty", str(checkpoints["no_uncertainty"]),
            "--full", str(checkpoints["full"]), "--clips", "2", "--seconds", "3", "--image-size", "64",
            "--threads", "1", "--sweep", "0.4,0.6", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert set(report["results"]) == {"frame_only", "no_uncertainty", "full"}
    assert set(report["targets"]["full"]) == {"fpr_silenced_lower", "miou_started_higher", "flicker_lower",
                                              "g_miou_within_target"}
    assert set(report["targets"]["uncertainty"]) == {"fpr_silenced_lower", "miou_started_higher",
                                                     "error_auroc_transition"}
    assert report["command"].startswith("python -m streamavs.bench.temporal_ablation --frame-only")
    assert report["machine"]["cores"] >= 1 and report["torch_threads"] == 1 and report["test_split"]["seconds"] == 3
    assert report["test_split"]["split"] == "test" and report["test_split"]["sweep"] == [0.4, 0.6]
    assert "selected" not in report  # never selected on the test split
    assert {k: [(p["threshold"], p["band"]) for p in v] for k, v in report["operating_points"].items()} == \
        {"full": [(0.4, 0.0), (0.6, 0.0)], "no_uncertainty": [(0.4, 0.0), (0.6, 0.0)]}
    assert set(report["paired"]) == {"full_vs_frame_only", "no_uncertainty_vs_frame_only", "full_vs_no_uncertainty"}
    full, frame_only = report["results"]["full"], report["results"]["frame_only"]
    pair = report["paired"]["full_vs_frame_only"]  # the pair is of the two main rows, every metric defined
    assert all(m["a"] is not None and m["b"] is not None for m in pair.values())
    for name in ("miou_started", "fpr_silenced", "flicker"):
        assert (pair[name]["a"], pair[name]["b"]) == (full["temporal"][name], frame_only["temporal"][name])
    assert pair["g_miou"]["a"] == pytest.approx(full["robust"]["global"]["g_miou"], abs=1e-9)
    assert pair["g_miou"]["b"] == pytest.approx(frame_only["robust"]["global"]["g_miou"], abs=1e-9)
    assert len(full["per_clip"]) == 2 and full["main_row"] == {"threshold": 0.5, "band": 0.0, "reset": 0.2}
    table = capsys.readouterr().out
    for label in ("frame-only", "attention, no uncertainty", "full stage", "g_miou_within_target", "err AUROC tr",
                  "operating curve, full stage", "paired bootstrap over the clips", "full_vs_no_uncertainty"):
        assert label in table


def test_cli_at_moves_the_stage_rows_to_an_operating_point_and_frame_only_stays(checkpoints, tmp_path):
    out = tmp_path / "at.json"
    common = ["--frame-only", str(checkpoints["frame_only"]), "--no-uncertainty", str(checkpoints["no_uncertainty"]),
              "--full", str(checkpoints["full"]), "--clips", "2", "--seconds", "3", "--image-size", "64",
              "--resamples", "50"]
    assert main([*common, "--at", "0.6,0.2", "--sweep", "0.6", "--hysteresis", "0.2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    results = report["results"]
    assert results["frame_only"]["main_row"]["threshold"] == 0.5 and results["frame_only"]["main_row"]["band"] == 0.0
    for key in ("full", "no_uncertainty"):
        assert (results[key]["main_row"]["threshold"], results[key]["main_row"]["band"]) == (0.6, 0.2)
        assert results[key]["temporal"] == results[key]["sweep"][0]["temporal"]  # the same point as the curve's
        assert report["targets"][key]["flicker_lower"]["candidate"] == results[key]["temporal"]["flicker"]
    assert report["test_split"]["stage_point"] == [0.6, 0.2] and report["paired_resamples"] == 50
    assert main([*common, "--resamples", "0", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["paired"] == {}


def test_cli_selects_an_operating_point_on_validation_only(checkpoints, tiny_engine, tmp_path):
    out = tmp_path / "val.json"
    assert main(["--frame-only", str(checkpoints["frame_only"]), "--full", str(checkpoints["full"]), "--split", "val",
                 "--engine", str(tiny_engine),
                 "--sweep", "0.3,0.5,0.7", "--hysteresis", "0,0.2", "--clips", "1", "--seconds", "3",
                 "--image-size", "64", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["test_split"]["split"] == "val" and "train types" in report["test_split"]["negatives"]
    assert report["test_split"]["hysteresis"] == [0.0, 0.2]
    assert set(report["targets"]) == {"full", "engine"} and set(report["selected"]) == {"full", "engine"}
    assert report["results"]["engine"]["operating_point"]["mask"] == json.loads(tiny_engine.read_text())["thresholds"]["mask"]
    sweep = report["results"]["full"]["sweep"]
    assert [(r["threshold"], r["band"]) for r in sweep] == [(t, b) for t in (0.3, 0.5, 0.7) for b in (0.0, 0.2)]
    assert sweep[2]["temporal"] == report["results"]["full"]["temporal"]  # (0.5, no band) is the main row
    points = report["operating_points"]["full"]
    assert [(p["threshold"], p["band"], p["flicker"]) for p in points] == [
        (r["threshold"], r["band"], r["temporal"]["flicker"]) for r in sweep]  # every swept point, compared
    assert all(p["all_met"] == all(t["met"] for t in p["targets"].values()) for p in points)
    # Tiny checkpoints rarely beat frame-only on all four targets, so which point wins is checked with
    # known answers in test_operating_points_mark_points_where_every_target_is_met_and_validation_takes_
    # the_steadiest; here: the report holds that rule's pick of these points.
    assert report["selection_rule"] == "flicker"
    assert report["selected"] == {k: select_operating_point(report["operating_points"][k], "flicker")
                                  for k in ("full", "engine")}


@pytest.mark.parametrize("flag, value", [("--sweep", "0.5,1.5"), ("--sweep", "half"), ("--sweep", ","),
                                         ("--hysteresis", "0,0.5"), ("--hysteresis", "wide"), ("--at", "0.7"),
                                         ("--at", "0.7,0.6"), ("--at", "1.2,0.1")])
def test_cli_rejects_bad_sweep_thresholds_and_bands(checkpoints, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--frame-only", str(checkpoints["frame_only"]), "--full", str(checkpoints["full"]), flag, value])
    assert exit_info.value.code == 2 and f"argument {flag}:" in capsys.readouterr().err  # not just the usage line


@pytest.mark.slow  # ~3.3 s: two figures drawn
def test_figure_is_written(checkpoints, tmp_path):
    import matplotlib.image

    clip = find_transition_clip(0, **SPLIT)
    assert has_both_transitions(clip)
    info = render_temporal_figure(checkpoints["frame_only"], checkpoints["full"], tmp_path / "fig.png", clip)
    low = render_temporal_figure(checkpoints["frame_only"], checkpoints["full"], tmp_path / "low.png", clip,
                                 full_threshold=0.7)
    assert info["thresholds"] == {"frame_only": 0.5, "full": 0.5} and low["thresholds"] == {"frame_only": 0.5, "full": 0.7}
    held = render_temporal_figure(checkpoints["frame_only"], checkpoints["full"], tmp_path / "held.png", clip,
                                  full_threshold=0.7, full_hysteresis=0.3)
    assert held["hysteresis"] == 0.3 and low["hysteresis"] == 0.0
    assert held["mask_pixels"]["full"] != low["mask_pixels"]["full"]  # the band changes what the full row draws
    assert low["mask_pixels"]["frame_only"] == info["mask_pixels"]["frame_only"]  # only the full row is cut higher
    assert 0 < low["mask_pixels"]["full"] < info["mask_pixels"]["full"]
    png = matplotlib.image.imread(info["path"])
    assert png.ndim == 3 and png.shape[1] > png.shape[0] > 200  # 4 rows, 4 columns + colour bar
    assert "started" in info["state"] and "stopped" in info["state"] and info["clip_index"] == clip.index
    assert len(info["sounding_full"]) == 4 and all(0.0 <= s <= 1.0 for s in info["sounding_full"])
    assert not math.isnan(info["sounding_frame_only"][0])


def test_fpr_just_after_silence_is_split_by_the_audio_played_then():
    """Each part is the mean over its frames of the share of pixels above the threshold (GT empty
    there), and the parts, weighted by frames, give the temporal meter's fpr_silenced."""
    from streamavs.bench.operating_curve import OperatingPoint
    from streamavs.datasets.streaming import streaming_test_split

    point, expected = OperatingPoint(0.6), {}
    rng = np.random.default_rng(0)
    for clip in streaming_test_split(6, image_size=64, seconds=6, negative_second_share=0.5):
        prob = rng.random(clip.gt.shape).astype(np.float32) ** 3  # a different share of pixels above 0.6 per frame
        point.update(prob, clip)
        for t in np.flatnonzero(clip.silenced):
            expected.setdefault(clip.audio[t], []).append(float((prob[t] > 0.6).mean()))
    parts = point.silenced_by_audio()
    assert len(parts) >= 2, "the clips drawn should silence under at least two kinds of audio"
    assert {a: p["frames"] for a, p in parts.items()} == {a: len(v) for a, v in expected.items()}
    for audio, values in expected.items():
        assert parts[audio]["fpr_silenced"] == pytest.approx(np.mean(values), abs=1e-9)
    temporal = point.temporal.result()
    assert sum(p["frames"] for p in parts.values()) == temporal["n_silenced"]
    weighted = sum(p["fpr_silenced"] * p["frames"] for p in parts.values()) / temporal["n_silenced"]
    assert weighted == pytest.approx(temporal["fpr_silenced"], abs=1e-12)
