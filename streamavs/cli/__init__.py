"""The `streamavs` command line: a thin typed shell over the library (see app.py).

No traceback reaches a user: a known error (StreamAVSError) is one line on stderr and exit
status 2, an OS error (a file, device or socket) one line and status 2, anything else one line
saying it is a bug and status 1. ``--debug`` (or ``STREAMAVS_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import os
import sys

DEBUG_ENV = "STREAMAVS_DEBUG"


def debug_enabled() -> bool:
    """True when tracebacks should be shown (--debug, or STREAMAVS_DEBUG set to anything but 0/empty)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the typer app; errors become one line on stderr and a non-zero exit."""
    import traceback

    from streamavs.cli.app import build_app
    from streamavs.errors import StreamAVSError

    app = build_app()
    try:
        app(args=argv, prog_name="streamavs")  # standalone mode: usage errors exit 2 via SystemExit
    except StreamAVSError as exc:
        if debug_enabled():
            traceback.print_exc()
        print(f"streamavs: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except OSError as exc:  # a file, device or socket the command could not use
        if debug_enabled():
            traceback.print_exc()
        print(f"streamavs: error: {_one_line(exc)}; check the path, its permissions and free space", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback with --debug
        if debug_enabled():
            traceback.print_exc()
        print(
            f"streamavs: internal error: {type(exc).__name__}: {_one_line(exc)}; this is a bug in streamavs: "
            f"rerun with --debug (or {DEBUG_ENV}=1) to see the traceback and report it",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
