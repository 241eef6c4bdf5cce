"""The streaming test split (streamavs.datasets.streaming): ground truth follows the audio played; numpy only."""

from __future__ import annotations

import numpy as np
import pytest

from streamavs.datasets.streaming import streaming_test_split
from streamavs.errors import ConfigError
from streamavs.metrics import transition_flags

SPLIT = dict(image_size=64, seconds=4)


def test_split_ground_truth_follows_the_played_audio():
    clips = list(streaming_test_split(3, 5, negative_second_share=0.5, **SPLIT))
    assert [c.index for c in clips] == [5, 6, 7]
    assert [c.seed for c in clips] == [2_000_000_005, 2_000_000_006, 2_000_000_007]
    seen = set()
    for c in clips:
        assert c.frames.shape == (4, 64, 64, 3) and c.frames.dtype == np.uint8
        assert c.log_mel.shape == (4, 96, 64)
        for t, audio in enumerate(c.audio):
            seen.add(c.eval_condition[t])
            if audio != "positive":  # negative audio: empty target, scored as that condition
                assert not c.gt[t].any() and c.eval_condition[t] == audio and not c.sounding[t].any()
            elif not c.gt[t].any():  # own audio but the source is quiet: counts as silence
                assert c.eval_condition[t] == "silence" and not c.sounding[t].any()
            else:
                assert c.eval_condition[t] == "positive" and np.array_equal(c.gt_eval[t], c.gt[t])
        started, silenced = transition_flags(c.gt.any(axis=(1, 2)))  # single source: GT non-empty == sounding
        assert np.array_equal(started, c.started) and np.array_equal(silenced, c.silenced)
    assert "positive" in seen and len(seen) >= 3
    again = next(iter(streaming_test_split(1, 6, negative_second_share=0.5, **SPLIT)))
    assert again.audio == clips[1].audio and np.array_equal(again.log_mel, clips[1].log_mel)
    no_neg = next(iter(streaming_test_split(1, 6, negative_second_share=0.0, **SPLIT)))
    assert no_neg.audio == ["positive"] * 4


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(clips=0), "clips must be a positive integer, got 0"),
    (dict(clips=1, seed_offset=-1), "seed_offset must be a non-negative integer"),
    (dict(clips=1, negative_second_share=1.5), r"negative_second_share must be a probability in \[0, 1\], got 1.5"),
    (dict(clips=1, data="avsbench"), "data must be 'synthetic' or 'real', got 'avsbench'"),
    (dict(clips=1, split="train"), r"split must be one of \('test', 'val'\), got 'train'"),
])
def test_bad_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        next(iter(streaming_test_split(**kwargs, **SPLIT)))


def test_the_temporal_ablation_streams_the_same_split():
    from streamavs.bench import temporal_ablation

    assert temporal_ablation.streaming_test_split is streaming_test_split



def test_validation_clips_are_built_the_same_way_from_the_validation_split():
    from streamavs.synthetic import split_seed

    val = list(streaming_test_split(2, 5, negative_second_share=0.5, split="val", **SPLIT))
    test = list(streaming_test_split(2, 5, negative_second_share=0.5, **SPLIT))
    assert [c.seed for c in val] == [split_seed("val", 5), split_seed("val", 6)]
    assert not {c.seed for c in val} & {c.seed for c in test}
    for c in val:  # the same construction: ground truth empty in negative seconds
        assert c.frames.shape == (4, 64, 64, 3)
        assert all(not c.gt[t].any() for t, a in enumerate(c.audio) if a != "positive")


def test_validation_noise_is_drawn_from_the_training_kinds_only():
    from streamavs.datasets.negatives import NoiseConfig

    kinds = NoiseConfig()
    split = dict(SPLIT, seconds=2, negative_second_share=1.0)  # every second negative: many noise draws

    def noise_types(name):
        clips = streaming_test_split(40, 0, split=name, **split)
        return {c.negatives["noise"]["noise_type"] for c in clips if "noise" in c.negatives}

    val, test = noise_types("val"), noise_types("test")
    assert val and val <= set(kinds.train_types)
    assert test & set(kinds.eval_types)  # the test split does draw the held-out kinds
