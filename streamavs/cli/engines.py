"""`streamavs engines [NAME_OR_PATH]`: list the engines found, or describe one.

Both show an engine by its file name, the name --engine takes (streamavs.engine.base.resolve_engine
says why it is not the manifest's ``name`` field), and add the manifest's name where it differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


def _size_mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "missing"


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    """Nested metric dicts -> ("positive.miou", 78.7) rows."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append((prefix, value))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _also_named(manifest, path: Path) -> str:
    """" (manifest name 'x')" when the manifest's name is not its file name, the handle --engine takes; else ""."""
    return "" if manifest.name == path.stem else f" (manifest name {manifest.name!r})"


def _model_check(manifest, model_file: Path) -> str:
    """"ok", "missing" or "sha256 mismatch": the model file against its manifest."""
    from streamavs.engine.manifest import file_sha256

    if not model_file.is_file():
        return "missing"
    return "ok" if file_sha256(model_file) == manifest.sha256 else "sha256 mismatch"


def _check_paths(paths: list[Path]) -> None:
    """Every --path exists: a folder of engines or a manifest file."""
    from streamavs.errors import InputError

    for path in paths:
        if not path.exists():
            raise InputError(
                f"--path {path} does not exist; give a folder holding engines (NAME.json beside its model file) "
                "or a manifest NAME.json"
            )


def _passed_over(paths: list[Path], found: list[Path]) -> list[tuple[Path, str]]:
    """(file, why) for each JSON file under --path that is not a readable engine manifest."""
    from streamavs.engine import read_manifest
    from streamavs.errors import EngineError

    known = {f.resolve() for f in found}
    out: list[tuple[Path, str]] = []
    for path in paths:
        for candidate in [path] if path.is_file() else sorted(path.glob("*.json")):
            if candidate.resolve() in known:
                continue
            try:
                read_manifest(candidate)
            except EngineError as exc:
                out.append((candidate, str(exc)))
            else:
                out.append((candidate, "not recognised as an engine manifest"))
    return out


def _list(paths: list[Path]) -> None:
    from streamavs.engine import engine_dirs, find_engines, read_manifest
    from streamavs.errors import EngineError

    _check_paths(paths)
    found = find_engines(paths)
    for skipped, why in _passed_over(paths, found):
        typer.echo(f"skipped {skipped}: {why}", err=True)
    searched = [str(p) for p in paths] + [str(d) for d in engine_dirs()]
    if not found:
        typer.echo(f"no engines found in {searched or ['the shipped folder', './engines']}; "
                   "export one with `streamavs export CHECKPOINT --backend onnx`")
        return
    typer.echo(f"{'engine':<24} {'backend':<9} {'prec':<5} {'frame':<9} {'T':>2} {'size':>10}  {'check':<15}  manifest")
    bad = []
    for path in found:
        try:
            m = read_manifest(path)
        except EngineError as exc:
            typer.echo(f"{path.stem:<24} unreadable: {exc}")
            continue
        frame = f"{m.frame.size[0]}x{m.frame.size[1]}"
        window = str(m.temporal.window) if m.temporal else "-"
        model_file = path.parent / m.model_file
        check = _model_check(m, model_file)
        if check != "ok":
            bad.append(str(path))
        typer.echo(f"{path.stem:<24} {m.backend:<9} {m.precision:<5} {frame:<9} {window:>2} {_size_mb(model_file):>10}  "
                   f"{check:<15}  {path}{_also_named(m, path)}")
    if bad:
        typer.echo(f"{len(bad)} engine(s) failed the model file check; `streamavs engines {bad[0]}` says why", err=True)


def _parity_line(parity: dict[str, Any]) -> str:
    """The export's parity check in words: an INT8 engine is gated on the share of mask pixels that
    differ from the FP32 engine, an FP32 export on the largest difference of each output."""
    reference, tolerance = parity.get("reference", "?"), parity.get("tolerance")
    verdict = {True: "passed", False: "FAILED"}.get(parity.get("passed"), "recorded")
    if parity.get("gated_on") == "mask_disagreement":
        return (f"{verdict} against {reference}: {100 * parity['mask_disagreement']:.2f}% of mask pixels differ "
                f"(tolerance {100 * tolerance:g}%) over {parity.get('frames', '?')} frames, "
                f"{parity.get('gate_flips', '?')} sounding-gate flips")
    diffs = ", ".join(f"{k} {_fmt(v)}" for k, v in (parity.get("max_abs_diff") or {}).items())
    return f"max abs diff vs {reference}: {diffs} (tolerance {tolerance})"


def _media_lines(media: dict[str, Any] | None) -> list[str]:
    """The media packages the engine learned from (name, version, licence), or that none are recorded."""
    packages = (media or {}).get("packages") or {}
    if not packages:
        return ["media        none recorded (procedural data, or an engine exported before media provenance)"]
    return [f"media        {name} {info.get('version', '?')}: {info.get('licence', 'licence not recorded')}"
            for name, info in packages.items()]


