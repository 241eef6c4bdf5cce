"""Object banks: what the scene composer places, paints and makes sound.

The composer (:mod:`streamavs.synthetic.scenes`) decides where objects are, how they move, when
they sound and how their sounds are panned; a bank decides what they look and sound like. Two
banks stand behind the one composer:

- :class:`ProceduralBank` (this module): coloured shapes with synthesised class sounds;
- :class:`streamavs.realmedia.bank.RealBank`: photographs cut out with their alpha channel,
  with real recordings, on real backgrounds.

A bank's ``classes`` are indexed by the clip's ``class_ids``; each class has a name (the
AVSBench category folder) and a group (animal / music / device / human / nature or the
synthetic aliases), used to choose off-screen sound from a group that is not on screen.
A *look* is one object's fixed appearance (and, for real media, its recording), drawn once
per object with :meth:`ObjectBank.new_look`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from streamavs.synthetic.classes import CLASSES
from streamavs.synthetic.render import Appearance, paint, random_appearance, random_background, shape_mask
from streamavs.synthetic.sounds import synth_sound

__all__ = ["BankClass", "ObjectBank", "ProceduralBank", "PROCEDURAL"]


@dataclass(frozen=True)
class BankClass:
    """One class of a bank: its name (category folder) and its group."""

    name: str
    group: str


class ObjectBank(Protocol):
    """What the scene composer needs from a bank. Images are float32 (H, W, 3) RGB in [0, 255]."""

    name: str
    classes: tuple[BankClass, ...]

    def new_look(self, rng: np.random.Generator, class_id: int, radius: float) -> Any:
        """The appearance of one new object of `class_id` whose circumscribed radius is `radius` px."""

    def look_key(self, look: Any) -> str:
        """A short name of the look's object (its stamp or shape), recorded with the clip."""

    def sound_key(self, look: Any) -> str:
        """The name of the recording (or sound family) the object sounds with."""

    def background(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """float32 (size, size, 3) background."""

    def draw(self, image: np.ndarray, look: Any, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
        """Paint the object into `image` in place; returns its full (unoccluded) bool (H, W) mask."""

    def sound(self, look: Any, rng: np.random.Generator, seconds: float, sample_rate: int) -> np.ndarray:
        """float32 (round(seconds * sample_rate),) mono track of the object sounding throughout."""


@dataclass(frozen=True)
class _ShapeLook:
    class_id: int
    appearance: Appearance


class ProceduralBank:
    """The synthetic benchmark's bank: one shape + colour and one synthesised sound family per class."""

    name = "procedural"
    classes: tuple[BankClass, ...] = tuple(BankClass(c.name, c.group) for c in CLASSES)

    def new_look(self, rng: np.random.Generator, class_id: int, radius: float) -> _ShapeLook:
        return _ShapeLook(int(class_id), random_appearance(rng, CLASSES[int(class_id)], radius))

    def look_key(self, look: _ShapeLook) -> str:
        return CLASSES[look.class_id].shape

    def sound_key(self, look: _ShapeLook) -> str:
        return f"synth:{CLASSES[look.class_id].name}"

    def background(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return random_background(rng, size)

    def draw(self, image: np.ndarray, look: _ShapeLook, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
        mask = shape_mask(CLASSES[look.class_id].shape, image.shape[0], cx, cy, radius, angle, look.appearance.aspect)
        paint(image, mask, look.appearance, cx, cy, radius, angle)
        return mask

    def sound(self, look: _ShapeLook, rng: np.random.Generator, seconds: float, sample_rate: int) -> np.ndarray:
        return synth_sound(look.class_id, rng, seconds, sample_rate)


PROCEDURAL = ProceduralBank()
