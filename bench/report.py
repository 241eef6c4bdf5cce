"""What every benchmark report shares: the machine, the command, the date, percentiles, JSON.

A report is one JSON object::

    {"benchmark": "latency", "command": "streamavs bench latency --seconds 20",
     "date": "2026-11-22T10:31:05+00:00", "machine": {...}, ...runner-specific keys...}

:func:`machine_info` describes the host without importing heavy libraries (versions come from
package metadata); :func:`stats_ms` turns a list of durations into the fixed set of
statistics every table shows; :func:`write_json` writes the report; :func:`save_figure`
saves a matplotlib figure (Agg backend, imported lazily: matplotlib is in the `train` extra).

Every runner with a command line follows one convention: ``main(argv) -> int`` (the exit
status), ``--out`` names the JSON report (default :func:`default_out`), and the script ends
``if __name__ == "__main__": sys.exit(run_script(main))``, so a known error (StreamAVSError) is
one line on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from streamavs.errors import InputError, StreamAVSError, require
from streamavs.files import jsonable

__all__ = [
    "STAT_KEYS", "LIBRARIES", "RESULTS_DIR", "check_counts", "machine_info", "command_line", "now_iso", "stats_ms",
    "make_report", "write_json", "default_out", "run_script", "save_figure", "pyplot", "fmt_cell",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"  # bench/results/ of the repository

STAT_KEYS = ("n", "mean", "p50", "p90", "p95", "p99", "max")
# Distributions whose versions a report records (absent ones are recorded as None).
LIBRARIES = (
    "streamavs", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "torch-tensorrt", "tensorrt",
    "onnx", "pyzmq", "opencv-python-headless", "av", "sounddevice", "soxr", "timm",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _ram_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpu() -> str | None:
    """The CUDA device name, asked only of a torch that is already imported (never imports it)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:  # noqa: BLE001 - a broken CUDA setup is "no GPU" for the record
        pass
    return None


def _versions(names: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    """The host: CPU model, logical cores (and those this process may use), RAM (GiB), OS,
    Python, library versions, GPU (if torch is loaded and sees one), load average (the
    machine may be shared: the load says how quiet it was) and the thread-count variables."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "ram_gib": _ram_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": _versions(LIBRARIES),
        "gpu": _gpu(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
    }
    return info


def command_line(argv: Sequence[str] | None = None, program: str = "streamavs") -> str:
    """The command as a user would retype it: `program` plus the arguments (shell-quoted)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([program, *map(shlex.quote, args)])


def subcommand_line(words: Sequence[str], argv: Sequence[str] | None = None) -> str:
    """`streamavs ...` as the user typed it for the subcommand `words` (e.g. ["bench", "latency"]):
    global options before the subcommand stay in front of it (`streamavs --debug bench latency ...`)."""
    args, words = list(sys.argv[1:] if argv is None else argv), list(words)
    for i in range(len(args) - len(words) + 1):
        if args[i:i + len(words)] == words:
            return command_line([*args[:i], *words, *args[i + len(words):]])
    return command_line([*words, *args])


def now_iso() -> str:
    """Local date and time with its UTC offset, to the second."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def stats_ms(samples: Iterable[float]) -> dict[str, float]:
    """{n, mean, p50, p90, p95, p99, max} of durations in ms; NaN statistics (n = 0) when empty.

    Percentiles use numpy's default linear interpolation, so p50 <= p90 <= p95 <= p99 <= max.
    """
    a = np.asarray([s for s in samples if s is not None and math.isfinite(s)], dtype=np.float64)
    if a.size == 0:
        return {"n": 0, **{k: float("nan") for k in STAT_KEYS[1:]}}
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
    return {
        "n": int(a.size), "mean": float(a.mean()), "p50": float(p50), "p90": float(p90),
        "p95": float(p95), "p99": float(p99), "max": float(a.max()),
    }  # fmt: skip


def check_counts(repeats: int, warmup: int, defaults: tuple[int, int] | None = None) -> None:
    """InputError unless a runner's --repeats >= 1 and --warmup >= 0 (`defaults`: the values to suggest)."""
    if repeats < 1 or warmup < 0:
        advice = (f"leave them out for {defaults[0]} and {defaults[1]}" if defaults
                  else "give at least one timed run and no negative warm-up")
        raise InputError(f"--repeats must be >= 1 and --warmup >= 0, got {repeats} and {warmup}; {advice}")


def make_report(benchmark: str, command: str, *, machine: dict[str, Any] | None = None, **payload: Any) -> dict[str, Any]:
    """A report dict: benchmark name, command, date and machine first, then `payload`.

    machine: :func:`machine_info` taken when the measurement started, so that its load average says
    how busy the machine was then, not the benchmark's own load (default: taken now)."""
    return {"benchmark": benchmark, "command": command, "date": now_iso(),
            "machine": machine if machine is not None else machine_info(), **payload}


def write_json(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write `report` as indented JSON (NaN/inf become null; numpy values become numbers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(report), indent=2) + "\n", encoding="utf-8")
    return path


def default_out(name: str, suffix: str = "json") -> Path:
    """Where a runner writes when --out is not given: bench/results/<name>-<today>.<suffix>."""
    return RESULTS_DIR / f"{name}-{_dt.date.today().isoformat()}.{suffix}"


def run_script(main: Callable[[], int]) -> int:
    """Run a runner's ``main()`` as a script: its exit status, or 2 with one line on stderr for a StreamAVSError."""
    try:
        return main()
    except StreamAVSError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure (dpi 120) and close it; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (names the `train` extra if absent)."""
    matplotlib = require("matplotlib", "train", "benchmark plots")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def fmt_cell(value: float | None, digits: int = 1) -> str:
    """A number for a table cell (a duration, a percentage, a fraction): '12.3', or '-' when not
    measured (None, NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"
