"""The habits CI keeps: ruff clean, mypy clean, and the layering contracts of setup.cfg
(the journey language and the compiler do no I/O; web -> runtime -> rules -> definition)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return str(found)


def test_ruff_finds_nothing():
    result = _run(_tool("ruff"), "check", "crm_journeys", "tests", "bench")
    assert result.returncode == 0, result.stdout[-4000:]


def test_layering_contracts_hold():
    result = _run(_tool("lint-imports"))
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 broken" in result.stdout


def test_mypy_finds_nothing():
    result = _run(_tool("mypy"))
    assert result.returncode == 0, result.stdout[-4000:]
