"""The CLI shell: help lists commands, errors become one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

from streamavs.cli import main


def test_help_lists_commands(capsys):
    import re

    import typer

    from streamavs.cli.app import build_app

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = set(re.findall(r"^\W*([a-z][a-z-]*)\s{2,}\S", out.split("Commands")[1], flags=re.M))
    registered = set(typer.main.get_command(build_app()).commands)
    assert listed == registered  # every registered command is listed, with its help, and nothing else
    assert {"run", "subscribe", "engines", "export", "train", "eval", "data", "bench", "version"} <= registered


def test_unknown_command_exits_non_zero(capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command 'no-such-command'" in capsys.readouterr().err  # not some other usage error


def test_version_runs_as_module():
    import streamavs

    out = subprocess.run(
        [sys.executable, "-m", "streamavs", "version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == streamavs.__version__


def test_import_streamavs_is_light():
    """The runtime package imports neither torch nor training code at import time."""
    code = (
        "import sys, streamavs, streamavs.cli, streamavs.errors;"
        "bad = [m for m in ('torch', 'streamavs.training', 'cv2', 'av', 'zmq') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
