"""Style is checked, not hoped for: ruff (config in pyproject.toml) over the whole tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    exe = Path(sys.executable).with_name("ruff")
    if not exe.exists():
        pytest.skip("ruff is not installed in this environment")
    r = subprocess.run([str(exe), "check", "--output-format", "concise", "."], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
