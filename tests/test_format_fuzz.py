"""Mutated real files: truncations, flipped bytes and zeroed headers must either load into a valid
scene or raise SceneLoadError (never another exception, never a hang).

Covers every splat file in ../shared/data with a scene extension and every folder holding a
meta.json (SOG), whichever format modules exist; a format with no reader yet fails as
SceneLoadError("unknown scene format"), which is allowed.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from scenes import SceneLoadError, load_scene

EXTENSIONS = {".ply", ".splat", ".ksplat", ".spz", ".sog"}
N_MUTATIONS = 20


def _targets() -> list[Path]:
    if not SHARED_DATA.is_dir():
        return []
    files = [p for p in sorted(SHARED_DATA.rglob("*")) if p.is_file() and p.suffix.lower() in EXTENSIONS]
    folders = sorted({p.parent for p in SHARED_DATA.rglob("meta.json")})
    return files + folders


TARGETS = _targets()


def _mutations(blob: bytes, rng: np.random.Generator, count: int):
    """(name, mutated bytes) pairs: truncations, byte flips (half of them in the first 4 KiB, where
    headers live), and zeroed headers."""
    n = len(blob)
    out = []
    for _ in range(count * 7 // 20):
        cut = int(rng.integers(0, n))
        out.append((f"truncate@{cut}", blob[:cut]))
    for i in range(count * 8 // 20):
        b = bytearray(blob)
        hi = min(n, 4096) if i % 2 == 0 else n
        for pos in rng.integers(0, hi, int(rng.integers(1, 9))):
            b[pos] ^= int(rng.integers(1, 256))
        out.append((f"flip#{i}", bytes(b)))
    while len(out) < count:
        k = [16, 64, 4096, 40][len(out) % 4]
        out.append((f"zero[:{k}]", bytes(min(k, n)) + blob[k:]))
    return out


def _check_load(path: Path, what: str) -> None:
    try:
        scene = load_scene(path)
    except SceneLoadError:
        return
    except Exception as e:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{what}: {type(e).__name__} escaped load_scene: {e}")
    if getattr(scene, "kind", None) == "gaussians":
        scene.validate()
        assert bool(scene.finite_mask().all()), f"{what}: non-finite values survived loading"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("target", TARGETS, ids=[str(p.relative_to(SHARED_DATA)) for p in TARGETS])
def test_mutated_file_fails_cleanly(tmp_path, target):
    rel = str(target.relative_to(SHARED_DATA))
    rng = np.random.default_rng(zlib.crc32(rel.encode()))
    if target.is_file():
        dst = tmp_path / target.name
        for name, blob in _mutations(target.read_bytes(), rng, N_MUTATIONS):
            dst.write_bytes(blob)
            _check_load(dst, f"{rel} {name}")
        return
    # A folder format: mutate one member at a time, meta.json most often, and restore it after.
    folder = tmp_path / target.name
    shutil.copytree(target, folder)
    members = sorted(p for p in folder.iterdir() if p.is_file())
    meta = folder / "meta.json"
    picks = [meta if i % 2 == 0 or len(members) == 1 else members[int(rng.integers(0, len(members)))]
             for i in range(N_MUTATIONS)]
    for member in sorted(set(picks)):
        original = member.read_bytes()
        count = picks.count(member)
        for name, blob in _mutations(original, rng, max(count, 3))[:count]:
            member.write_bytes(blob)
            _check_load(folder, f"{rel}/{member.name} {name}")
        member.write_bytes(original)