def _describe(target: str, as_json: bool) -> None:
    from streamavs.engine import read_manifest, resolve_engine
    from streamavs.engine.manifest import check_model_file, file_sha256
    from streamavs.errors import InputError

    path = resolve_engine(target)
    if path.suffix == ".pt":
        raise InputError(f"{path} is a PyTorch checkpoint, not an exported engine; export it with `streamavs export {path}`")
    m = read_manifest(path)
    model_file = path.parent / m.model_file
    check = _model_check(m, model_file)
    if as_json:
        typer.echo(json.dumps(m.to_dict(), indent=2))
        if check != "ok":
            check_model_file(m, model_file)  # after the manifest: one error line and exit status 2
        return
    if check == "ok":
        sha = f"sha256 {m.sha256[:16]}..., matches the manifest"
    elif check == "missing":
        sha = f"manifest sha256 {m.sha256[:16]}..."
    else:
        sha = f"sha256 {file_sha256(model_file)[:16]}... but the manifest says {m.sha256[:16]}...: CORRUPTED or modified"
    lines = [
        f"engine       {path.stem}{_also_named(m, path)}",
        f"manifest     {path} (format_version {m.format_version}, created {m.created})",
        f"model file   {model_file} ({_size_mb(model_file)}, {sha})",
        f"backend      {m.backend}, {m.precision}",
        f"model        {m.model.get('name', '?')}",
        f"frame        {m.frame.size[0]}x{m.frame.size[1]} {m.frame.layout}; {m.frame.normalisation}",
        f"audio        {m.audio.params.sample_rate} Hz, {m.audio.params.n_mels} mels x {m.audio.params.example_frames} "
        f"frames, window {m.audio.window_s} s ({m.audio.example})",
        "temporal     " + (f"window {m.temporal.window}, cache {list(m.temporal.cache_shape)}" if m.temporal else "none"),
        f"thresholds   mask {m.thresholds.mask}, gate {m.thresholds.gate}, hysteresis {m.thresholds.hysteresis} "
        f"(reset {m.thresholds.hysteresis_reset}); audio_hop {m.audio_hop}",
        "inputs       " + ", ".join(f"{t.name} {list(t.shape)} {t.dtype}" for t in m.inputs),
        "outputs      " + ", ".join(f"{t.name} {list(t.shape)} {t.dtype}" for t in m.outputs),
        "versions     " + ", ".join(f"{k} {v}" for k, v in m.versions.items() if v is not None),
    ]
    export = m.export
    if export:
        lines.append(f"export       {export.get('exporter', '?')}" + (f", opset {export['opset']}" if export.get("opset") else ""))
        parity = export.get("parity") or {}
        if parity:
            lines.append(f"parity       {_parity_line(parity)}")
    stage = m.training.get("temporal_stage") or {}
    lines.append(f"training     {'segmenter ' if stage.get('data') else ''}data: {m.training.get('data', 'not recorded')}")
    if stage.get("data"):  # recorded since 2026-11-30: the clips the temporal stage trained on, and its recipe
        negatives = (stage.get("temporal") or {}).get("clip_negative_share", "?")
        lines.append(f"             temporal stage: {stage['data']}, negative share {negatives}, "
                     f"epoch {stage.get('best_epoch', '?')} kept, on {stage.get('segmenter_checkpoint', '?')}")
    lines.extend(_media_lines(m.training.get("media")))
    evaluation = m.training.get("eval") or {}
    for title, table in (
        (f"test         the engine on {evaluation.get('data', '?')} ({evaluation.get('clips', '?')} clips; training.eval), "
         "similarity gate off", evaluation.get("gate_off")),
        ("validation   the segmenter during training (training.metrics)", m.training.get("metrics")),
    ):
        rows: list[tuple[str, Any]] = []
        _flatten("", table or {}, rows)
        if rows:
            lines.append(title)
            lines.extend(f"  {key:<28} {_fmt(value)}" for key, value in rows)
    if not evaluation and not m.training.get("metrics"):
        lines.append("metrics      none recorded")
    typer.echo("\n".join(lines))
    if check != "ok":
        check_model_file(m, model_file)  # after the description: one error line and exit status 2


def register(app: typer.Typer) -> None:
    @app.command()
    def engines(
        name_or_path: Annotated[
            Optional[str], typer.Argument(help="Engine name or path (.json/.onnx/.ep) to describe; omit to list.")
        ] = None,
        path: Annotated[
            Optional[list[Path]], typer.Option("--path", help="Also search this folder (repeatable).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest as JSON.")] = False,
    ) -> None:
        """List the engines found (shipped folder, ./engines, --path) by the name --engine takes, or describe one."""
        if name_or_path is None:
            _list(list(path or []))
        else:
            _describe(name_or_path, as_json)
