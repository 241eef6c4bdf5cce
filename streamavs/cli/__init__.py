"""The `streamavs` command line: a thin typed shell over the library (see app.py)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the typer app; known errors become one line on stderr and a non-zero exit."""
    from streamavs.cli.app import build_app
    from streamavs.errors import StreamAVSError

    app = build_app()
    try:
        app(args=argv, prog_name="streamavs")  # standalone mode: usage errors exit 2 via SystemExit
    except StreamAVSError as exc:
        print(f"streamavs: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
