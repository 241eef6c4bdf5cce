"""Writing composed clips (procedural or real-media bank) to disk in the AVSBench folder layout (docs/datasets.md).

"single" clips go to the S4 layout, "multi" clips to the MS3 layout, so the real-data
loader reads both. Files: 16-bit PCM stereo WAV at the config's sample rate; frames as
RGB PNGs; ground-truth masks as 0/255 single-channel PNGs, all T seconds for every split.
Besides the AVSBench files, two extras are kept up to date:

* ``{out_dir}/synthetic_info.json``: the dataset manifest: class table, groups, for a
  real-media bank the provenance (Debian package versions, sha256, licences) and the split
  rules, and one record per write_avsbench call (setting, split, indices, seeds, config);
* ``{setting root}/synthetic_clips.jsonl``: per clip, its seed, object classes, what each
  object is and which recording it sounds with, and the per-second sounding states (AVSBench
  has no place for these).
"""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import numpy as np

from streamavs.errors import DataError, InputError
from streamavs.synthetic.banks import PROCEDURAL, ObjectBank
from streamavs.synthetic.classes import CLASSES, GROUPS
from streamavs.synthetic.config import INDICES_PER_SPLIT, SceneConfig, split_seed
from streamavs.synthetic.scenes import Clip, generate_clip

__all__ = ["write_avsbench", "clip_name", "S4_ROOT", "MS3_ROOT", "S4_HEADER", "MS3_HEADER", "write_wav"]

S4_ROOT, MS3_ROOT = "Single-source", "Multi-sources"
S4_HEADER = ("name", "start_time", "category", "split")
MS3_HEADER = ("name", "split")
INFO_FILE, CLIPS_FILE = "synthetic_info.json", "synthetic_clips.jsonl"


def clip_name(split: str, index: int) -> str:
    """AVSBench video name of clip `index` of `split` (unique across splits, as MS3 frames need)."""
    return f"synth_{split}_{index:07d}"


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float (n, channels) audio in [-1, 1] as 16-bit PCM WAV."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")  # (n, C) interleaved
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(pcm.shape[1])
        handle.setsampwidth(2)
        handle.setframerate(int(sample_rate))
        handle.writeframes(pcm.tobytes())


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise DataError(f"could not write {path}; check that the folder is writable and the disk not full")


def _write_clip(root: Path, clip: Clip, name: str, split: str, setting: str) -> None:
    import cv2

    data = root / ("s4_data" if setting == "single" else "ms3_data")
    if setting == "single":
        wav = data / "audio_wav" / split / clip.category / f"{name}.wav"
        frame_dir = data / "visual_frames" / split / clip.category / name
        mask_dir = data / "gt_masks" / split / clip.category / name
        frame_names = [f"{name}_{k}.png" for k in range(1, clip.seconds + 1)]
    else:
        wav = data / "audio_wav" / split / f"{name}.wav"
        frame_dir = data / "visual_frames" / name
        mask_dir = data / "gt_masks" / split / name
        frame_names = [f"{name}.mp4_{k}.png" for k in range(1, clip.seconds + 1)]
    wav.parent.mkdir(parents=True, exist_ok=True)
    write_wav(wav, clip.audio, clip.sample_rate)
    for t in range(clip.seconds):
        _write_png(frame_dir / frame_names[t], cv2.cvtColor(clip.frames[t], cv2.COLOR_RGB2BGR))
        _write_png(mask_dir / f"{name}_{t + 1}.png", clip.masks[t].astype(np.uint8) * 255)


def _update_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    """Append rows whose name is not in the CSV yet (write the header when creating it)."""
    existing: set[str] = set()
    if path.exists():
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            first = next(reader, None)
            if first is not None and tuple(first) != header:
                raise DataError(f"{path} has header {first}, expected {list(header)}; write to a fresh --out folder")
            existing = {row[0] for row in reader if row}
    new = [row for row in rows if row[0] not in existing]
    write_header = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if write_header:
            writer.writerow(header)
        writer.writerows(new)


def _update_jsonl(path: Path, records: list[dict]) -> None:
    by_name: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                by_name[rec["name"]] = rec
    for rec in records:
        by_name[rec["name"]] = rec
    path.write_text("".join(json.dumps(rec) + "\n" for rec in by_name.values()))


def _update_info(out_dir: Path, run: dict, bank: ObjectBank) -> None:
    path = out_dir / INFO_FILE
    info = json.loads(path.read_text()) if path.exists() else {}
    if bank is PROCEDURAL:
        info.update({"generator": "streamavs.synthetic", "groups": list(GROUPS),
                     "classes": [cls.to_dict() for cls in CLASSES]})
    else:
        info.update({"generator": "streamavs.realmedia", **bank.describe()})
        run["classes"] = [{"name": c.name, "group": c.group} for c in bank.classes]
    info["seed_rule"] = "seed = split_seed(split, index): train index, val 1e9 + index, test 2e9 + index"
    info.setdefault("runs", []).append(run)
    path.write_text(json.dumps(info, indent=1) + "\n")


