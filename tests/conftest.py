"""Shared fixtures: tiny scenes built in code, cameras, the shared data folder, a GL context."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from renderer import Camera
from renderer.bench import synthetic_gaussians
from scenes import GaussianScene

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RADVIEW_SHARED_DATA", ROOT.parent / "shared" / "data"))
ARTIFACTS = ROOT / "test-artifacts"  # diff images of failed image tests land here

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_file(rel: str) -> Path:
    """Path of a file under ../shared/data, or skip the test saying what is missing."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"shared test data not found: {p} (tests read real files from ../shared/data)")
    return p


def random_gaussians(n: int, seed: int = 0, sh_degree: int = 3, extent: float = 1.0,
                     log_scale: float = -4.5, log_scale_std: float = 0.5) -> GaussianScene:
    """N random Gaussians in a cube of half-size `extent`: the bench distribution by default."""
    return synthetic_gaussians(n, seed, sh_degree, extent, log_scale, log_scale_std)


def orbit_camera(distance: float = 3.0, azimuth_deg: float = 30.0, elevation_deg: float = 20.0,
                 width: int = 64, height: int = 48, fov_y_deg: float = 50.0,
                 target=(0.0, 0.0, 0.0), up=(0.0, -1.0, 0.0)) -> Camera:
    """A camera on a sphere around `target` looking at it (default world up is -Y, as in COLMAP)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    up = np.asarray(up, dtype=np.float64)
    # Build an orthonormal frame around `up` so the orbit works for any up direction.
    a = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 0, 1.0])
    e1 = np.cross(up, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    d = math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up
    eye = np.asarray(target, dtype=np.float64) + distance * d
    return Camera.look_at(eye, target, up, width, height, fov_y_deg)


@pytest.fixture
def tiny_scene() -> GaussianScene:
    return random_gaussians(200, seed=1, sh_degree=3, log_scale=-3.0)


@pytest.fixture(autouse=True)
def _gl_ctx_current(request):
    """Make the session's GL context current before each test that uses it: a test that made
    and released another EGL context (e.g. through the CLI) leaves no context current."""
    if "gl_ctx" in request.fixturenames:
        request.getfixturevalue("gl_ctx").__enter__()


@pytest.fixture(scope="session")
def gl_ctx():
    """A standalone EGL OpenGL 4.3+ context (Mesa llvmpipe without a GPU); skips where none can be made."""
    pytest.importorskip("moderngl")
    from renderer.gl_backend.context import create_context

    try:
        ctx = create_context()  # (as the renderer makes it: llvmpipe's threads flush denormals)
    except RuntimeError as e:
        pytest.skip(str(e))
    yield ctx
    err = ctx.error
    ctx.release()
    assert err == "GL_NO_ERROR", f"GL error left at the end of the session: {err}"


@pytest.fixture(scope="module")
def gl(gl_ctx):
    """A GL renderer on the session's context, one per test module (released after it)."""
    from renderer import get_renderer

    r = get_renderer("gl", ctx=gl_ctx)
    yield r
    r.release()


@pytest.fixture(scope="module")
def torch_r():
    """The torch reference renderer on the CPU."""
    from renderer import get_renderer

    return get_renderer("torch")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else -10 * math.log10(mse)


def save_diff(name: str, a: torch.Tensor, b: torch.Tensor) -> Path:
    """Write a, b and |a-b| side by side to test-artifacts/NAME.png; returns the path."""
    import imageio.v3 as iio

    ARTIFACTS.mkdir(exist_ok=True)
    a3, b3 = (x.detach().cpu().float()[..., :3].expand(*x.shape[:2], 3) for x in (a, b))
    diff = (a3 - b3).abs()
    diff = diff / max(float(diff.max()), 1e-8)
    img = torch.cat([a3, b3, diff], dim=1).clamp(0, 1).numpy()
    p = ARTIFACTS / f"{name}.png"
    iio.imwrite(p, (img * 255).astype(np.uint8))
    return p


def pytest_collection_modifyitems(config, items):
    """Mark the Qt widget tests (tests/test_gui_*.py) `gui`.

    They run in a pytest process of their own (scripts/quickstart test): with libglvnd a thread
    cannot have an EGL context (the GL tests' standalone one) and a GLX one (Qt's) current at
    the same time, so Qt fails to make its context current once an EGL context exists.
    """
    for item in items:
        if item.path.name.startswith("test_gui_"):
            item.add_marker(pytest.mark.gui)


def check_display_texture(gl, scene, cam, settings) -> None:
    """GLRenderer.draw(display=True), the viewer's path: an RGBA8 texture in GL's row order (bottom
    row first) whose colour is the float frame's clamped and rounded to 8 bits, alpha 1. Skips
    where the GL implementation gives no display-ready output (the convex blend on GPUs)."""
    import numpy as np

    tex, _ = gl.draw(scene, cam, settings, display=True)
    if tex.dtype != "f1":
        pytest.skip("this GL implementation blends into images: no display-ready output")
    W, H = cam.width, cam.height
    assert tex.size == (W, H) and tex.components == 4
    got = np.frombuffer(tex.read(), np.uint8).reshape(H, W, 4)[::-1]  # top row first, as frames
    ref, _ = gl.draw(scene, cam, settings)
    want = np.frombuffer(ref.read(), np.float32).reshape(H, W, 4)
    assert ref.dtype == "f4" and (got[..., 3] == 255).all()
    err = np.abs(got[..., :3] / 255.0 - np.clip(want[..., :3], 0.0, 1.0))
    assert err.max() <= 0.5 / 255 + 1e-6, err.max() * 255
    assert want[..., :3].std() > 0.02  # a picture, not a flat background
