"""Looking at a dataset in the AVSBench layout: counts per split/category and an overlay picture.

Works on anything :func:`streamavs.synthetic.write_avsbench` writes (and on the real
AVSBench folders, as long as its wavs and all masks are present).
"""

from __future__ import annotations

import csv
import json
import wave
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamavs.errors import DataError, require
from streamavs.synthetic.disk import CLIPS_FILE, MS3_ROOT, S4_ROOT

__all__ = ["Sample", "list_samples", "count_samples", "render_overview", "read_wav"]


@dataclass(frozen=True)
class Sample:
    """One clip on disk: setting ("single" | "multi"), split, name, category ("" for multi), file paths."""

    setting: str
    split: str
    name: str
    category: str
    wav: Path
    frame_dir: Path
    mask_dir: Path

    def frame_path(self, k: int) -> Path:
        """Frame k (1-based) of the clip."""
        stem = f"{self.name}_{k}" if self.setting == "single" else f"{self.name}.mp4_{k}"
        return self.frame_dir / f"{stem}.png"

    def mask_path(self, k: int) -> Path:
        return self.mask_dir / f"{self.name}_{k}.png"


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    return rows[1:] if rows and rows[0][0] == "name" else rows


def list_samples(root: str | Path) -> list[Sample]:
    """All clips listed by the meta-data CSVs under `root` (S4 first, then MS3)."""
    root = Path(root)
    samples = []
    s4_csv, ms3_csv = root / S4_ROOT / "s4_meta_data.csv", root / MS3_ROOT / "ms3_meta_data.csv"
    if s4_csv.exists():
        data = root / S4_ROOT / "s4_data"
        for row in _read_csv(s4_csv):
            name, _, category, split = row[:4]
            samples.append(Sample("single", split, name, category, data / "audio_wav" / split / category / f"{name}.wav",
                                  data / "visual_frames" / split / category / name, data / "gt_masks" / split / category / name))
    if ms3_csv.exists():
        data = root / MS3_ROOT / "ms3_data"
        for row in _read_csv(ms3_csv):
            name, split = row[:2]
            samples.append(Sample("multi", split, name, "", data / "audio_wav" / split / f"{name}.wav",
                                  data / "visual_frames" / name, data / "gt_masks" / split / name))
    if not samples:
        raise DataError(
            f"no AVSBench meta data under {root}: expected {S4_ROOT}/s4_meta_data.csv or {MS3_ROOT}/ms3_meta_data.csv; "
            "make one with: streamavs data synth --out DIR"
        )
    return samples


def count_samples(samples: list[Sample]) -> dict[str, dict[str, dict[str, int]]]:
    """{setting: {split: {category: count}}} (multi clips count under category "all")."""
    counts: dict[str, dict[str, Counter]] = {}
    for s in samples:
        counts.setdefault(s.setting, {}).setdefault(s.split, Counter())[s.category or "all"] += 1
    return {setting: {split: dict(sorted(c.items())) for split, c in splits.items()} for setting, splits in counts.items()}


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> (float32 (n, channels) in [-1, 1], sample rate)."""
    if not path.exists():
        raise DataError(f"missing audio file {path}; regenerate the clip or remove it from the meta-data CSV")
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2:
            raise DataError(f"{path} has {8 * handle.getsampwidth()}-bit samples; expected 16-bit PCM")
        raw = handle.readframes(handle.getnframes())
        channels, rate = handle.getnchannels(), handle.getframerate()
    return np.frombuffer(raw, dtype="<i2").reshape(-1, channels).astype(np.float32) / 32768.0, rate  # (n, C)


def _read_image(path: Path, flags: int) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), flags)
    if image is None:
        raise DataError(f"missing or unreadable image {path}; regenerate the dataset")
    return image


def _sounding_names(root: Path, setting: str) -> dict[str, dict]:
    path = root / (S4_ROOT if setting == "single" else MS3_ROOT) / CLIPS_FILE
    if not path.exists():
        return {}
    return {rec["name"]: rec for rec in map(json.loads, filter(str.strip, path.read_text().splitlines()))}


def render_overview(root: str | Path, out_png: str | Path, n: int = 4) -> Path:
    """Write a picture of `n` clips per setting: frame, mask overlay and log-mel of its second.

    Row i shows second k = i mod T of its clip (frame k + 1 on disk) so that several
    seconds appear. Needs matplotlib (the `train` extra).
    """
    import cv2

    figure = require("matplotlib.figure", "train", "streamavs data inspect (the overview picture)")
    from streamavs.audio import LogMel, prepare_waveform

    root, out_png = Path(root), Path(out_png)
    samples = list_samples(root)
    chosen: list[Sample] = []
    for setting in ("single", "multi"):
        pool = [s for s in samples if s.setting == setting]
        if pool:
            picks = np.unique(np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int))
            chosen += [pool[i] for i in picks]
    meta = {setting: _sounding_names(root, setting) for setting in ("single", "multi")}
    logmel = LogMel()
    fig = figure.Figure(figsize=(9.6, 3.1 * len(chosen)))  # no pyplot: no global figure state
    axes = fig.subplots(len(chosen), 3, squeeze=False)
    for i, sample in enumerate(chosen):
        seconds = len(list(sample.mask_dir.glob(f"{sample.name}_*.png")))
        if seconds == 0:
            raise DataError(f"no masks in {sample.mask_dir}; expected {sample.name}_1.png ...")
        k = i % seconds
        frame = cv2.cvtColor(_read_image(sample.frame_path(k + 1), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        mask = _read_image(sample.mask_path(k + 1), cv2.IMREAD_GRAYSCALE) > 127
        overlay = frame.astype(np.float32)
        overlay[mask] = 0.45 * overlay[mask] + 0.55 * np.array([255, 0, 0], dtype=np.float32)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        overlay = cv2.drawContours(np.ascontiguousarray(overlay.astype(np.uint8)), contours, -1, (255, 255, 255), 1)
        audio, rate = read_wav(sample.wav)
        mono = prepare_waveform(audio, rate)  # (n,) 16 kHz
        example = logmel.examples_per_second(mono, k + 1)[k]  # (96, 64)
        rec = meta[sample.setting].get(sample.name)
        if rec is not None:
            heard = [c for c, on in zip(rec["classes"], rec["sounding"][k]) if on]
            label = f"sounding: {', '.join(heard) or 'nothing'}"
        else:
            label = sample.category or "multi"
        axes[i, 0].imshow(frame)
        axes[i, 0].set_title(f"{sample.setting}/{sample.split} {sample.name}\nsecond {k}", fontsize=8)
        axes[i, 1].imshow(overlay)
        axes[i, 1].set_title(f"GT mask ({mask.mean():.1%} of pixels)\n{label}", fontsize=8)
        axes[i, 2].imshow(example.T, origin="lower", aspect="auto", cmap="magma")
        rms = np.sqrt(np.mean(audio[k * rate : (k + 1) * rate] ** 2, axis=0))  # (C,)
        levels = "/".join(f"{20 * np.log10(max(float(v), 1e-6)):.0f}" for v in rms)
        axes[i, 2].set_title(f"log-mel of [{k}, {k + 1}) s\nRMS L/R {levels} dBFS", fontsize=8)
        axes[i, 2].set_xlabel("frame (10 ms)", fontsize=7)
        axes[i, 2].set_ylabel("mel band", fontsize=7)
        for ax in axes[i, :2]:
            ax.axis("off")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=64)
    return out_png
