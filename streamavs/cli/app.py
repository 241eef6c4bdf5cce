"""Assembles the typer app from one module per command group.

Each command module is imported only here, when the CLI runs, and each imports its
heavy dependencies inside its commands, so `streamavs --help` stays fast.
"""

from __future__ import annotations

import typer


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="streamavs",
        help="Real-time segmentation of the objects that are making the sound.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root() -> None:
        """Real-time segmentation of the objects that are making the sound."""

    # REGISTER: one line per command group, in the order --help lists them.
    from streamavs.cli import version

    version.register(app)
    return app
