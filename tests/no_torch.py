"""`streamavs ARGS` in a subprocess where `import torch` fails: the runtime's no-PyTorch promise, tested."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Runs `streamavs ARGS` with torch unimportable; the last stdout line reports every attempt to import it
# and the streamavs.training modules the run loaded.
NO_TORCH = """
import importlib.abc, json, sys

attempts = []

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            attempts.append(name)
            raise ImportError(f"No module named {name!r} (blocked: this run must not import torch)")
        return None

sys.meta_path.insert(0, NoTorch())
from streamavs.cli import main

code = main(sys.argv[1:])
training = sorted(m for m in sys.modules if m.split(".")[:2] == ["streamavs", "training"])
print("torch-imports:", json.dumps({"attempts": attempts, "loaded": "torch" in sys.modules, "training": training}))
sys.exit(code)
"""


def run_without_torch(*args: str | Path, timeout: float = 600) -> tuple[int, str, str, dict]:
    """`streamavs ARGS` in a subprocess where `import torch` fails: (exit status, stdout, stderr, import record).

    The record: {"attempts": [torch modules it tried to import], "loaded": torch in sys.modules,
    "training": [streamavs.training modules loaded]}.
    """
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert last.startswith("torch-imports: "), f"the run did not finish: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc.returncode, proc.stdout, proc.stderr, json.loads(last.removeprefix("torch-imports: "))
