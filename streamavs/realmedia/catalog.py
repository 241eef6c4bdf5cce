"""What the fetched packages hold: cut-outs, recordings, backgrounds, and the role each plays.

Built once by ``streamavs data fetch`` and stored in media.json, so a dataset states exactly
which file was used for what. Paths are relative to the media cache.

- **Cut-outs**: Tux Paint stamps that are photographs with an alpha channel (the exact object
  mask) AND their own recording. Kept when the stamp is at least ``_MIN_SIDE`` px on its short
  side, its alpha covers >= 10% of the image and at most 30% of the object edge is
  semi-transparent (drops glass, lightning, fireworks, tiny seasonal icons), and its recording is
  not digital silence; drawings (symbols, road signs, flags, cartoons) are left out by folder.
- **Classes** are what a stamp *is* (``pig_golden`` is a pig, ``hen`` and ``rooster`` are
  chickens); **groups** follow AVSBench-Robust (animal / music / device / human) plus ``nature``
  for rain and storms, so off-screen sound can come from a group that is not on screen.
- **People**: the fireman photographs paired with real speech, the spoken stamp descriptions
  (class ``person``, group ``human``): "a talking person".
- **Roles**, fixed here so every split is reproducible:
  ``train`` recordings are the stamps' own (and speech in ``_TRAIN_LANGUAGES``);
  ``heldout`` recordings are second instances of known classes recorded separately (GCompris
  farm animals, instruments and barks; speech in the other languages): test audio for
  objects seen in training;
  ``unseen`` cut-outs and recordings never appear in training or validation (about one known
  stamp in six, by a hash of its name, from classes without a second instance), plus the
  GCompris sounds of classes that have no cut-out: novel sounding objects and off-screen
  sound the model never heard.
- **Backgrounds**: GCompris monument photographs, split train / val / test by name.

Every file entry records its ``bytes`` and ``sha256``; :func:`verify_files` checks them when a
bank opens the media, so a file that was truncated, replaced or deleted after the fetch is one
clear error with the fix, never a silently different dataset.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from streamavs.errors import DataError
from streamavs.files import file_sha256

__all__ = ["build_catalog", "summary", "verify_files", "GROUPS"]

GROUPS = ("animal", "music", "device", "human", "nature")
_STAMPS = "packages/tuxpaint-stamps-default/usr/share/tuxpaint/stamps"
_MIN_SIDE = 75
_SKIP_FOLDERS = ("symbols/", "town/", "seasonal/", "military/", "space/", "cartoon/", "naturalforces/", "food/")
_GROUP_BY_FOLDER = (("animals/", "animal"), ("hobbies/music/", "music"), ("people/", "human"),
                    ("household/", "device"), ("vehicles/", "device"), ("hobbies/", "device"))
# Stamp name -> class, where the stamp's name is not already its class.
_CLASS_OF = {
    "cow_white": "cow", "pig_golden": "pig", "pig_golden2": "pig", "sheep_lamb": "sheep", "hen": "chicken",
    "rooster": "chicken", "drake": "duck", "doe": "deer", "mountaingoat": "goat", "dromedary": "camel",
    "cymbal_crash": "cymbal", "drum_tomtom_floor": "drum", "drumkit": "drum_kit", "camera_35mm": "camera",
    "heron_greatblue_flying": "heron", "firetruck": "fire_engine", "fireman240a": "person", "fireman200b": "person",
}
# GCompris recordings: file stem -> (class, group). Classes with a Tux Paint cut-out become held-out
# second instances; the others are unseen sounds.
_GCOMPRIS = {
    "explore_farm_animals": {"cat": ("cat", "animal"), "chickens": ("chicken", "animal"), "cow": ("cow", "animal"),
                             "dog": ("dog", "animal"), "duck": ("duck", "animal"), "horse": ("horse", "animal"),
                             "owl": ("owl", "animal"), "pig": ("pig", "animal"), "sheep": ("sheep", "animal")},
    "instruments": {name: (name, "music") for name in (
        "violin", "cello", "cymbal", "drum_kit", "tambourine", "snare_drum", "harmonica", "accordion", "bongo",
        "electric_guitar", "banjo", "triangle", "trumpet", "horn", "piano", "harp", "timpani", "saxophone",
        "maracas", "clarinet", "guitar", "tuba", "trombone", "organ", "castanets", "flute_traversiere")},
    "memory-sound": {
        "LRBark_1_LA_cut": ("dog", "animal"), "LRBark_3_LA_cut": ("dog", "animal"),
        "LRStartAndStopCarEngine1LACut": ("car_engine", "device"), "LRTrain_slowing_down_01_LA_cut": ("train", "device"),
        "LRDoor_Open_2_LA": ("door", "device"), "LRFactory_noise_01_LA": ("factory", "device"),
        "LRRing_01_LA": ("bell", "device"), "LRBuddhist_gong_05_LA": ("gong", "music"),
        "guitar_melody": ("guitar", "music"), "LRApplauses_1_LA_cut": ("applause", "human"),
        "LRRain_in_garden_01_LA_cut": ("rain", "nature"), "LRFrogsInPondDuringStormLACut": ("storm", "nature"),
    },
}
_TRAIN_LANGUAGES = ("be", "bg", "ca", "el", "es", "fr")  # the rest (ro, ru, nl, ...) are held-out speakers
_SPEECH_PER_ROLE = {"train": 240, "heldout": 80}
_BACKGROUND_ACTIVITY = "gcompris/explore_monuments"


def _group_of(rel: str) -> str | None:
    for prefix, group in _GROUP_BY_FOLDER:
        if rel.startswith(prefix):
            return group
    return None


def _hash_pick(key: str, modulo: int) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % modulo == 0


def _is_cutout(png: Path) -> bool:
    import cv2

    image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4 or min(image.shape[:2]) < _MIN_SIDE:
        return False
    alpha = image[..., 3]
    inside = alpha > 10
    soft = (inside & (alpha < 245)).sum() / max(int(inside.sum()), 1)
    return (alpha >= 128).mean() >= 0.10 and soft <= 0.30


def _is_silent(path: Path) -> bool:
    from streamavs.errors import InputError
    from streamavs.realmedia.bank import load_recording

    try:
        load_recording(str(path))
    except InputError:
        return True
    return False


def _cutouts(root: Path) -> list[dict]:
    stamps = root / _STAMPS
    out = []
    for ogg in sorted(stamps.rglob("*.ogg")):
        if "_desc" in ogg.stem:
            continue
        png = ogg.with_suffix(".png")
        rel = ogg.relative_to(stamps).as_posix()
        group = _group_of(rel)
        if group is None or any(s in rel for s in _SKIP_FOLDERS) or not png.is_file() or not _is_cutout(png):
            continue
        if _is_silent(ogg):  # a few animals "sound" with digital silence (giraffe, iguana, wombat, nandou)
            continue
        out.append({"key": ogg.stem, "class": _CLASS_OF.get(ogg.stem, ogg.stem), "group": group,
                    "image": png.relative_to(root).as_posix(), "recording": f"tux:{ogg.stem}"})
    for png in sorted((stamps / "people").glob("fireman*.png")):  # people: no own sound effect, they talk
        if _is_cutout(png):
            out.append({"key": png.stem, "class": "person", "group": "human",
                        "image": png.relative_to(root).as_posix(), "recording": "speech"})
    return out


def _speech(root: Path) -> list[dict]:
    """Spoken stamp descriptions (real voices), a deterministic subset per role."""
    stamps = root / _STAMPS
    by_role: dict[str, list[Path]] = {"train": [], "heldout": []}
    for ogg in sorted(stamps.rglob("*_desc*.ogg")):
        language = ogg.stem.rsplit("_desc", 1)[1].lstrip("_") or "en"
        by_role["train" if language in _TRAIN_LANGUAGES else "heldout"].append(ogg)
    out = []
    for role, files in by_role.items():
        step = max(1, len(files) // _SPEECH_PER_ROLE[role])
        for ogg in files[::step][:_SPEECH_PER_ROLE[role]]:
            out.append({"key": f"speech:{ogg.stem}", "class": "person", "group": "human", "role": role,
                        "path": ogg.relative_to(root).as_posix(), "package": "tuxpaint-stamps-default"})
    return out


def build_catalog(root: str | Path) -> dict:
    """The catalogue of the media unpacked under `root`: {"cutouts", "recordings", "backgrounds", "rules"};
    every cut-out, recording and background entry records its file's ``bytes`` and ``sha256``."""
    root = Path(root)
    cutouts = _cutouts(root)
    gcompris = []
    for activity, table in _GCOMPRIS.items():
        for stem, (cls, group) in table.items():
            for suffix in (".ogg", ".wav"):
                path = root / "gcompris" / activity / f"{stem}{suffix}"
                if path.is_file():
                    gcompris.append({"key": f"gcompris:{stem}", "class": cls, "group": group,
                                     "path": path.relative_to(root).as_posix(), "package": "gcompris-qt-data"})
    second = {r["class"] for r in gcompris} | {"person"}
    known_classes = {c["class"] for c in cutouts}
    for cut in cutouts:
        unseen = cut["class"] not in second and _hash_pick(cut["key"], 6)
        cut["role"] = "unseen" if unseen else "known"
    unseen_classes = {c["class"] for c in cutouts if c["role"] == "unseen"}
    for cut in cutouts:  # a class is either all unseen or all known
        if cut["class"] in unseen_classes:
            cut["role"] = "unseen"
    recordings = [{"key": c["recording"], "class": c["class"], "group": c["group"],
                   "role": "unseen" if c["role"] == "unseen" else "train",
                   "path": c["image"][:-4] + ".ogg", "package": "tuxpaint-stamps-default"}
                  for c in cutouts if c["recording"] != "speech"]
    for rec in gcompris:
        rec["role"] = "heldout" if rec["class"] in known_classes - unseen_classes else "unseen"
    recordings += gcompris + _speech(root)
    photos = sorted((root / _BACKGROUND_ACTIVITY).glob("*.webp"))
    backgrounds = [{"path": p.relative_to(root).as_posix(),
                    "split": "test" if i % 5 == 0 else "val" if i % 10 == 3 else "train"}
                   for i, p in enumerate(photos)]
    catalog = {
        "cutouts": cutouts,
        "recordings": recordings,
        "backgrounds": backgrounds,
        "rules": {
            "groups": list(GROUPS),
            "unseen": "a known stamp whose class has no second recording, when sha256(name) % 6 == 0",
            "train_speech_languages": list(_TRAIN_LANGUAGES),
            "backgrounds": "sorted monument photographs: index % 5 == 0 test, index % 10 == 3 val, else train",
        },
    }
    _record_files(root, catalog)
    return catalog


