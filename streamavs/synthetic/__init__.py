"""The procedural audio-visual benchmark: shapes that sound, with exact per-second ground truth.

Small enough to train a model on a CPU in minutes, and built to show the visual bias that
AVSBench-Robust is about: in a clip the visually salient objects are not always the ones
making the sound (silent distractors, several sources, sources that start and stop).

>>> from streamavs.synthetic import SceneConfig, generate_clip, split_seed
>>> clip = generate_clip(split_seed("train", 0), SceneConfig(image_size=64, seconds=2))
>>> clip.frames.shape, clip.audio.shape, clip.masks.shape
((2, 64, 64, 3), (32000, 2), (2, 64, 64))

Importing this package imports OpenCV (rendering); `import streamavs` does not import it.
"""

from __future__ import annotations

from streamavs.synthetic.classes import CLASSES, GROUPS, SoundClass, class_by_id, class_by_name, classes_outside_group
from streamavs.synthetic.config import SETTINGS, SPLITS, SceneConfig, split_seed
from streamavs.synthetic.disk import write_avsbench
from streamavs.synthetic.scenes import Clip, generate_clip
from streamavs.synthetic.sounds import synth_sound

__all__ = [
    "CLASSES", "GROUPS", "SETTINGS", "SPLITS", "SoundClass", "SceneConfig", "Clip",
    "class_by_id", "class_by_name", "classes_outside_group", "generate_clip", "split_seed",
    "synth_sound", "write_avsbench",
]
