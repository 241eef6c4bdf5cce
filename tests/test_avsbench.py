"""AVSBench S4 / MS3 loader on a miniature tree of real PNG, WAV and pickle files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
soundfile = pytest.importorskip("soundfile")

from streamavs.errors import ConfigError, DataError  # noqa: E402
from streamavs.datasets.negatives import fit_length  # noqa: E402
from streamavs.training.avsbench import AVSBench, collate  # noqa: E402

S4 = [  # name, category, split
    ("vidA", "dog_barking", "train"),
    ("vidB", "playing_piano", "train"),
    ("vidC", "male_speech", "test"),
]
MS3 = [("msA", "train"), ("msB", "train"), ("msC", "test")]
TONES = (300.0, 600.0, 1200.0, 2400.0, 4800.0)  # Hz, one per second: the log-mel peak must follow them
FRAME_HW = (48, 80)  # written frames are not square: the loader resizes without keeping the aspect


def _write_frame(path: Path, video: int, second: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((*FRAME_HW, 3), np.uint8)
    img[:, :, 2] = 200  # BGR on disk: red in RGB
    img[:, :, 1] = 10 * video + second  # encodes (video, second) in green
    assert cv2.imwrite(str(path), img)


def _write_mask(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(FRAME_HW, np.uint8)
    m[:, : FRAME_HW[1] // 2] = 255  # left half is the object
    assert cv2.imwrite(str(path), m)


def _write_wav(path: Path, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(rate) / rate
    mono = np.concatenate([0.3 * np.sin(2 * np.pi * f * t) for f in TONES])  # 5 s
    soundfile.write(str(path), np.stack([mono, 0.5 * mono], axis=1), rate)  # stereo


def _write_pickle(path: Path, value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(torch.full((5, 1, 96, 64), value), fh)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("avsbench")
    s4 = root / "Single-source" / "s4_data"
    rows = ["name,start_time,category,split"] + [f"{n},0,{c},{s}" for n, c, s in S4]
    (root / "Single-source").mkdir()
    (root / "Single-source" / "s4_meta_data.csv").write_text("\n".join(rows) + "\n")
    for i, (name, cat, split) in enumerate(S4):
        _write_wav(s4 / "audio_wav" / split / cat / f"{name}.wav", 44100)
        _write_pickle(s4 / "audio_log_mel" / split / cat / f"{name}.pkl", float(i))
        for k in range(1, 6):
            _write_frame(s4 / "visual_frames" / split / cat / name / f"{name}_{k}.png", i, k - 1)
            if split != "train" or k == 1:
                _write_mask(s4 / "gt_masks" / split / cat / name / f"{name}_{k}.png")
    ms3 = root / "Multi-sources" / "ms3_data"
    (root / "Multi-sources").mkdir()
    (root / "Multi-sources" / "ms3_meta_data.csv").write_text("name,split\n" + "".join(f"{n},{s}\n" for n, s in MS3))
    (root / "avss_metadata.csv").write_text("vid,a_obj,split,label\nmsA,guitar_man,train,v1m\nmsB,dog_background,train,v1m\n")
    for i, (name, split) in enumerate(MS3):
        _write_wav(ms3 / "audio_wav" / split / f"{name}.wav", 22050)
        _write_pickle(ms3 / "audio_log_mel" / split / f"{name}.pkl", 10.0 + i)
        for k in range(1, 6):
            _write_frame(ms3 / "visual_frames" / name / f"{name}.mp4_{k}.png", i, k - 1)
            _write_mask(ms3 / "gt_masks" / split / name / f"{name}_{k}.png")
    return root


def _peak_band(log_mel: np.ndarray) -> int:
    return int(np.argmax(log_mel.mean(axis=0)))


def test_s4_train_frames_use_mask_one_only(root):
    ds = AVSBench(root, "s4", "train", image_size=64)
    assert len(ds) == 2 and ds.num_videos == 2  # one (video, second 0) per video
    s = ds[1]
    assert (s["name"], s["category"], s["second"], s["label"], s["condition"]) == ("vidB", "playing_piano", 0, 1, "positive")
    assert s["frame"].shape == (64, 64, 3) and s["frame"].dtype == np.uint8
    assert s["frame"][0, 0, 0] == 200 and s["frame"][0, 0, 2] == 0 and s["frame"][0, 0, 1] == 10  # RGB, video 1 second 0
    assert s["mask"].shape == (64, 64) and s["mask"].dtype == np.uint8 and set(np.unique(s["mask"])) == {0, 1}
    assert s["mask"][:, :32].all() and not s["mask"][:, 32:].any()  # left half after resize
    np.testing.assert_array_equal(s["mask"], s["eval_mask"])
    assert s["log_mel"].shape == (96, 64) and s["log_mel"].dtype == np.float32
    assert ds.visible_groups(0) == ("animal",) and ds.visible_groups(1) == ("music",)


def test_s4_test_frames_audio_follows_each_second(root):
    ds = AVSBench(root, "s4", "test", image_size=224)
    assert len(ds) == 5
    samples = [ds[i] for i in range(5)]
    assert [s["second"] for s in samples] == [0, 1, 2, 3, 4]
    assert samples[0]["frame"].shape == (224, 224, 3)
    assert [int(s["frame"][5, 5, 1]) for s in samples] == [20, 21, 22, 23, 24]  # the right PNG per second
    bands = [_peak_band(s["log_mel"]) for s in samples]
    assert bands == sorted(bands) and len(set(bands)) == 5  # 44.1 kHz stereo resampled, tones rise


def test_s4_clip_mode_marks_missing_train_masks(root):
    ds = AVSBench(root, "s4", "train", per="clip", image_size=32)
    assert len(ds) == 2
    c = ds[0]
    assert c["frame"].shape == (5, 32, 32, 3) and c["log_mel"].shape == (5, 96, 64) and c["mask"].shape == (5, 32, 32)
    assert c["mask_valid"].tolist() == [True, False, False, False, False]
    assert c["mask"][0].any() and not c["mask"][1:].any()
    assert c["condition"] == ["positive"] * 5 and c["label"].tolist() == [1] * 5


def test_pickle_option_reads_vggish_tensors(root):
    ds = AVSBench(root, "s4", "test", audio="pickle", image_size=32)
    np.testing.assert_array_equal(ds[3]["log_mel"], np.full((96, 64), 2.0, np.float32))  # vidC is video 2
    with pytest.raises(ConfigError, match="audio='wav'"):
        ds.build(0, np.zeros(80000, np.float32), "silence")


def test_ms3_layout_labels_and_negative_build(root):
    ds = AVSBench(root, "ms3", "train", image_size=32, ms3_labels=root / "avss_metadata.csv")
    assert len(ds) == 10  # MS3 train has all 5 masks
    s = ds[7]  # msB, second 2
    assert (s["name"], s["second"], s["category"]) == ("msB", 2, "dog_background")
    assert int(s["frame"][0, 0, 1]) == 12
    assert ds.visible_groups(0) == ("human", "music") and ds.visible_groups(1) == ("animal",)  # background ignored
    bands = [_peak_band(ds[i]["log_mel"]) for i in range(5)]
    assert bands == sorted(bands) and len(set(bands)) == 5  # 22.05 kHz stereo resampled
    neg = ds.build(7, np.zeros(80000, np.float32), "silence")
    assert neg["label"] == 0 and neg["condition"] == "silence" and not neg["mask"].any()
    np.testing.assert_array_equal(neg["eval_mask"], s["mask"])
    np.testing.assert_allclose(neg["log_mel"], np.log(0.01), atol=1e-6)
    bank = ds.offscreen_bank()
    assert [k for k, _ in bank.candidates(ds.visible_groups(1), exclude="msB")] == []  # music+human: forbidden for animal
    assert bank.candidates(ds.visible_groups(0), exclude="msA") == [("msB", ("animal",))]  # animal behind people and music
    drawn = bank.draw(ds.visible_groups(0), np.random.default_rng(0), 5.0, exclude="msA")
    assert (drawn.key, drawn.groups) == ("msB", ("animal",))
    np.testing.assert_array_equal(drawn.waveform, fit_length(ds.waveform(1), 80000))  # msB's own WAV
    unlabeled = AVSBench(root, "ms3", "test", image_size=32)
    with pytest.raises(DataError, match="ms3_labels"):
        unlabeled.visible_groups(0)


def test_missing_data_errors_name_the_path(root, tmp_path):
    with pytest.raises(DataError, match=r"s4_meta_data\.csv.*AVSBench project page"):
        AVSBench(tmp_path, "s4", "train")
    broken = tmp_path / "broken"
    (broken / "Multi-sources" / "ms3_data").mkdir(parents=True)
    (broken / "Multi-sources" / "ms3_meta_data.csv").write_text("name,split\nmsX,val\n")
    with pytest.raises(DataError, match=r"11 expected files are missing, e\.g\. .*msX\.wav"):
        AVSBench(broken, "ms3", "val")
    with pytest.raises(DataError, match="lists no videos of split 'test'"):
        AVSBench(broken, "ms3", "test")
    with pytest.raises(ConfigError, match="per must be one of"):
        AVSBench(root, "s4", "train", per="video")


def test_collate_shapes_and_dtypes(root):
    frames = AVSBench(root, "s4", "test", image_size=32)
    b = collate([frames[i] for i in range(3)])
    assert b["frame"].shape == (3, 3, 32, 32) and b["frame"].dtype == torch.float32
    assert 0.0 <= float(b["frame"].min()) and float(b["frame"].max()) <= 1.0
    assert abs(float(b["frame"][0, 0, 0, 0]) - 200 / 255) < 1e-6  # channel 0 is R
    assert b["log_mel"].shape == (3, 1, 96, 64) and b["log_mel"].dtype == torch.float32
    assert b["mask"].shape == (3, 1, 32, 32) and b["mask"].dtype == torch.float32
    assert b["eval_mask"].shape == (3, 1, 32, 32)
    assert b["label"].dtype == torch.float32 and b["label"].tolist() == [1.0, 1.0, 1.0]
    assert b["second"].tolist() == [0, 1, 2] and b["condition"] == ["positive"] * 3 and b["name"] == ["vidC"] * 3
    clips = AVSBench(root, "s4", "train", per="clip", image_size=32)
    c = collate([clips[0], clips[1]])
    assert c["frame"].shape == (2, 5, 3, 32, 32) and c["log_mel"].shape == (2, 5, 1, 96, 64)
    assert c["mask"].shape == (2, 5, 1, 32, 32) and c["label"].shape == (2, 5)
    assert c["mask_valid"].dtype == torch.bool and c["mask_valid"][:, 0].all()
