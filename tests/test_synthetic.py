"""The procedural audio-visual benchmark: determinism, ground truth, audio, disk layout, CLI."""

from __future__ import annotations

import csv
import json
import re
import wave

import cv2
import numpy as np
import pytest

from streamavs.audio import LogMel
from streamavs.cli import main
from streamavs.errors import ConfigError, InputError
from streamavs.synthetic import (
    CLASSES, GROUPS, SceneConfig, classes_outside_group, generate_clip, split_seed, synth_sound, write_avsbench,
)

SMALL = SceneConfig(image_size=64, seconds=3)
SMALL_MULTI = SceneConfig(image_size=64, seconds=3, setting="multi")


def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=0))


def test_class_table_has_groups_and_distinct_looks():
    assert len(CLASSES) >= 8 and len(GROUPS) >= 3
    assert [c.id for c in CLASSES] == list(range(len(CLASSES)))
    assert {c.group for c in CLASSES} == set(GROUPS)
    assert len({c.shape for c in CLASSES}) == len(CLASSES)
    colours = np.array([c.colour for c in CLASSES], dtype=float)
    dist = np.linalg.norm(colours[:, None] - colours[None], axis=-1) + np.eye(len(CLASSES)) * 1e9
    assert dist.min() > 40  # no two base colours alike
    outside = classes_outside_group("music")
    assert outside and all(c.group != "music" for c in outside)
    assert len(outside) == sum(c.group != "music" for c in CLASSES)
    with pytest.raises(InputError, match="valid groups: music, voice"):
        classes_outside_group("noise")


