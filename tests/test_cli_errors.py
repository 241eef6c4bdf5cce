"""One-line errors instead of tracebacks: bad output paths, recipe values, inputs, engines
(bad checkpoints: test_cli_checkpoint_errors.py).

Every error case asserts the one line (with its advice), exit status 2 and that no traceback
reaches stderr. Subprocess runs where the user's exact experience matters (start-up order,
click's own handling of EOFError); in-process `main` for the rest, to keep the file fast.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_output import one_error_line

from streamavs.cli import main


def cli(*args, env: dict | None = None, timeout: float = 120) -> tuple[int, str, str]:
    """`python -m streamavs ARGS` in a subprocess: (exit status, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "streamavs", *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


IMPORTS = (
    "import sys; from streamavs.cli import main; code = main(sys.argv[2:]);"
    "print(','.join(m for m in sys.argv[1].split(',') if m in sys.modules)); sys.exit(code)"
)


def cli_imports(modules: list[str], *args) -> tuple[int, str, list[str]]:
    """`streamavs ARGS` in a fresh interpreter: (exit status, stderr, which of `modules` it imported).

    Shows what a command did before it failed: a check made "before the work starts" leaves
    the work's modules unimported, whatever the machine's speed.
    """
    proc = subprocess.run(
        [sys.executable, "-c", IMPORTS, ",".join(modules), *map(str, args)], capture_output=True, text=True,
        timeout=120, env={**os.environ, "STREAMAVS_DEBUG": "0"},
    )  # fmt: skip
    return proc.returncode, proc.stderr, [m for m in proc.stdout.strip().split(",") if m]


def in_process(capsys, *args) -> str:
    """`streamavs ARGS` through streamavs.cli.main in this process; returns the one error line."""
    code = main([*map(str, args)])
    return one_error_line(code, capsys.readouterr().err)


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    # set (not deleted) so that monkeypatch restores it: --debug writes it for the process
    monkeypatch.setenv("STREAMAVS_DEBUG", "0")


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "afile"
    path.write_text("keep me")
    return path


# -- 1. output paths are checked before any work starts -----------------------------------------
def test_run_record_under_a_file_fails_before_the_pipeline_starts(a_file):
    code, _, err = cli("run", "--synthetic", "--frames", "2", "--record", a_file / "out.mp4")
    line = one_error_line(code, err)
    assert line == (
        f"streamavs: error: --record {a_file}/out.mp4: {a_file} is a file, not a folder, so nothing can be "
        "written under it; choose a path in a folder, e.g. --record ./out.mp4"
    )


def test_run_record_in_a_missing_folder_or_onto_a_folder(capsys, tmp_path):
    line = in_process(capsys, "run", "--synthetic", "--record", tmp_path / "nope" / "out.mp4")
    assert f"the folder {tmp_path / 'nope'} does not exist; create it first (mkdir -p {tmp_path / 'nope'})" in line
    line = in_process(capsys, "run", "--synthetic", "--record", tmp_path)
    assert line.endswith(f"--record {tmp_path} is a folder; expected a file name, e.g. --record {tmp_path}/out.mp4")


def test_run_view_on_a_taken_port_fails_before_the_pipeline_starts(capsys):
    """The viewer runs as a child process; a port it cannot listen on is refused up front, naming
    `run`'s own option (not the child's --port), instead of a run that goes on without its viewer."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = in_process(capsys, "run", "--synthetic", "--frames", "2", "--view", port)
    assert line.startswith(f"streamavs: error: --view {port}: cannot serve the viewer on 127.0.0.1:{port}: ")
    assert line.endswith(f"choose another port, e.g. --view {port + 1}")


def test_data_video_options_are_checked_against_each_other(capsys, tmp_path):
    line = in_process(capsys, "data", "video", "--out", tmp_path / "v.mp4", "--seconds", "2")  # default --sound-starts 3
    assert line == ("streamavs: error: --sound-starts 3 must be in [0, 2) for a 2 s video (--seconds 2): "
                    "lower --sound-starts or raise --seconds")
    line = in_process(capsys, "data", "video", "--out", tmp_path, "--seconds", "5", "--sound-starts", "1")
    assert line.endswith(f"--out {tmp_path} is a folder; expected a file name, e.g. --out {tmp_path / 'demo.mp4'}")
    assert not list(tmp_path.iterdir())


def test_data_video_options_of_the_other_kind_of_scene_are_refused(capsys, tmp_path):
    """--seed/--setting pick a procedural scene and --source/--distractor a real-media one: given to the
    other kind they were ignored without a word (the same file came out)."""
    base = ["data", "video", "--out", tmp_path / "v.mp4", "--seconds", "2", "--sound-starts", "1"]
    line = in_process(capsys, *base, "--real", "--seed", "7")
    assert line.startswith("streamavs: error: --seed and --setting choose a procedural scene; --real takes")
    line = in_process(capsys, *base, "--source", "cat")
    assert line == ("streamavs: error: --source and --distractor choose the objects of a real-media scene: "
                    "add --real, or drop them")
    line = in_process(capsys, *base, "--real", "--source", "dog", "--distractor", "dog")
    assert "must be different classes, got 'dog' for both" in line
    assert not list(tmp_path.iterdir())


def test_export_of_an_engine_without_int8_points_to_int8(capsys, tmp_path):
    engine = tmp_path / "e.json"
    engine.write_text("{}")
    line = in_process(capsys, "export", engine, "--out", tmp_path / "out")
    assert line.endswith(f"to quantize this FP32 engine to INT8 add --int8 (streamavs export {engine} --int8)")


def test_subscribe_save_onto_a_file(a_file):
    code, _, err = cli("subscribe", "tcp://127.0.0.1:5999", "--count", "1", "--save", a_file)
    line = one_error_line(code, err)
    assert f"--save {a_file} is a file; expected a folder (created if missing)" in line
    assert f"e.g. --save {a_file.parent / 'masks'}" in line
    assert a_file.read_text() == "keep me"


def test_data_synth_out_onto_a_file(a_file):
    code, _, err = cli("data", "synth", "--out", a_file, "--count", "1", "--image-size", "32", "--seconds", "1")
    line = one_error_line(code, err)
    assert f"--out {a_file} is a file; expected a folder (created if missing)" in line
    assert a_file.read_text() == "keep me"


def test_bench_latency_json_is_checked_before_the_benchmark_runs(a_file):
    bench = ["streamavs.bench.latency", "streamavs.pipeline"]
    code, err, imported = cli_imports(bench, "bench", "latency", "--seconds", "60", "--json", a_file / "latency.json")
    line = one_error_line(code, err)
    assert imported == []  # the benchmark (which would run for minutes) was not even imported
    assert f"--json {a_file}/latency.json: {a_file} is a file, not a folder" in line
    assert "e.g. --json ./latency.json" in line


@pytest.mark.parametrize(
    "args, option",
    [
        (["run", "--synthetic", "--record", "{dir}/out.mp4"], "--record"),
        (["subscribe", "tcp://127.0.0.1:5999", "--save", "{dir}/masks"], "--save"),
        (["data", "synth", "--out", "{dir}/data"], "--out"),
        (["bench", "latency", "--json", "{dir}/x.json"], "--json"),
    ],
)
def test_unwritable_output_folders(capsys, monkeypatch, tmp_path, args, option):
    # Root writes anywhere, so the permission is simulated; the test below uses a real one.
    from streamavs.cli import checks

    monkeypatch.setattr(checks, "_writable", lambda folder: Path(folder) != tmp_path)
    line = in_process(capsys, *[a.format(dir=tmp_path) for a in args])
    assert f"{option} {tmp_path}/" in line
    assert f"the folder {tmp_path} is not writable (permission denied or a read-only file system); " in line
    assert f"choose a folder you can write to, e.g. {option} ./" in line


def _without_root_override() -> list[str]:
    """A command prefix under which root's permission override is gone: a new user namespace
    (`unshare --user`), where root keeps its files' owner bits but no capability over them. Empty
    for another user; the test is skipped where namespaces are not allowed."""
    import shutil

    if os.geteuid() != 0:
        return []
    probe = subprocess.run(["unshare", "--user", "true"], capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("running as root and no user namespace (unshare --user) to give up root's override")
    return ["unshare", "--user"]


def test_unwritable_folder_for_real(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)  # its owner may not write either
    proc = subprocess.run(
        [*_without_root_override(), sys.executable, "-m", "streamavs", "subscribe", "tcp://127.0.0.1:5999",
         "--count", "1", "--save", str(locked / "masks")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert f"the folder {locked} is not writable" in one_error_line(proc.returncode, proc.stderr)


# -- 2. recipe values are checked by type at load time -------------------------------------------
def recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text('name = "t"\n' + text)
    return path


def test_recipe_value_of_the_wrong_type(tmp_path):
    path = recipe(tmp_path, '[optim]\nlr = "fast"\n')
    code, err, imported = cli_imports(["torch"], "train", "--config", path)
    assert one_error_line(code, err) == (
        f"streamavs: error: {path}: [optim] lr must be a number, got the string 'fast'; fix the value, e.g. lr = 0.0003"
    )
    assert imported == []  # refused before torch is imported, not after its ~10 s of start-up


def test_set_value_of_the_wrong_type(tmp_path):
    code, _, err = cli("train", "--config", recipe(tmp_path, ""), "--set", "optim.lr=abc")
    assert one_error_line(code, err) == (
        "streamavs: error: --set optim.lr: [optim] lr must be a number, got the string 'abc'; "
        "values are TOML literals, e.g. --set optim.lr=0.0003"
    )


def test_resume_and_max_steps_are_refused_for_a_temporal_recipe(tmp_path):
    """The temporal trainer has no resume or step limit: the flags are refused, not silently ignored."""
    path = recipe(tmp_path, "[temporal]\nwindow = 5\n")
    code, err, imported = cli_imports(["torch"], "train", "--config", path, "--resume", "--max-steps", "3")
    assert one_error_line(code, err) == (
        f"streamavs: error: --resume and --max-steps apply to segmenter recipes; {path} has a [temporal] section, "
        "whose stage trains in one run (~20 min on 2 CPU cores, fewer epochs: --set optim.epochs=N): "
        "drop --resume and --max-steps"
    )
    assert imported == []


def test_negative_epochs_are_refused(tmp_path):
    path = recipe(tmp_path, "[optim]\nepochs = -3\n")
    code, _, err = cli("train", "--config", path)
    assert one_error_line(code, err) == (
        f"streamavs: error: {path}: [optim] epochs must be > 0, got -3; fix the value, e.g. epochs = 4"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("[data]\nimage_size = true\n", "[data] image_size must be an integer, got the boolean true; "
                                        "fix the value, e.g. image_size = 224"),
        ("[data]\nimage_size = 2.5\n", "[data] image_size must be an integer, got the number 2.5"),
        ("[optim]\namp = 1\n", "[optim] amp must be a boolean (true or false), got the integer 1; "
                               "fix the value, e.g. amp = true"),
        ("[data]\nnegative_kinds = \"silence\"\n", "[data] negative_kinds must be a list of strings, got the string "
                                                   "'silence'; fix the value, e.g. negative_kinds = [\"silence\", \"offscreen\"]"),
        ("[data]\nnegative_kinds = [1]\n", "[data] negative_kinds must be a list of strings, got the list [1]"),
        ("[data]\nroot = 3\nkind = \"avsbench_s4\"\n", "[data] root must be a string, got the integer 3"),
        ("[model]\noverrides = 3\n", "[model] overrides must be a table, got the integer 3"),
        ("seed = \"x\"\n", "seed must be an integer, got the string 'x'; fix the value, e.g. seed = 0"),
        ("optim = 3\n", "[optim] must be a table of keys, got the integer 3; write it as a [optim] section"),
        ("[optim]\nbatch_size = 0\n", "[optim] batch_size must be > 0, got 0; fix the value, e.g. batch_size = 16"),
        ("[optim]\nlr = 0\n", "[optim] lr must be > 0, got 0.0; fix the value, e.g. lr = 0.0003"),
        ("[eval]\nbatch_size = -1\n", "[eval] batch_size must be > 0, got -1; fix the value, e.g. batch_size = 16"),
    ],
)
def test_recipe_types_and_ranges(capsys, tmp_path, text, message):
    path = recipe(tmp_path, text)
    line = in_process(capsys, "train", "--config", path)
    assert line.startswith(f"streamavs: error: {path}: {message}")
    assert "; fix the value" in line or "; write it as" in line


def test_an_int_where_a_float_is_expected_is_fine(tmp_path):
    from streamavs.training.config import TrainConfig, load_config

    cfg = load_config(recipe(tmp_path, '[optim]\nlr = 1\n[data]\nnegative_kinds = ["silence"]\n'), {"loss.lambda_sim": 2})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.loss.lambda_sim == 2.0 and isinstance(cfg.loss.lambda_sim, float)
    assert cfg.data.negative_kinds == ("silence",)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # as saved in checkpoints (temporal None)


# -- 3. a folder given as --input -------------------------------------------------------------------
def test_run_input_folder(tmp_path):
    code, _, err = cli("run", "--input", tmp_path)
    assert one_error_line(code, err) == (
        f"streamavs: error: --input {tmp_path} is a folder; expected a video file with audio (mp4, mkv, ...) "
        "or a URL such as rtsp://host/stream: name one file in it"
    )


# -- 4. engines: the model file is checked against its manifest ----------------------------------
@pytest.fixture
def fake_engine(tmp_path) -> Path:
    """A manifest and a stand-in model file with the right hash (describing never runs the model)."""
    from streamavs.engine.manifest import FrameSpec, Manifest, TensorSpec, write_manifest

    folder = tmp_path / "engines"
    folder.mkdir()
    model = folder / "fake.onnx"
    model.write_bytes(b"not really onnx")
    cache = (1, 1)
    manifest = Manifest(
        name="fake", backend="onnx", precision="fp32", model_file=model.name,
        sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
        inputs=(TensorSpec("frame", (1, 8, 8, 3), "uint8"), TensorSpec("log_mel", (1, 1, 96, 64), "float32"),
                TensorSpec("feature_cache", cache, "float32")),
        outputs=(TensorSpec("mask_prob", (1, 1, 8, 8), "float32"), TensorSpec("uncertainty", (1, 1, 8, 8), "float32"),
                 TensorSpec("sounding", (1,), "float32"), TensorSpec("new_feature_cache", cache, "float32")),
        frame=FrameSpec(size=(8, 8), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
    )  # fmt: skip
    return write_manifest(manifest, folder / "fake.json")


def test_engines_reports_a_corrupted_model_file(capsys, fake_engine):
    digest = hashlib.sha256(fake_engine.with_suffix(".onnx").read_bytes()).hexdigest()
    assert main(["engines", str(fake_engine)]) == 0
    assert f"sha256 {digest[:16]}..., matches the manifest" in capsys.readouterr().out

    with open(fake_engine.with_suffix(".onnx"), "ab") as f:
        f.write(b"!")  # corrupted after export
    actual = hashlib.sha256(fake_engine.with_suffix(".onnx").read_bytes()).hexdigest()
    code = main(["engines", str(fake_engine)])
    out, err = capsys.readouterr()
    assert f"sha256 {actual[:16]}... but the manifest says {digest[:16]}...: CORRUPTED or modified" in out
    assert one_error_line(code, err) == (
        f"streamavs: error: engine 'fake': model file fake.onnx has sha256 {actual[:16]}... but its manifest says "
        f"{digest[:16]}...; the file is corrupted or was modified: restore it or re-export the engine"
    )
    assert "its manifest says" in in_process(capsys, "engines", fake_engine, "--json")

    # The list still lists it (status 0), flags the row and says how to see why.
    assert main(["engines", "--path", str(fake_engine.parent)]) == 0
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("fake "))
    assert "sha256 mismatch" in row
    assert f"1 engine(s) failed the model file check; `streamavs engines {fake_engine}` says why" in err


def test_engines_path_that_does_not_exist(capsys, tmp_path):
    assert in_process(capsys, "engines", "--path", tmp_path / "nope") == (
        f"streamavs: error: --path {tmp_path / 'nope'} does not exist; give a folder holding engines "
        "(NAME.json beside its model file) or a manifest NAME.json"
    )


def test_engines_path_says_which_manifests_it_skipped(capsys, fake_engine):
    broken = fake_engine.parent / "broken.json"
    broken.write_text("{not json")
    assert main(["engines", "--path", str(fake_engine.parent)]) == 0
    out, err = capsys.readouterr()
    assert f"skipped {broken}: engine manifest {broken} cannot be read as JSON (" in err
    assert "re-export the engine" in err and "Traceback" not in err
    assert any(line.startswith("fake ") for line in out.splitlines())


# -- 5. no traceback reaches a user; --debug / STREAMAVS_DEBUG=1 show it ---------------------------
def _boom(*_args, **_kwargs):
    raise RuntimeError("boom")


def test_an_unexpected_error_is_one_line_with_exit_1(capsys, monkeypatch, tmp_path):
    from streamavs.cli import checks

    monkeypatch.setattr(checks, "output_dir", _boom)
    assert main(["data", "synth", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "streamavs: internal error: RuntimeError: boom; this is a bug in streamavs: rerun with --debug "
        "(or STREAMAVS_DEBUG=1) to see the traceback and report it"
    )
    assert main(["--debug", "data", "synth", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("boom")' in err


def test_debug_shows_the_traceback_of_a_known_error(a_file):
    code, _, err = cli("data", "synth", "--out", a_file, env={"STREAMAVS_DEBUG": "1"})
    assert code == 2
    assert "Traceback (most recent call last)" in err and "streamavs.errors.InputError" in err
    assert err.strip().splitlines()[-1].startswith(f"streamavs: error: --out {a_file} is a file")
    code, _, err = cli("--debug", "data", "synth", "--out", a_file)
    assert code == 2 and "Traceback (most recent call last)" in err


def test_an_os_error_is_one_line(capsys, monkeypatch, tmp_path):
    from streamavs.cli import checks

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "d"))

    monkeypatch.setattr(checks, "output_dir", denied)
    line = in_process(capsys, "data", "synth", "--out", tmp_path / "d")
    assert line == (
        f"streamavs: error: [Errno 13] Permission denied: '{tmp_path / 'd'}'; check the path, its permissions "
        "and free space"
    )