_FILE_KEYS = (("cutouts", "image"), ("recordings", "path"), ("backgrounds", "path"))  # entry kind, its file


def _record_files(root: Path, catalog: dict) -> None:
    for kind, key in _FILE_KEYS:
        for entry in catalog[kind]:
            path = root / entry[key]
            entry["bytes"], entry["sha256"] = path.stat().st_size, file_sha256(path)


def verify_files(root: str | Path, index: dict) -> None:
    """DataError naming every indexed file that is missing or whose size or sha256 differs from the
    fetch's, with the fetch command that restores them. The 568 files (18 MB) of a full fetch take
    about 20 ms to check (2-core AMD EPYC), so every bank checks all of them."""
    root = Path(root)
    bad = []
    for kind, key in _FILE_KEYS:
        for entry in index[kind]:
            path = root / entry[key]
            if not path.is_file():
                bad.append(f"{entry[key]} (missing)")
            elif path.stat().st_size != entry["bytes"]:
                bad.append(f"{entry[key]} ({path.stat().st_size} bytes, the fetch indexed {entry['bytes']})")
            elif file_sha256(path) != entry["sha256"]:
                bad.append(f"{entry[key]} (sha256 differs from the fetch's)")
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise DataError(f"{len(bad)} media file(s) in {root} changed since they were fetched: "
                        f"{'; '.join(bad[:3])}{more}; restore them: streamavs data fetch --cache {root}")


def summary(catalog: dict) -> dict[str, int]:
    """Counts by role, for messages and the dataset manifest."""
    counts: dict[str, int] = {}
    for kind in ("cutouts", "recordings", "backgrounds"):
        for item in catalog[kind]:
            label = f"{kind}:{item.get('role', item.get('split'))}"
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))
