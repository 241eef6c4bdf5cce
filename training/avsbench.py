"""AVSBench S4 and MS3 on disk -> sample dicts (numpy), plus the `collate` the trainer uses.

Layout (docs/datasets.md), under `root`::

    Single-source/s4_meta_data.csv            name, start_time, category, split (by position)
    Single-source/s4_data/audio_wav/{split}/{category}/{name}.wav
    Single-source/s4_data/audio_log_mel/{split}/{category}/{name}.pkl      [5,1,96,64]
    Single-source/s4_data/visual_frames/{split}/{category}/{name}/{name}_{1..5}.png
    Single-source/s4_data/gt_masks/{split}/{category}/{name}/{name}_{k}.png  train: k=1 only
    Multi-sources/ms3_meta_data.csv           name, split (by position)
    Multi-sources/ms3_data/audio_wav/{split}/{name}.wav
    Multi-sources/ms3_data/audio_log_mel/{split}/{name}.pkl
    Multi-sources/ms3_data/visual_frames/{name}/{name}.mp4_{1..5}.png      no split folder
    Multi-sources/ms3_data/gt_masks/{split}/{name}/{name}_{1..5}.png

A sample is one (video, second) pair (``per="frame"``) or a whole 5 s clip (``per="clip"``).
Audio is read from the WAV and put through OUR front end (``prepare_waveform`` +
``LogMel``; example k ends at the end of second k); ``audio="pickle"`` reads AVSBench's VGGish
pickles instead (positives only: negatives must go through the same front end as positives).

Samples are the sample dicts of :mod:`streamavs.datasets.samples` (docs/datasets.md), with
``frame`` resized to image_size x image_size (aspect not kept), ``category`` the S4 folder (MS3:
the objects joined by "_", or ""), ``second`` 0..4, and for ``per="clip"`` also ``mask_valid``
(T,) bool.
"""

from __future__ import annotations

import csv
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from streamavs.audio import LogMel, prepare_waveform
from streamavs.datasets.negatives import AVSBENCH_MS3_GROUPS, AVSBENCH_S4_GROUPS, SAMPLE_RATE, OffscreenBank, fit_length
from streamavs.datasets.samples import make_sample, stack_samples
from streamavs.errors import ConfigError, DataError, InputError

__all__ = ["AVSBench", "AVSBenchVideo", "collate", "read_frame", "read_mask"]

CLIP_SECONDS = 5
_GET_DATA = (
    "download AVSBench v1 (Single-source S4 and Multi-sources MS3) from the AVSBench project page "
    "(opennlplab.github.io/AVSBench) and pass the folder that holds Single-source/ and Multi-sources/ as root"
)


@dataclass(frozen=True)
class AVSBenchVideo:
    """One AVSBench video: name, category ("" if unknown), split, and its sound groups."""

    name: str
    category: str
    split: str
    groups: tuple[str, ...]


def read_frame(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB from an image file, bilinear resize without keeping the aspect."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read video frame {path} (missing or not an image); {_GET_DATA}")
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB


def read_mask(path: Path, size: int) -> np.ndarray:
    """(size, size) uint8 {0, 1} from a mask PNG (0/255 or 0/1), nearest-neighbour resize."""
    import cv2

    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise DataError(f"cannot read ground-truth mask {path} (missing or not an image); {_GET_DATA}")
    m = cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST)
    return (m > (127 if m.max() > 1 else 0)).astype(np.uint8)


