"""The four-condition test set and the training negative sampler, over the synthetic datasets."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from streamavs.datasets.conditions import (
    CONDITIONS, NegativeMix, NegativeTraining, RobustTestSet, assign_conditions, splice_seconds,
)
from streamavs.datasets.negatives import FORBIDDEN_OFFSCREEN, NoiseConfig, canonical_group
from streamavs.datasets.synthetic import SyntheticClips, SyntheticFrames, synthetic_test_set
from streamavs.synthetic import SceneConfig

SMALL = SceneConfig(image_size=32, seconds=2)
FLOOR = np.log(0.01)


@pytest.mark.parametrize("n", [4, 8, 10, 13, 101])
def test_assignment_is_balanced_and_deterministic(n):
    conds = assign_conditions(n, seed=3)
    counts = Counter(conds)
    assert set(counts) <= set(CONDITIONS) and sum(counts.values()) == n
    assert max(counts.values()) - min(counts[c] for c in CONDITIONS) <= 1
    if n % 4 == 0:
        assert all(counts[c] == n // 4 for c in CONDITIONS)
    assert assign_conditions(n, seed=3) == conds
    assert assign_conditions(101, seed=4) != assign_conditions(101, seed=3)


def test_robust_test_set_frames():
    ts = RobustTestSet(SyntheticFrames("test", 8, SMALL), seed=1)
    assert Counter(ts.conditions) == {c: 2 for c in CONDITIONS}
    again = RobustTestSet(SyntheticFrames("test", 8, SMALL), seed=1)
    clean = SyntheticFrames("test", 8, SMALL)
    for i in range(len(ts)):
        s, s2, ref = ts[i], again[i], clean[i]
        video = i // SMALL.seconds
        assert s["condition"] == ts.conditions[video]
        np.testing.assert_array_equal(s["log_mel"], s2["log_mel"])  # deterministic negatives
        np.testing.assert_array_equal(s["eval_mask"], ref["mask"])  # original object mask kept for eval
        if s["condition"] == "positive":
            np.testing.assert_array_equal(s["log_mel"], ref["log_mel"])
            continue
        assert s["label"] == 0 and not s["mask"].any()
        assert not np.array_equal(s["log_mel"], ref["log_mel"])
        if s["condition"] == "silence":
            np.testing.assert_allclose(s["log_mel"], FLOOR, atol=1e-6)
        if s["condition"] == "offscreen":
            record = ts.negative(video)[1]
            visible = {canonical_group(g) for g in ts.dataset.visible_groups(video)}
            for g in map(canonical_group, record["source_groups"]):
                assert g not in visible and all((v, g) not in FORBIDDEN_OFFSCREEN for v in visible)


def test_offscreen_swaps_keep_balance_on_crowded_scenes():
    crowded = SceneConfig(image_size=32, seconds=1, setting="multi", multi_sources=(3, 3), max_distractors=4)
    ts = synthetic_test_set("test", 12, crowded, seed=0)
    assert Counter(ts.conditions) == {c: 3 for c in CONDITIONS}
    for v, c in enumerate(ts.conditions):
        if c == "offscreen":
            assert ts.bank.candidates(ts.dataset.visible_groups(v), exclude=ts.dataset.video_key(v))


def test_clip_test_set_gives_one_condition_per_clip():
    ts = synthetic_test_set("val", 4, SMALL, per="clip", seed=2)
    for v in range(4):
        c = ts[v]
        assert c["condition"] == [ts.conditions[v]] * SMALL.seconds
        if ts.conditions[v] != "positive":
            assert c["label"].tolist() == [0, 0] and not c["mask"].any() and not c["sounding"].any()


def test_training_negative_share_is_ten_percent():
    mix = NegativeMix(silence=1.0, offscreen=0.0, noise=0.0)  # silence: drawing is free, so many draws are cheap
    wrapper = NegativeTraining(SyntheticFrames("train", 10000, SMALL), mix, seed=0)
    conds = [wrapper.draw(i)[0][0] for i in range(20000)]
    assert abs(conds.count("silence") / len(conds) - 0.10) < 0.01
    wrapper.set_epoch(1)
    assert [wrapper.draw(i)[0][0] for i in range(2000)] != conds[:2000]  # fresh negatives per epoch
    wrapper.set_epoch(0)
    assert [wrapper.draw(i)[0][0] for i in range(2000)] == conds[:2000]  # and reproducible


def test_mix_probabilities():
    p = NegativeMix.paper().probabilities()
    assert p == pytest.approx({"positive": 0.9, "silence": 0.05, "offscreen": 0.05, "noise": 0.0})
    assert NegativeMix().probabilities()["noise"] == pytest.approx(0.1 / 3)


def test_training_noise_uses_train_types_only():
    noise = NoiseConfig()
    mix = NegativeMix(share=1.0, silence=0.0, offscreen=0.0, noise=1.0)
    wrapper = NegativeTraining(SyntheticFrames("train", 200, SceneConfig(image_size=32, seconds=1)), mix, noise)
    types = Counter(wrapper.draw(i)[2]["noise_type"] for i in range(200))
    assert set(types) == set(noise.train_types)  # every train type, never "hum" or "rain"


def test_training_frames_negative_sample():
    ds = SyntheticFrames("train", 6, SMALL)
    wrapper = NegativeTraining(ds, NegativeMix(share=0.5), seed=5)
    seen = set()
    for i in range(len(ds)):
        conds, _, _ = wrapper.draw(i)
        s = wrapper[i]
        assert s["condition"] == conds[0]
        if conds[0] != "positive":
            seen.add(conds[0])
            assert s["label"] == 0 and not s["mask"].any() and s["eval_mask"].any()
    assert seen  # at share 0.5 over 12 samples some are negative


def test_clip_negatives_are_spliced_per_second():
    cfg = SceneConfig(image_size=32, seconds=5)
    clips = SyntheticClips("train", 3, cfg)
    wrapper = NegativeTraining(clips, NegativeMix(share=0.5, silence=1.0, offscreen=0.0, noise=0.0), seed=1)
    mixed = 0
    for i in range(3):
        c, ref = wrapper[i], clips.build(i)
        neg = np.array([x != "positive" for x in c["condition"]])
        mixed += int(neg.any() and not neg.all())
        np.testing.assert_array_equal(c["log_mel"][~neg], ref["log_mel"][~neg])  # untouched seconds unchanged
        np.testing.assert_allclose(c["log_mel"][neg], FLOOR, atol=1e-6)
        assert not c["mask"][neg].any() and not c["sounding"][neg].any() and (c["label"][neg] == 0).all()
        np.testing.assert_array_equal(c["eval_mask"], ref["mask"])
    assert mixed >= 1  # some clip switches between positive and negative seconds


def test_splice_seconds_exact():
    pos, neg = np.ones(48000, np.float32), np.zeros(48000, np.float32)
    out = splice_seconds(pos, neg, np.array([False, True, False]))
    assert out[:16000].all() and not out[16000:32000].any() and out[32000:].all() and pos.all()


def test_synthetic_frames_match_the_front_end():
    from streamavs.audio import LogMel, prepare_waveform
    from streamavs.synthetic import generate_clip, split_seed

    ds = SyntheticFrames("val", 2, SMALL)
    clip = generate_clip(split_seed("val", 1), SMALL)
    s = ds[3]  # clip 1, second 1
    wave = prepare_waveform(clip.audio, clip.sample_rate)  # stereo downmixed
    np.testing.assert_array_equal(s["log_mel"], LogMel().example_ending_at(wave, 2 * 16000))
    np.testing.assert_array_equal(s["frame"], clip.frames[1])
    np.testing.assert_array_equal(s["mask"], clip.masks[1].astype(np.uint8))
    assert s["label"] == int(clip.masks[1].any()) and s["name"] == "synth_val_0000001" and s["second"] == 1


def test_clip_window_sampler_covers_everything_in_windows():
    pytest.importorskip("torch", reason="ClipWindowSampler is a torch sampler (training package)")
    from streamavs.training.synthetic_data import ClipWindowSampler

    ds = SyntheticFrames("train", 10, SMALL, cache_clips=4)
    sampler = ClipWindowSampler(ds, window=4, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(len(ds)))
    first = {i // SMALL.seconds for i in order[: 4 * SMALL.seconds]}
    assert len(first) == 4  # the first window holds the seconds of 4 clips only
    sampler.set_epoch(1)
    assert list(sampler) != order


@pytest.mark.parametrize(("spec", "split"), [("synthetic-val", "val"), ("synthetic-single", "test")])
def test_specs_name_the_split_they_read(spec, split):
    """`--data synthetic-val` is the validation split's four-condition set: other clips than the test set's."""
    from streamavs.datasets.specs import robust_test_set
    from streamavs.synthetic import split_seed

    ts = robust_test_set(spec, 4, 32)
    assert ts.dataset.split == split
    assert ts.dataset.clip(0).seed == split_seed(split, 0) != split_seed("test" if split == "val" else "val", 0)
