"""`streamavs version`: print the package version."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def version() -> None:
        """Print the StreamAVS version."""
        import streamavs

        typer.echo(streamavs.__version__)