class AVSBench(torch.utils.data.Dataset):
    """AVSBench S4 / MS3 split as per-frame or per-clip sample dicts (see the module docstring).

    subset: "s4" | "ms3". split: "train" | "val" | "test". per: "frame" | "clip".
    audio: "wav" (our front end, default) | "pickle" (AVSBench VGGish pickles, positives only).
    ms3_labels: optional AVSS ``metadata.csv`` (columns vid, a_obj) giving the objects of each
    MS3 video, needed for off-screen sound on MS3. check_files: stat every file of the split
    at construction and raise one DataError listing what is missing.

    S4 train has a mask for the first second only: ``per="frame"`` then yields second 0 only,
    and ``per="clip"`` marks seconds 1..4 with ``mask_valid`` False (and all-zero masks).
    """

    seconds = CLIP_SECONDS
    source_gain = 1.0  # recorded videos: off-screen sound (another video's audio) at its own level

    def __init__(self, root: str | Path, subset: str = "s4", split: str = "train", per: str = "frame",
                 image_size: int = 224, audio: str = "wav", ms3_labels: str | Path | None = None,
                 check_files: bool = True) -> None:
        for arg, value, valid in (("subset", subset, ("s4", "ms3")), ("split", split, ("train", "val", "test")),
                                  ("per", per, ("frame", "clip")), ("audio", audio, ("wav", "pickle"))):
            if value not in valid:
                raise ConfigError(f"AVSBench {arg} must be one of {valid}, got {value!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ConfigError(f"image_size must be an integer >= 8 (pixels), got {image_size!r}")
        self.root, self.subset, self.split, self.per = Path(root), subset, split, per
        self.image_size, self.audio = image_size, audio
        self._base = self.root / ("Single-source/s4_data" if subset == "s4" else "Multi-sources/ms3_data")
        self.videos = self._read_meta(ms3_labels)
        self._by_name = {v.name: i for i, v in enumerate(self.videos)}
        # S4 train annotates only the first frame of each video.
        self.mask_seconds = (0,) if (subset, split) == ("s4", "train") else tuple(range(self.seconds))
        seconds = self.mask_seconds if per == "frame" else (0,)
        self._index = [(v, s) for v in range(len(self.videos)) for s in seconds]
        self._logmel = LogMel()
        if check_files:
            self._check_files()

    # ------------------------------------------------------------------ layout
    def _read_meta(self, ms3_labels) -> list[AVSBenchVideo]:
        meta = self.root / ("Single-source/s4_meta_data.csv" if self.subset == "s4" else "Multi-sources/ms3_meta_data.csv")
        if not meta.is_file():
            raise DataError(f"AVSBench {self.subset.upper()} metadata not found: expected {meta}; {_GET_DATA}")
        if not self._base.is_dir():
            raise DataError(f"AVSBench {self.subset.upper()} data folder not found: expected {self._base}; {_GET_DATA}")
        labels = _read_ms3_labels(Path(ms3_labels)) if ms3_labels is not None else {}
        videos = []
        with open(meta, newline="") as fh:
            for row in csv.reader(fh):
                if self.subset == "s4" and len(row) >= 4 and row[3].strip() == self.split:
                    name, cat = row[0].strip(), row[2].strip()
                    groups = (AVSBENCH_S4_GROUPS[cat],) if cat in AVSBENCH_S4_GROUPS else ()
                    videos.append(AVSBenchVideo(name, cat, self.split, groups))
                elif self.subset == "ms3" and len(row) >= 2 and row[1].strip() == self.split:
                    name = row[0].strip()
                    objs = labels.get(name, ())
                    groups = tuple(sorted({AVSBENCH_MS3_GROUPS[o] for o in objs if o in AVSBENCH_MS3_GROUPS}))
                    videos.append(AVSBenchVideo(name, "_".join(objs), self.split, groups))
        if not videos:
            raise DataError(
                f"{meta} lists no videos of split {self.split!r}; expected rows "
                f"{'name, start_time, category, split' if self.subset == 's4' else 'name, split'}; {_GET_DATA}"
            )
        return videos

    def _dir(self, kind: str, v: AVSBenchVideo) -> Path:
        if self.subset == "s4":
            return self._base / kind / v.split / v.category
        if kind == "visual_frames":
            return self._base / kind  # MS3 frames have no split folder
        return self._base / kind / v.split

    def frame_path(self, v: AVSBenchVideo, second: int) -> Path:
        stem = f"{v.name}.mp4_{second + 1}" if self.subset == "ms3" else f"{v.name}_{second + 1}"
        return self._dir("visual_frames", v) / v.name / f"{stem}.png"

    def mask_path(self, v: AVSBenchVideo, second: int) -> Path:
        return self._dir("gt_masks", v) / v.name / f"{v.name}_{second + 1}.png"

    def audio_path(self, v: AVSBenchVideo) -> Path:
        if self.audio == "pickle":
            return self._dir("audio_log_mel", v) / f"{v.name}.pkl"
        return self._dir("audio_wav", v) / f"{v.name}.wav"

    def _check_files(self) -> None:
        missing = []
        for v in self.videos:
            paths = [self.audio_path(v)] + [self.frame_path(v, s) for s in range(self.seconds)]
            paths += [self.mask_path(v, s) for s in self.mask_seconds]
            missing += [p for p in paths if not p.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:3])
            raise DataError(
                f"AVSBench {self.subset.upper()} {self.split}: {len(missing)} expected files are missing, e.g. {shown}; "
                f"check the layout (see the streamavs.training.avsbench docstring) or {_GET_DATA}"
            )

    # ------------------------------------------------------------------ dataset protocol
    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict:
        return self.build(index)

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    def video_of(self, index: int) -> int:
        """Index of the video that sample `index` comes from."""
        return self._index[index][0]

    def video_key(self, video: int) -> str:
        return self.videos[video].name

    def visible_groups(self, video: int) -> tuple[str, ...]:
        """Sound groups of the objects in the video; DataError when unknown (MS3 without labels)."""
        v = self.videos[video]
        if not v.groups:
            hint = ("pass ms3_labels= the AVSS metadata.csv (columns vid, a_obj)" if self.subset == "ms3"
                    else f"category {v.category!r} is not one of the 23 S4 categories")
            raise DataError(f"the sound groups of AVSBench video {v.name!r} are unknown, so off-screen audio "
                            f"cannot be chosen safely; {hint}")
        return v.groups

    def waveform(self, video: int) -> np.ndarray:
        """float32 (80000,) mono 16 kHz audio of the video (trimmed or zero-padded to 5 s)."""
        if self.audio == "pickle":
            raise ConfigError("audio='pickle' has no waveform; use audio='wav' for negatives and off-screen sound "
                              "(every audio condition must pass through the same front end)")
        import soundfile

        path = self.audio_path(self.videos[video])
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (OSError, RuntimeError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
            raise DataError(f"cannot read audio {path} ({exc}); {_GET_DATA}") from exc
        return fit_length(prepare_waveform(data, rate), self.seconds * SAMPLE_RATE)

    def offscreen_bank(self) -> OffscreenBank:
        """The other videos of this split with known groups, as off-screen sources (their WAV audio)."""
        entries = [(v.name, v.groups) for v in self.videos if v.groups]
        return OffscreenBank(entries, self._load_offscreen)

    def _load_offscreen(self, key: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
        return self.waveform(self._by_name[key])

    def log_mels(self, video: int, waveform: np.ndarray | None = None) -> np.ndarray:
        """(5, 96, 64) float32 log-mel examples of `waveform` (16 kHz mono) or of the video's own audio."""
        if waveform is None and self.audio == "pickle":
            path = self.audio_path(self.videos[video])
            try:
                with open(path, "rb") as fh:
                    t = pickle.load(fh)  # AVSBench pickles are torch tensors; only load trusted files
            except (OSError, pickle.UnpicklingError, EOFError) as exc:
                raise DataError(f"cannot read log-mel pickle {path} ({exc}); {_GET_DATA}") from exc
            arr = t.numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
            if arr.shape != (self.seconds, 1, 96, 64):
                raise DataError(f"{path} holds shape {arr.shape}; expected (5, 1, 96, 64) VGGish log-mel")
            return arr[:, 0].astype(np.float32)  # (5, 96, 64)
        if waveform is None:
            waveform = self.waveform(video)
        return self._logmel.examples_per_second(waveform, self.seconds)

    def build(self, index: int, waveform: np.ndarray | None = None, condition: str | Sequence[str] = "positive") -> dict:
        """Sample `index` with its own audio, or with `waveform` (float32 16 kHz mono, 5 s) as `condition`.

        For ``per="clip"`` `condition` may be one string or one per second (spliced audio).
        """
        if waveform is not None and self.audio == "pickle":
            raise ConfigError("negative audio needs audio='wav': pickled features cannot be replaced by a waveform "
                              "that then passes through the same front end as the positives")
        video, second = self._index[index]
        v = self.videos[video]
        if waveform is not None:
            waveform = fit_length(waveform, self.seconds * SAMPLE_RATE)
        seconds = [second] if self.per == "frame" else list(range(self.seconds))
        conds = [condition] * len(seconds) if isinstance(condition, str) else list(condition)
        if len(conds) != len(seconds):
            raise InputError(f"got {len(conds)} conditions for {len(seconds)} seconds; give one or one per second")
        if any(c != "positive" for c in conds) and waveform is None:
            raise InputError("a negative condition needs its waveform (float32 16 kHz mono); see streamavs.datasets.conditions")
        if self.per == "frame" and self.audio == "wav":  # only this second's example
            wave = self.waveform(video) if waveform is None else waveform
            log_mel = self._logmel.example_ending_at(wave, (second + 1) * SAMPLE_RATE)[None]  # (1, 96, 64)
        else:
            log_mel = self.log_mels(video, waveform)[seconds]  # (len(seconds), 96, 64)
        samples = []
        for j, (s, c) in enumerate(zip(seconds, conds)):
            size = self.image_size
            valid = s in self.mask_seconds
            mask = read_mask(self.mask_path(v, s), size) if valid else np.zeros((size, size), np.uint8)
            samples.append(make_sample(read_frame(self.frame_path(v, s), size), log_mel[j], mask, c,
                                       v.category, v.name, s))
        if self.per == "frame":
            return samples[0]
        out = stack_samples(samples)
        out["mask_valid"] = np.array([s in self.mask_seconds for s in seconds], dtype=bool)
        return out


def _read_ms3_labels(path: Path) -> dict[str, tuple[str, ...]]:
    """vid -> object labels from an AVSS metadata.csv (columns vid and a_obj, objects joined by "_")."""
    if not path.is_file():
        raise DataError(f"MS3 labels file not found: expected {path} (AVSS metadata.csv with columns vid, a_obj)")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"vid", "a_obj"} <= set(reader.fieldnames):
            raise DataError(f"{path} has columns {reader.fieldnames}; expected at least 'vid' and 'a_obj' (AVSS metadata.csv)")
        return {row["vid"]: tuple(o for o in row["a_obj"].split("_") if o) for row in reader}


def collate(samples: Sequence[dict]) -> dict:
    """Sample dicts (per-frame or per-clip) -> a batch dict of torch tensors.

    frame -> float32 (B, 3, H, W) in [0, 1] (clips: (B, T, 3, H, W)); log_mel -> (B, 1, 96, 64)
    (clips: (B, T, 1, 96, 64)); mask, eval_mask -> float32 (B, 1, H, W) (clips: (B, T, 1, H, W));
    label -> float32 (B,) (clips: (B, T)); second -> int64; numeric arrays of other keys are
    stacked when their shapes agree, else kept as a list of tensors; strings stay lists.
    """
    if not samples:
        raise InputError("collate needs at least one sample")
    out: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        first = values[0]
        if key == "frame":
            x = torch.from_numpy(np.stack(values)).float().div_(255.0)  # (B, [T,] H, W, 3)
            out[key] = x.movedim(-1, -3).contiguous()  # (B, [T,] 3, H, W)
        elif key in ("log_mel", "mask", "eval_mask"):
            out[key] = torch.from_numpy(np.stack(values)).float().unsqueeze(-3)  # (B, [T,] 1, H, W)
        elif key == "label":
            out[key] = torch.as_tensor(np.asarray(values), dtype=torch.float32)
        elif isinstance(first, (np.ndarray, int, float, np.generic)) and not isinstance(first, bool):
            arrays = [np.asarray(v) for v in values]
            if all(a.shape == arrays[0].shape for a in arrays):
                out[key] = torch.from_numpy(np.stack(arrays))
            else:
                out[key] = [torch.from_numpy(a) for a in arrays]
        else:
            out[key] = values
    return out
