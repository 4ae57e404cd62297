"""The Qt boundary is enforced: scenes and renderer import without Qt, and only app/ imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_layers_flow_app_renderer_scenes():
    forbidden = {"scenes": {"PySide6", "app", "renderer"}, "renderer": {"PySide6", "app"}}
    for pkg, bad in forbidden.items():
        for f in (ROOT / pkg).rglob("*.py"):
            hits = _imports(f) & bad
            assert not hits, f"{f.relative_to(ROOT)} imports {sorted(hits)}"


def test_scenes_and_renderer_import_with_qt_absent():
    # A meta-path hook makes any PySide6 import fail, as on a machine without Qt.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6'):\n"
        "            raise ImportError('Qt is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import scenes, renderer, renderer.torch_backend, app.cli\n"
        "app.cli.build_parser()\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        import pytest

        pytest.skip("import-linter is not installed in this environment")
    r = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
