"""What a CLI run that must fail looks like to its user: one `streamavs: error: ...` line, exit 2."""

from __future__ import annotations


def one_error_line(code: int, err: str) -> str:
    """The single `streamavs: error: ...` line of a run that must exit 2 without a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert lines[0].startswith("streamavs: error: ")
    return lines[0]
