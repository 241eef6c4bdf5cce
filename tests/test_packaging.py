"""pyproject.toml lists every package, so a non-editable install ships all of them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info < (3, 11):
    pytest.skip("tomllib needs Python 3.11", allow_module_level=True)
import tomllib

ROOT = Path(__file__).resolve().parents[1]
# Folders at the top of the repository that install under the streamavs namespace (package-dir).
MAPPED = {"streamavs": "streamavs", "training": "streamavs.training", "bench": "streamavs.bench",
          "engines": "streamavs.engines"}


def test_every_package_with_an_init_is_listed():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for folder, name in MAPPED.items():
        assert setuptools["package-dir"][name] == folder
        for init in (ROOT / folder).rglob("__init__.py"):
            found.add(".".join([name, *init.parent.relative_to(ROOT / folder).parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
