"""Dropping unusable rows from a freshly loaded scene (shared by every loader)."""

from __future__ import annotations

from .errors import SceneLoadError

_NOUNS = {"convex": "convexes"}


def drop_nonfinite(scene, path):
    """Remove rows that `scene.finite_mask()` rejects (NaN, inf, zero quaternions).

    Records how many in meta["dropped_nonfinite"] and a warning; raises SceneLoadError when no
    row is left, since an empty scene from a non-empty file means the file is broken.
    """
    ok = scene.finite_mask()
    bad = int((~ok).sum())
    if not bad:
        return scene
    noun = _NOUNS.get(getattr(scene, "kind", ""), "Gaussians")
    if bad == len(scene):
        raise SceneLoadError(path, f"all {bad:,} {noun} hold NaN or infinite values")
    scene = scene.subset(ok)
    scene.meta["dropped_nonfinite"] = bad
    scene.meta.setdefault("warnings", []).append(f"dropped {bad:,} {noun} with NaN or infinite values")
    return scene