def test_same_seed_same_bytes_different_seed_differs():
    a, b, c = generate_clip(7, SMALL_MULTI), generate_clip(7, SMALL_MULTI), generate_clip(8, SMALL_MULTI)
    for name in ("frames", "audio", "masks", "object_masks", "sounding", "class_ids", "is_source"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.frames.tobytes() != c.frames.tobytes()
    assert a.audio.tobytes() != c.audio.tobytes()


def test_shapes_and_dtypes():
    clip = generate_clip(3, SMALL_MULTI)
    n = clip.n_objects
    assert clip.frames.shape == (3, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (3 * 16000, 2) and clip.audio.dtype == np.float32
    assert np.abs(clip.audio).max() <= 1.0 and np.abs(clip.audio).max() > 0.01
    assert clip.masks.shape == (3, 64, 64) and clip.masks.dtype == bool
    assert clip.object_masks.shape == (3, n, 64, 64) and clip.object_masks.dtype == bool
    assert clip.sounding.shape == (3, n) and clip.sounding.dtype == bool
    assert clip.class_ids.shape == (n,) and clip.centres.shape == (3, n, 2)
    assert len(set(clip.class_ids.tolist())) == n  # every object has its own class


def test_masks_are_union_of_sounding_visible_objects():
    for seed in range(6):
        clip = generate_clip(seed, SceneConfig(image_size=64, seconds=3, setting="multi", state_change_prob=0.5))
        expected = (clip.object_masks & clip.sounding[:, :, None, None]).any(axis=1)
        np.testing.assert_array_equal(clip.masks, expected)
        # visible masks never overlap (occlusion resolved), sources are visible
        assert clip.object_masks.sum(axis=1).max() <= 1
        assert (clip.object_masks[:, clip.is_source].sum(axis=(2, 3)) > 20).all()
        for t in range(clip.seconds):
            heard = clip.sounding_class_ids(t)
            assert heard == sorted(clip.class_ids[clip.sounding[t]].tolist())


def test_single_and_multi_source_counts():
    n_distracted = 0
    for seed in range(20):
        single = generate_clip(seed, SMALL)
        assert single.is_source.sum() == 1
        assert (single.sounding.sum(axis=1) == 1).all()
        assert single.n_objects <= 1 + SMALL.max_distractors
        n_distracted += single.n_objects > 1
        multi = generate_clip(seed, SMALL_MULTI)
        assert 2 <= multi.is_source.sum() <= 3
        assert (multi.sounding.sum(axis=1) == multi.is_source.sum()).all()
        assert (~multi.sounding[:, ~multi.is_source]).all()  # distractors stay silent
    assert 4 <= n_distracted <= 16  # default share 0.5 of 20 clips
    none = SceneConfig(image_size=64, seconds=2, distractor_share=0.0)
    assert all(generate_clip(s, none).n_objects == 1 for s in range(10))


def test_state_changes_only_when_probability_is_positive():
    flips = 0
    for seed in range(10):
        clip = generate_clip(seed, SceneConfig(image_size=64, seconds=5, state_change_prob=0.4, stereo=False))
        states = clip.sounding[:, clip.is_source][:, 0]  # (T,)
        flips += int(np.sum(states[1:] != states[:-1]))
        level = _rms(clip.audio.reshape(5, 16000, 2)[:, :, 0].T)  # (T,) per-second RMS
        assert (level[~states] == 0).all()  # a silent source is exactly silent (no ambient floor)
        assert (level[states] > 1e-3).all()
    assert flips >= 5
    for seed in range(10):
        clip = generate_clip(seed, SceneConfig(image_size=64, seconds=5, setting="multi"))
        assert clip.sounding[:, clip.is_source].all()


def test_stereo_pans_by_horizontal_centre():
    checked = 0
    for seed in range(40):
        clip = generate_clip(seed, SceneConfig(image_size=64, seconds=2, distractor_share=0.0))
        cx = clip.centres[:, 0, 0].mean() / 64
        left, right = _rms(clip.audio)
        if cx < 0.35:
            assert left > 1.5 * right
            checked += 1
        elif cx > 0.65:
            assert right > 1.5 * left
            checked += 1
        ratio = right / left
        assert ratio == pytest.approx(cx / (1 - cx), rel=0.15)  # gains 1 - alpha and alpha
    assert checked >= 5
    mono = generate_clip(1, SceneConfig(image_size=64, seconds=2, stereo=False))
    np.testing.assert_array_equal(mono.audio[:, 0], mono.audio[:, 1])


def test_ambient_floor_fills_silent_seconds():
    cfg = SceneConfig(image_size=64, seconds=4, state_change_prob=1.0, ambient_dbfs=-50.0, stereo=False)
    clip = generate_clip(2, cfg)
    states = clip.sounding[:, clip.is_source][:, 0]
    assert (~states).any()
    level = 20 * np.log10(_rms(clip.audio.reshape(4, 16000, 2)[:, :, 0].T))  # (T,) dBFS
    assert level[~states] == pytest.approx(np.full((~states).sum(), -50.0), abs=2.0)


def test_synth_sound_is_deterministic_and_classes_separate_in_log_mel():
    x = synth_sound(4, np.random.default_rng(0), 1.5)
    assert x.shape == (24000,) and x.dtype == np.float32
    np.testing.assert_array_equal(x, synth_sound(4, np.random.default_rng(0), 1.5))
    logmel = LogMel()
    feats, labels = [], []
    for cls in CLASSES:
        for s in range(20):  # 10 to fit, 10 to classify per class
            example = logmel.examples_per_second(synth_sound(cls.id, np.random.default_rng(100 + s), 1.0), 1)[0]
            feats.append(np.concatenate([example.mean(0), example.std(0)]))  # (128,)
            labels.append(cls.id)
    feats, labels = np.array(feats), np.array(labels)
    train = np.arange(len(labels)) % 2 == 0
    centroids = np.stack([feats[train & (labels == k)].mean(0) for k in range(len(CLASSES))])
    pred = np.linalg.norm(feats[~train][:, None] - centroids[None], axis=-1).argmin(1)
    assert (pred == labels[~train]).mean() >= 0.85  # measured 0.91 (91 of 100); chance is 0.10
    with pytest.raises(InputError, match="class_id must be in 0..9"):
        synth_sound(len(CLASSES), np.random.default_rng(0), 1.0)


def test_split_seeds_are_disjoint():
    seeds = {s: {split_seed(s, i) for i in (0, 1, 5000, 999_999_999)} for s in ("train", "val", "test")}
    assert not (seeds["train"] & seeds["val"]) and not (seeds["val"] & seeds["test"]) and not (seeds["train"] & seeds["test"])
    with pytest.raises(InputError, match="valid splits: train, val, test"):
        split_seed("dev", 0)
    with pytest.raises(InputError, match="clip index"):
        split_seed("train", -1)


def test_config_validation_messages():
    with pytest.raises(ConfigError, match="setting must be one of single, multi"):
        SceneConfig(setting="stereo")
    with pytest.raises(ConfigError, match=r"state_change_prob must be a probability in \[0, 1\], got 1.5"):
        SceneConfig(state_change_prob=1.5)
    with pytest.raises(ConfigError, match="image_size must be an integer >= 32"):
        SceneConfig(image_size=16)
    with pytest.raises(ConfigError, match="ambient_dbfs must be None"):
        SceneConfig(ambient_dbfs=3.0)
    cfg = SceneConfig(setting="multi", ambient_dbfs=-60.0)
    assert SceneConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def _wav_params(path):
    with wave.open(str(path), "rb") as handle:
        return handle.getframerate(), handle.getnchannels(), handle.getsampwidth(), handle.getnframes()


def test_write_avsbench_layout(tmp_path):
    single = SceneConfig(image_size=48, seconds=2)
    names = write_avsbench(tmp_path, "train", 2, single, progress=False)
    assert names == ["synth_train_0000000", "synth_train_0000001"]
    s4 = tmp_path / "Single-source"
    rows = list(csv.reader(open(s4 / "s4_meta_data.csv", newline="")))
    assert rows[0] == ["name", "start_time", "category", "split"] and len(rows) == 3
    for name, _, category, split in rows[1:]:
        clip = generate_clip(split_seed("train", int(name[-7:])), single)
        assert category == clip.category
        wav = s4 / "s4_data" / "audio_wav" / split / category / f"{name}.wav"
        assert _wav_params(wav) == (16000, 2, 2, 32000)
        for k in (1, 2):
            frame = cv2.imread(str(s4 / "s4_data" / "visual_frames" / split / category / name / f"{name}_{k}.png"))
            np.testing.assert_array_equal(frame[..., ::-1], clip.frames[k - 1])  # BGR on disk, RGB in memory
            mask = cv2.imread(str(s4 / "s4_data" / "gt_masks" / split / category / name / f"{name}_{k}.png"), cv2.IMREAD_UNCHANGED)
            assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 255}
            np.testing.assert_array_equal(mask == 255, clip.masks[k - 1])
    write_avsbench(tmp_path, "train", 2, single, first_index=1, progress=False)  # appends one new clip
    rows = list(csv.reader(open(s4 / "s4_meta_data.csv", newline="")))
    assert [r[0] for r in rows[1:]] == ["synth_train_0000000", "synth_train_0000001", "synth_train_0000002"]

    multi = SceneConfig(image_size=48, seconds=2, setting="multi")
    (name,) = write_avsbench(tmp_path, "val", 1, multi, progress=False)
    ms3 = tmp_path / "Multi-sources"
    assert list(csv.reader(open(ms3 / "ms3_meta_data.csv", newline=""))) == [["name", "split"], [name, "val"]]
    assert _wav_params(ms3 / "ms3_data" / "audio_wav" / "val" / f"{name}.wav") == (16000, 2, 2, 32000)
    for k in (1, 2):
        assert cv2.imread(str(ms3 / "ms3_data" / "visual_frames" / name / f"{name}.mp4_{k}.png")).shape == (48, 48, 3)
        assert cv2.imread(str(ms3 / "ms3_data" / "gt_masks" / "val" / name / f"{name}_{k}.png")).shape[:2] == (48, 48)
    info = json.loads((tmp_path / "synthetic_info.json").read_text())
    assert [r["setting"] for r in info["runs"]] == ["single", "single", "multi"]
    assert info["runs"][2]["seeds"] == [split_seed("val", 0)] and len(info["classes"]) == len(CLASSES)
    record = json.loads((ms3 / "synthetic_clips.jsonl").read_text().splitlines()[0])
    assert record["name"] == name and len(record["sounding"]) == 2


def test_cli_synth_and_inspect(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "synth", "--out", str(out), "--count", "2", "--image-size", "48", "--seconds", "2"]) == 0
    assert main(["data", "synth", "--out", str(out), "--setting", "multi", "--split", "test", "--count", "2",
                 "--image-size", "48", "--seconds", "2", "--state-change-prob", "0.4"]) == 0
    png = tmp_path / "overview.png"
    capsys.readouterr()
    assert main(["data", "inspect", str(out), "--out", str(png), "--n", "2"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"single\s+train\s+2 clips", printed) and re.search(r"multi\s+test\s+2 clips", printed)
    picture = cv2.imread(str(png))
    assert picture is not None and picture.shape[0] > 300
    assert main(["data", "synth", "--out", str(out), "--setting", "both"]) == 2
    assert "setting must be one of single, multi" in capsys.readouterr().err
    assert main(["data", "inspect", str(tmp_path / "empty")]) == 2
    assert "streamavs data synth --out DIR" in capsys.readouterr().err