def _check_same_dataset(out_dir: Path, config: SceneConfig, bank: ObjectBank) -> None:
    """InputError when `out_dir` already holds clips of another frame size or length (one dataset, one
    shape), or of another bank: clip names count per seed split (``synth_test_0000001``), so the clips
    of another bank (the procedural one, another real-media split) would be overwritten under them."""
    path = out_dir / INFO_FILE
    if not path.is_file():
        return
    for run in json.loads(path.read_text()).get("runs", []):
        if run.get("bank", bank.name) != bank.name:
            raise InputError(
                f"{out_dir} already holds clips of bank {run['bank']!r}; clips of {bank.name!r} would overwrite "
                "those of the same names: write each bank (procedural, each real-media split) to its own --out"
            )
        old, new = run.get("config", {}), config.to_dict()
        for key in ("image_size", "seconds"):
            if key in old and old[key] != new[key]:
                flag = key.replace("_", "-")
                raise InputError(
                    f"{out_dir} already holds clips with {key} {old[key]}, and these would have {new[key]}; "
                    f"a dataset has one frame size and clip length: write to another --out, or pass --{flag} {old[key]}"
                )
        if run.get("setting") == config.setting:  # the same clip names: every scene setting must agree
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    raise InputError(
                        f"{out_dir} already holds {config.setting} clips made with {key} = {old.get(key)!r}, and these "
                        f"would have {new.get(key)!r}; clips of the same names would be rewritten while the meta-data "
                        f"CSV keeps their old categories: write to another --out, or use {key} = {old.get(key)!r} again"
                    )


def write_avsbench(out_dir: str | Path, split: str, count: int, config: SceneConfig = SceneConfig(),
                   first_index: int = 0, progress: bool = True, bank: ObjectBank = PROCEDURAL) -> list[str]:
    """Generate clips `first_index .. first_index + count - 1` of `split` from `bank` and write them under `out_dir`.

    Returns the clip names written. Existing files of the same names are overwritten and the
    meta-data CSV gains only names it does not hold yet, so re-running is safe; a re-run with other
    scene settings than the dataset's, or past a split's last index, is refused before writing.
    """
    from tqdm import tqdm

    split_seed(split, 0)  # validates the split name
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise InputError(f"count must be a non-negative integer number of clips, got {count!r}")
    if isinstance(first_index, bool) or not isinstance(first_index, (int, np.integer)) or first_index < 0:
        raise InputError(f"first_index must be a non-negative integer, got {first_index!r}")
    if not isinstance(config, SceneConfig):
        raise InputError(f"config must be a SceneConfig, got {type(config).__name__}")
    if count and first_index + count > INDICES_PER_SPLIT:
        raise InputError(f"clips {first_index}..{first_index + count - 1} run past the last clip index of a split "
                         f"({INDICES_PER_SPLIT - 1}): lower the first index (--seed-offset) or the count (--count)")
    out = Path(out_dir)
    _check_same_dataset(out, config, bank)
    root = out / (S4_ROOT if config.setting == "single" else MS3_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    names, rows, records, seeds = [], [], [], []
    for index in tqdm(range(first_index, first_index + count), desc=f"synth {config.setting}/{split}",
                      unit="clip", disable=not progress):
        seed = split_seed(split, index)
        clip = generate_clip(seed, config, bank)
        name = clip_name(split, index)
        _write_clip(root, clip, name, split, config.setting)
        names.append(name)
        seeds.append(seed)
        rows.append((name, 0, clip.category, split) if config.setting == "single" else (name, split))
        records.append({
            "name": name, "split": split, "seed": seed, "setting": config.setting,
            "classes": [clip.classes[int(c)].name for c in clip.class_ids],
            "objects": list(clip.object_keys),
            "sounds": list(clip.sound_keys),
            "is_source": clip.is_source.tolist(),
            "sounding": clip.sounding.astype(int).tolist(),  # (T, n_obj) 0/1
        })
    if config.setting == "single":
        _update_csv(root / "s4_meta_data.csv", S4_HEADER, rows)
    else:
        _update_csv(root / "ms3_meta_data.csv", MS3_HEADER, rows)
    _update_jsonl(root / CLIPS_FILE, records)
    _update_info(out, {"setting": config.setting, "split": split, "first_index": int(first_index),
                       "count": int(count), "seeds": seeds, "config": config.to_dict(), "bank": bank.name}, bank)
    return names
