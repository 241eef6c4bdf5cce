"""`streamavs data`: fetch the real media, make and look at datasets (procedural or real-media, AVSBench layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(help="Fetch the real media; make and inspect datasets in the AVSBench layout.", no_args_is_help=True)

# Options shared by the dataset writers (synth, real).
OutOption = Annotated[Path, typer.Option("--out", help="Dataset root (Single-source/ and Multi-sources/ go inside).")]
SettingOption = Annotated[str, typer.Option(help="single (S4 layout) or multi (MS3 layout).")]
CountOption = Annotated[int, typer.Option(help="Number of clips to write.", min=1)]
SeedOffsetOption = Annotated[int, typer.Option(help="Index of the first clip (clip i has seed split_seed(split, i)).")]
ImageSizeOption = Annotated[int, typer.Option(help="Frame height = width in pixels.")]
SecondsOption = Annotated[int, typer.Option(help="Clip length in seconds (one frame per second).")]
StateChangeOption = Annotated[float, typer.Option(help="Chance per source and second that it starts/stops sounding.")]
CacheOption = Annotated[Optional[Path], typer.Option(
    help="Real-media cache folder (default: $STREAMAVS_MEDIA or ~/.cache/streamavs/media).")]


@data_app.command("synth")
def synth(
    out: OutOption,
    setting: SettingOption = "single",
    split: Annotated[str, typer.Option(help="train, val or test.")] = "train",
    count: CountOption = 100,
    seed_offset: SeedOffsetOption = 0,
    image_size: ImageSizeOption = 224,
    seconds: SecondsOption = 5,
    state_change_prob: StateChangeOption = 0.0,
    distractor_share: Annotated[float, typer.Option(help="single: share of clips with silent distractor objects.")] = 0.5,
    ambient_dbfs: Annotated[Optional[float], typer.Option(help="Pink-noise floor in dBFS (e.g. -50); off by default.")] = None,
    mono: Annotated[bool, typer.Option("--mono", help="No stereo panning (the mono mix in both channels).")] = False,
) -> None:
    """Write synthetic clips (frames, 16-bit stereo WAV, per-second masks) in the AVSBench layout."""
    from streamavs.cli.checks import output_dir
    from streamavs.synthetic import SceneConfig, write_avsbench

    output_dir(out, "--out", example="dataset")
    config = SceneConfig(image_size=image_size, seconds=seconds, setting=setting, distractor_share=distractor_share,
                         state_change_prob=state_change_prob, ambient_dbfs=ambient_dbfs, stereo=not mono)
    names = write_avsbench(out, split, count, config, first_index=seed_offset)
    typer.echo(f"wrote {len(names)} {setting}-source clips of split {split} to {out}")


@data_app.command("fetch")
def fetch(
    cache: CacheOption = None,
) -> None:
    """Download the real photographs and recordings (Debian packages, GPL/CC: never commit them) and index them."""
    from streamavs.realmedia.catalog import summary
    from streamavs.realmedia.fetch import fetch_media, read_media_index

    path = fetch_media(cache, progress=typer.echo)
    counts = summary(read_media_index(path.parent))
    typer.echo("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@data_app.command("real")
def real(
    out: OutOption,
    split: Annotated[str, typer.Option(help="train, val, test, test_seen_rec, test_heldout_rec or test_novel.")] = "test",
    setting: SettingOption = "single",
    count: CountOption = 100,
    seed_offset: SeedOffsetOption = 0,
    image_size: ImageSizeOption = 224,
    seconds: SecondsOption = 5,
    state_change_prob: StateChangeOption = 0.0,
    cache: CacheOption = None,
) -> None:
    """Write real-media clips (cut-outs + their recordings on real photographs) in the AVSBench layout."""
    from streamavs.cli.checks import output_dir
    from streamavs.realmedia.bank import RealBank
    from streamavs.synthetic import SceneConfig, write_avsbench

    output_dir(out, "--out", example="dataset")
    bank = RealBank(split, cache)  # checks the split name and that the media were fetched
    config = SceneConfig(image_size=image_size, seconds=seconds, setting=setting, state_change_prob=state_change_prob)
    seed_split = "test" if split.startswith("test") else split
    names = write_avsbench(out, seed_split, count, config, first_index=seed_offset, bank=bank)
    typer.echo(f"wrote {len(names)} real-media {setting}-source clips of split {split} to {out}")


@data_app.command("inspect")
def inspect(
    root: Annotated[Path, typer.Argument(help="Dataset root holding Single-source/ and/or Multi-sources/.")],
    out: Annotated[Optional[Path], typer.Option(help="Overview picture to write (PNG).")] = None,
    n: Annotated[int, typer.Option(help="Clips per setting in the picture.")] = 4,
) -> None:
    """Print clip counts per split and category, and write an overview picture (needs matplotlib)."""
    from streamavs.errors import InputError
    from streamavs.synthetic.overview import count_samples, list_samples, render_overview

    if n < 1:
        raise InputError(f"--n must be at least 1 clip per setting, got {n}")
    counts = count_samples(list_samples(root))
    for setting, splits in counts.items():
        for split, categories in splits.items():
            total = sum(categories.values())
            detail = ", ".join(f"{name} {value}" for name, value in categories.items())
            typer.echo(f"{setting:6s} {split:5s} {total:6d} clips  ({detail})")
    picture = render_overview(root, out if out is not None else root / "overview.png", n)
    typer.echo(f"overview picture: {picture}")


@data_app.command("video")
def video(
    out: Annotated[Path, typer.Option("--out", help="Video file to write (.mp4 or .mkv).")],
    seconds: Annotated[int, typer.Option(help="Length in seconds.")] = 10,
    sound_starts: Annotated[float, typer.Option(help="Seconds of silence before the source starts sounding.")] = 3.0,
    seed: Annotated[Optional[int], typer.Option(help="Scene seed (the test split's first clip by default; not with --real).")] = None,
    fps: Annotated[int, typer.Option(help="Video frame rate.")] = 30,
    audio_rate: Annotated[int, typer.Option(help="AAC sample rate in Hz.")] = 44100,
    setting: Annotated[Optional[str], typer.Option(help="single or multi (default single; not with --real).")] = None,
    real: Annotated[bool, typer.Option("--real", help="A real-media scene (fetched media): a sounding --source beside a silent --distractor.")] = False,
    source: Annotated[Optional[str], typer.Option(help="--real: the class that starts sounding (default dog).")] = None,
    distractor: Annotated[Optional[str], typer.Option(help="--real: the class that stays silent (default violin).")] = None,
    cache: CacheOption = None,
) -> None:
    """Write a scene as H.264 + AAC (ffmpeg): silent until --sound-starts, then sounding."""
    from streamavs.cli.checks import output_file
    from streamavs.errors import InputError
    from streamavs.synthetic import SceneConfig
    from streamavs.synthetic.config import split_seed
    from streamavs.synthetic.video import demo_clip, real_demo_clip, write_video

    if seconds < 1:
        raise InputError(f"--seconds must be at least 1, got {seconds}")
    if not 0 <= sound_starts < seconds:
        raise InputError(f"--sound-starts {sound_starts:g} must be in [0, {seconds}) for a {seconds} s video "
                         f"(--seconds {seconds}): lower --sound-starts or raise --seconds")
    output_file(out, "--out", example="demo.mp4")
    if real and (seed is not None or setting is not None):
        raise InputError("--seed and --setting choose a procedural scene; --real takes the first real-media test scene "
                         "with a sounding --source beside a silent --distractor: drop them, or drop --real")
    if not real and (source is not None or distractor is not None):
        raise InputError("--source and --distractor choose the objects of a real-media scene: add --real, or drop them")
    if real:
        clip = real_demo_clip(source or "dog", distractor or "violin", seconds, sound_starts, cache)
    else:
        clip = demo_clip(split_seed("test", 0) if seed is None else seed, seconds, sound_starts,
                         SceneConfig(setting=setting or "single"))
    write_video(clip, out, fps=fps, audio_rate=audio_rate)
    typer.echo(f"wrote {out}: {seconds} s at {fps} fps, sound starts at {sound_starts} s ({clip.category})")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
