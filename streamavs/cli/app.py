"""Assembles the typer app from one module per command group.

Each command module is imported only here, when the CLI runs, and each imports its
heavy dependencies inside its commands, so `streamavs --help` stays fast.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from streamavs.cli import DEBUG_ENV


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="streamavs",
        help="Real-time segmentation of the objects that are making the sound.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        debug: Annotated[
            bool, typer.Option("--debug", help="Show the full traceback of an error (same as STREAMAVS_DEBUG=1).")
        ] = False,
    ) -> None:
        """Real-time segmentation of the objects that are making the sound."""
        if debug:  # read by streamavs.cli.main when an error reaches it
            os.environ[DEBUG_ENV] = "1"

    # REGISTER: one line per command group, in the order --help lists them.
    from streamavs.cli import version
    from streamavs.cli import run
    from streamavs.cli import data
    from streamavs.cli import subscribe
    from streamavs.cli import view
    from streamavs.cli import engines
    from streamavs.cli import export
    from streamavs.cli import bench
    from streamavs.cli import train

    version.register(app)
    run.register(app)
    data.register(app)
    subscribe.register(app)
    view.register(app)
    engines.register(app)
    export.register(app)
    bench.register(app)
    train.register(app)
    return app
