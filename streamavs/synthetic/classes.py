"""The class table of the synthetic benchmark: what each class looks like and sounds like.

Every class pairs one visual family (a shape and a base colour) with one sound family
(see :mod:`streamavs.synthetic.sounds`). Classes fall into broad groups, like the
AVSBench-Robust category groups (music, human voice, animals, machines), so that an
off-screen sound can be drawn from a group that is not on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamavs.errors import InputError

__all__ = ["SoundClass", "CLASSES", "GROUPS", "classes_outside_group", "class_by_name", "class_by_id"]


@dataclass(frozen=True)
class SoundClass:
    """One class of the benchmark.

    id: index into :data:`CLASSES` (0-based). name: the AVSBench category folder name.
    group: one of :data:`GROUPS`. shape: the drawn shape (see ``render.SHAPES``).
    colour: base colour as (R, G, B) uint8 values; each object jitters its hue and brightness.
    sound: one-line description of the sound family synthesised for the class.
    """

    id: int
    name: str
    group: str
    shape: str
    colour: tuple[int, int, int]
    sound: str

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "group": self.group,
            "shape": self.shape,
            "colour": list(self.colour),
            "sound": self.sound,
        }


GROUPS: tuple[str, ...] = ("music", "voice", "animal", "machine")

# Shapes are rotation-distinct (no square vs diamond) and colours are spread around the hue
# circle, so shape alone and colour alone each identify the class.
CLASSES: tuple[SoundClass, ...] = (
    SoundClass(0, "flute", "music", "circle", (40, 110, 230), "breathy harmonic tone 500-1000 Hz, melody with vibrato"),
    SoundClass(1, "drum", "music", "square", (220, 40, 40), "low thumps 55-120 Hz with falling pitch and a noise snap, 2-5 hits/s"),
    SoundClass(2, "guitar", "music", "triangle", (240, 140, 20), "plucked notes 110-330 Hz, bright harmonics, exponential decay"),
    SoundClass(3, "speech", "voice", "ellipse", (235, 170, 150), "voiced syllables at 90-220 Hz pitch with moving vowel formants, 3-6/s"),
    SoundClass(4, "singing", "voice", "ring", (150, 60, 200), "sustained vowels 200-500 Hz with 5-6 Hz vibrato and glides"),
    SoundClass(5, "bird", "animal", "star", (245, 225, 30), "short FM chirps sweeping 2.5-6.5 kHz in bursts"),
    SoundClass(6, "dog", "animal", "hexagon", (130, 80, 40), "noisy harmonic barks 350-750 Hz with falling pitch"),
    SoundClass(7, "cricket", "animal", "cross", (60, 200, 60), "4-6 kHz carrier pulsed at 15-35 Hz"),
    SoundClass(8, "engine", "machine", "crescent", (120, 130, 145), "30-70 Hz harmonic hum with low-passed rumble and slow AM"),
    SoundClass(9, "siren", "machine", "heart", (20, 210, 210), "tone sweeping 600-1500 Hz, periodic wail"),
)


def class_by_id(class_id: int) -> SoundClass:
    """The class with index `class_id`; InputError listing the valid range otherwise."""
    if isinstance(class_id, bool) or not isinstance(class_id, int) and not hasattr(class_id, "__index__"):
        raise InputError(f"class_id must be an integer in 0..{len(CLASSES) - 1}, got {class_id!r}")
    index = int(class_id)
    if not 0 <= index < len(CLASSES):
        raise InputError(
            f"class_id must be in 0..{len(CLASSES) - 1} (classes: {', '.join(c.name for c in CLASSES)}), got {index}"
        )
    return CLASSES[index]


def class_by_name(name: str) -> SoundClass:
    """The class called `name`; InputError listing the valid names otherwise."""
    for cls in CLASSES:
        if cls.name == name:
            return cls
    raise InputError(f"unknown synthetic class {name!r}; valid names: {', '.join(c.name for c in CLASSES)}")


def classes_outside_group(group: str) -> list[SoundClass]:
    """Classes whose group differs from `group` (candidates for off-screen sounds)."""
    if group not in GROUPS:
        raise InputError(f"unknown class group {group!r}; valid groups: {', '.join(GROUPS)}")
    return [cls for cls in CLASSES if cls.group != group]
