"""The real-media object bank: photographs cut out by their alpha channel, their own recordings, real backgrounds.

Plugs into the one scene composer (:func:`streamavs.synthetic.generate_clip`) beside the
procedural bank. What a split holds (roles from :mod:`streamavs.realmedia.catalog`):

===================  =====================================  ==============================================  ==========
split                objects                                recordings                                      backgrounds
===================  =====================================  ==============================================  ==========
train                known cut-outs                         their own (speech: training languages)          train
val                  known cut-outs                         their own                                       val
test                 known cut-outs                         a held-out recording where the class has one    test
test_seen_rec        known cut-outs of classes with a       their own (the training recordings)             test
                     held-out recording
test_heldout_rec     the same                               the held-out recordings                         test
test_novel           unseen cut-outs                        their own (never heard in training)             test
===================  =====================================  ==============================================  ==========

The object mask is the cut-out's alpha channel >= 128 after resizing (area interpolation),
pasted where the composer puts the object; the pixels are alpha-blended, so the mask is exact.
Real objects stay upright (the composer's rotation is ignored) and may be mirrored.

Sounds are events, not stretched: a recording (leading and trailing silence trimmed) repeats
with short random gaps, and a recording shorter than a second repeats often enough that every
one-second window holds at least part of an event. Training looks are augmented: gain
(+-4 dB), speed and pitch together (x0.94..1.06), and 30% of them mixed with pink noise at
10-30 dB SNR.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from streamavs.errors import InputError
from streamavs.realmedia.catalog import verify_files
from streamavs.realmedia.fetch import default_cache, provenance, read_media_index
from streamavs.synthetic.banks import BankClass
from streamavs.synthetic.sounds import pink_noise

__all__ = ["RealBank", "REAL_SPLITS", "load_recording"]

REAL_SPLITS: tuple[str, ...] = ("train", "val", "test", "test_seen_rec", "test_heldout_rec", "test_novel")
_BACKGROUND_SPLIT = {"train": "train", "val": "val"}  # every test_* split uses the test backgrounds
_PEAK = 0.5  # recordings are peak-normalised to this before the per-look gain
_TRIM_DB = 40.0  # leading/trailing audio quieter than peak - 40 dB is trimmed


@lru_cache(maxsize=512)
def load_recording(path: str, sample_rate: int = 16000) -> np.ndarray:
    """float32 (n,) mono at `sample_rate` of an audio file (PyAV), trimmed and peak-normalised to 0.5; read-only."""
    import av

    from streamavs.audio import resample

    chunks, rate = [], None
    try:
        with av.open(path) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout="mono")
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    rate = out.sample_rate
                    chunks.append(out.to_ndarray()[0])
    except (av.FFmpegError, IndexError) as exc:
        raise InputError(f"cannot decode the recording {path}: {exc}; fetch the media again") from exc
    if not chunks:
        raise InputError(f"the recording {path} holds no audio")
    x = np.concatenate(chunks).astype(np.float32)
    if rate != sample_rate:
        x = resample(x, int(rate), sample_rate)
    peak = float(np.abs(x).max())
    if peak <= 0:
        raise InputError(f"the recording {path} is digital silence")
    loud = np.flatnonzero(np.abs(x) >= peak * 10 ** (-_TRIM_DB / 20))
    x = x[loud[0]:loud[-1] + 1] * np.float32(_PEAK / peak)
    x.setflags(write=False)
    return x


@dataclass(frozen=True)
class _Cutout:
    key: str
    class_id: int
    rgb: np.ndarray  # (h, w, 3) float32, cropped to the alpha's bounding box
    alpha: np.ndarray  # (h, w) float32 in [0, 1]


@dataclass(frozen=True)
class RealLook:
    """One real object: its resized pixels, alpha and mask, and the recording it sounds with."""

    key: str
    recording: str
    rgb: np.ndarray  # (h, w, 3) float32
    alpha: np.ndarray  # (h, w) float32
    mask: np.ndarray  # (h, w) bool, alpha >= 0.5
    gain_db: float
    speed: float
    noise_snr_db: float | None


class RealBank:
    """Objects, recordings and backgrounds of one split of the real-media benchmark (see the module docstring)."""

    def __init__(self, split: str = "train", media: str | Path | None = None, augment: bool | None = None,
                 only_classes: tuple[str, ...] | None = None) -> None:
        if split not in REAL_SPLITS:
            raise InputError(f"unknown real-media split {split!r}; valid: {', '.join(REAL_SPLITS)}")
        self.root = Path(media) if media is not None else default_cache()
        index = read_media_index(self.root)
        verify_files(self.root, index)
        self.split, self.name = split, f"real-{split}"
        self.augment = split == "train" if augment is None else bool(augment)
        self.packages = index["packages"]
        recordings = index["recordings"]
        heldout_classes = {r["class"] for r in recordings if r["role"] == "heldout"}
        cutouts = [c for c in index["cutouts"] if (c["role"] == "unseen") == (split == "test_novel")]
        if split in ("test_seen_rec", "test_heldout_rec"):
            cutouts = [c for c in cutouts if c["class"] in heldout_classes]
        if only_classes is not None:  # e.g. a demo scene of a dog and a violin
            missing = set(only_classes) - {c["class"] for c in cutouts}
            if missing:
                have = sorted({c["class"] for c in cutouts})
                raise InputError(f"split {split!r} has no class {sorted(missing)}; its classes: {', '.join(have)}")
            cutouts = [c for c in cutouts if c["class"] in only_classes]
        names = sorted({c["class"] for c in cutouts})
        group = {c["class"]: c["group"] for c in cutouts}
        self.classes: tuple[BankClass, ...] = tuple(BankClass(n, group[n]) for n in names)
        self._cutouts = cutouts
        self._objects_of = {i: [c for c in cutouts if c["class"] == n] for i, n in enumerate(names)}
        self._recordings_of = self._choose_recordings(recordings, heldout_classes)
        self._recording_path = {r["key"]: str(self.root / r["path"]) for r in recordings}
        bg_split = _BACKGROUND_SPLIT.get(split, "test")
        self._backgrounds = [str(self.root / b["path"]) for b in index["backgrounds"] if b["split"] == bg_split]
        if not self._backgrounds or not self.classes:
            raise InputError(f"the media in {self.root} have no cut-outs or backgrounds for split {split!r}; fetch again")
        self._images: dict[str, _Cutout] = {}
        self._photos: dict[str, np.ndarray] = {}

    def _choose_recordings(self, recordings: list[dict], heldout_classes: set[str]) -> dict[str, list[str]]:
        """cut-out key -> the recording keys it may sound with in this split."""
        speech = {role: [r["key"] for r in recordings if r["class"] == "person" and r["role"] == role]
                  for role in ("train", "heldout")}
        second = {}
        for r in recordings:
            if r["role"] == "heldout" and r["class"] != "person":
                second.setdefault(r["class"], []).append(r["key"])
        out = {}
        for c in self._cutouts:
            own = speech["train"] if c["recording"] == "speech" else [c["recording"]]
            held = speech["heldout"] if c["class"] == "person" else second.get(c["class"], [])
            use_held = self.split == "test_heldout_rec" or (self.split == "test" and c["class"] in heldout_classes)
            out[c["key"]] = held if use_held else own
        return out

    # ------------------------------------------------------------------ what the composer calls

    def new_look(self, rng: np.random.Generator, class_id: int, radius: float) -> RealLook:
        import cv2

        options = self._objects_of[int(class_id)]
        entry = options[int(rng.integers(len(options)))]
        cut = self._cutout(entry)
        h, w = cut.alpha.shape
        scale = 2.0 * radius / float(np.hypot(h, w))  # the cut-out's half-diagonal = the circumscribed radius
        size = (max(2, int(round(w * scale))), max(2, int(round(h * scale))))
        rgb = cv2.resize(cut.rgb, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(cut.alpha, size, interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            rgb, alpha = rgb[:, ::-1].copy(), alpha[:, ::-1].copy()
        recs = self._recordings_of[entry["key"]]
        recording = recs[int(rng.integers(len(recs)))]
        gain, speed, snr = 0.0, 1.0, None
        if self.augment:
            gain, speed = float(rng.uniform(-4, 4)), float(rng.uniform(0.94, 1.06))
            snr = float(rng.uniform(10, 30)) if rng.random() < 0.3 else None
        return RealLook(entry["key"], recording, rgb, alpha, alpha >= 0.5, gain, speed, snr)

    def look_key(self, look: RealLook) -> str:
        return look.key

    def sound_key(self, look: RealLook) -> str:
        return look.recording

    def background(self, rng: np.random.Generator, size: int) -> np.ndarray:
        import cv2

        path = self._backgrounds[int(rng.integers(len(self._backgrounds)))]
        photo = self._photo(path)
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.55, 1.0))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        image = cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        return np.clip(image * np.float32(rng.uniform(0.85, 1.15)), 0, 255).astype(np.float32)

    def draw(self, image: np.ndarray, look: RealLook, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
        size_y, size_x = image.shape[:2]
        h, w = look.alpha.shape
        y0, x0 = int(round(cy - h / 2)), int(round(cx - w / 2))
        ys, xs = slice(max(y0, 0), min(y0 + h, size_y)), slice(max(x0, 0), min(x0 + w, size_x))
        cy_, cx_ = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
        a = look.alpha[cy_, cx_, None]  # (h', w', 1)
        image[ys, xs] = image[ys, xs] * (1 - a) + look.rgb[cy_, cx_] * a
        mask = np.zeros((size_y, size_x), dtype=bool)
        mask[ys, xs] = look.mask[cy_, cx_]
        return mask

    def sound(self, look: RealLook, rng: np.random.Generator, seconds: float, sample_rate: int) -> np.ndarray:
        from streamavs.audio import resample

        rec = load_recording(self._recording_path[look.recording], sample_rate)
        if look.speed != 1.0:  # playing faster raises the pitch by the same factor, as a tape would
            rec = resample(rec, int(round(sample_rate * look.speed)), sample_rate)
        n = int(round(seconds * sample_rate))
        out = event_track(rec, rng, n, sample_rate) * np.float32(10 ** (look.gain_db / 20))
        if look.noise_snr_db is not None:
            noise = pink_noise(rng, n, sample_rate)
            signal_rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2))) or 1e-4
            noise_rms = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2))) or 1.0
            out = out + noise * np.float32(signal_rms / noise_rms * 10 ** (-look.noise_snr_db / 20))
        return out.astype(np.float32)

    # ------------------------------------------------------------------ loading

    def _cutout(self, entry: dict) -> _Cutout:
        cached = self._images.get(entry["key"])
        if cached is None:
            import cv2

            image = cv2.imread(str(self.root / entry["image"]), cv2.IMREAD_UNCHANGED)
            if image is None or image.ndim != 3 or image.shape[2] != 4:
                raise InputError(f"{self.root / entry['image']} is not an RGBA image; fetch the media again")
            alpha = image[..., 3]
            ys, xs = np.nonzero(alpha >= 128)
            crop = image[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            rgb = crop[..., 2::-1].astype(np.float32)  # BGR -> RGB
            cached = self._images[entry["key"]] = _Cutout(
                entry["key"], self.classes.index(BankClass(entry["class"], entry["group"])), rgb,
                crop[..., 3].astype(np.float32) / 255.0)
        return cached

    def _photo(self, path: str) -> np.ndarray:
        photo = self._photos.get(path)
        if photo is None:
            import cv2

            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                raise InputError(f"cannot read the background photograph {path}; fetch the media again")
            photo = self._photos[path] = image[..., ::-1].astype(np.float32)
        return photo

    def describe(self) -> dict:
        """Provenance and contents of this split, for dataset and engine manifests."""
        return {
            "media": provenance(self.root),
            "bank_split": self.split,
            "objects": sorted(c["key"] for c in self._cutouts),
            "recordings": sorted({k for keys in self._recordings_of.values() for k in keys}),
            "backgrounds": sorted(Path(p).name for p in self._backgrounds),
        }

    # ------------------------------------------------------------------ off-screen sound

    def sound_entries(self, roles: tuple[str, ...]) -> list[tuple[str, str]]:
        """(recording key, group) of every recording with one of `roles`, for an off-screen bank."""
        index = read_media_index(self.root)
        return [(r["key"], r["group"]) for r in index["recordings"] if r["role"] in roles]

    def recording_path(self, key: str) -> str:
        return self._recording_path[key]


def event_track(rec: np.ndarray, rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """float32 (n,): `rec` repeated with short random gaps, starting at a random phase.

    A recording of a second or more starts part-way through (so a window may begin mid-event)
    with gaps of 20-300 ms; a shorter one is spaced so that events start less than 0.9 s apart,
    so every one-second window holds part of an event.
    """
    length = rec.size
    out = np.zeros(n, dtype=np.float32)
    if length >= sample_rate:
        gap_hi, pos = int(0.3 * sample_rate), -int(rng.integers(0, length))
    else:
        gap_hi, pos = max(int(0.05 * sample_rate), int(0.9 * sample_rate) - length), int(rng.integers(0, int(0.3 * sample_rate)))
    gap_lo = min(int(0.02 * sample_rate), gap_hi - 1)
    while pos < n:
        start, stop = max(pos, 0), min(pos + length, n)
        out[start:stop] += rec[start - pos:stop - pos]
        pos += length + int(rng.integers(gap_lo, gap_hi))
    return out
