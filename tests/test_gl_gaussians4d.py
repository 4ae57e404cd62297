"""4D Gaussians on the GL path (renderer/gl_backend/slice4d.py, shaders/slice4d.comp).

The GPU slice is checked against its twin, Gaussian4DScene.slice (records, value by value), and
GL slice + rasterization against the torch backend (slice + rasterize) by PSNR; plus the
degenerate cases, flipbooks, and that playback allocates nothing per frame.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import orbit_camera, psnr, save_diff

from renderer import RenderSettings, get_renderer
from scenes import Gaussian4DScene, GaussianScene

pytestmark = pytest.mark.gl

W, H = 160, 120
TIMES = {"before": -0.6, "start": 0.0, "inside": 0.45, "end": 1.0, "after": 1.7}


def make_scene(model: str, n: int = 2000, seed: int = 0, time_blocks: int = 3) -> Gaussian4DScene:
    """N random 4D Gaussians in [-1, 1]^3 x [0, 1] s (as tests/test_gaussians4d_slice.py builds them)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * 2 - 1
    times = torch.rand(n, generator=g)
    log_scales = torch.cat([-2.6 + 0.5 * torch.randn(n, 3, generator=g),
                            math.log(0.15) + 0.6 * torch.randn(n, 1, generator=g)], dim=1)
    logits = 1.5 * torch.randn(n, generator=g)
    if model == "rotor":
        # raw rotors near a 3D rotation with some space-time mixing, unnormalized (as the reference)
        rot = torch.cat([0.5 * torch.randn(n, 4, generator=g) + torch.tensor([0.8, 0, 0, 0]),
                         0.15 * torch.randn(n, 4, generator=g)], dim=1)
        sh = 0.3 * torch.randn(n, 1, 16, 3, generator=g)
        return Gaussian4DScene.from_raw("rotor", means, times, log_scales, rot, logits, sh)
    rot = torch.randn(n, 8, generator=g)
    sh = 0.3 * torch.randn(n, time_blocks, 16, 3, generator=g)
    return Gaussian4DScene.from_raw("yang", means, times, log_scales, rot, logits, sh,
                                    time_duration=(0.0, 1.0))


@pytest.fixture(scope="module")
def scenes() -> dict:
    return {"rotor": make_scene("rotor", seed=1), "yang": make_scene("yang", seed=2)}


def _close(name: str, got: torch.Tensor, want: torch.Tensor, scale: torch.Tensor, rtol: float = 1e-4) -> None:
    """|got - want| <= rtol * scale (scale broadcasts: the size each entry is relative to)."""
    err = (got.double() - want.double()).abs() / scale.double().clamp_min(1e-30)
    worst = float(err.max()) if err.numel() else 0.0
    assert worst <= rtol, f"{name}: worst relative error {worst:.2e} > {rtol:.0e}"


# ------------------------------------------------------------------ the pass against its twin


@pytest.mark.parametrize("model", ["rotor", "yang"])
@pytest.mark.parametrize("when", ["before", "start", "inside", "end"])
def test_records_match_slice(gl, scenes, model, when):
    scene = scenes[model]
    t = TIMES[when]
    out = gl.slicer.slice(scene, t)
    got = gl.slicer.read_back(out)
    want = scene.slice(t)
    keep = scene.visible_at(t).nonzero().squeeze(1)
    assert out.n == len(want) > 0 and out.has_covars and out.k == 16
    assert torch.equal(got["index"], keep)  # the same Gaussians, in the same order
    # Each quantity relative to its own size: means to the scene's extent, covariances to
    # sqrt(c_ii c_jj) (an off-diagonal can be ~0 in a well-conditioned matrix), SH to the row's size.
    _close("means", got["means"], want.means, torch.tensor(1.0))
    _close("opacities", got["opacities"], want.opacities, want.opacities)
    d = torch.diagonal(want.covars, dim1=-2, dim2=-1)
    _close("covars", got["covars"], want.covars, torch.sqrt(d[:, :, None] * d[:, None, :]))
    _close("sh", got["sh"], want.sh, want.sh.abs().amax(dim=(1, 2), keepdim=True))


@pytest.mark.parametrize("degree", [0, 1, 2])  # rows of 3, 12, 27 floats: scalar and vec4 paths
def test_sh_degree_cap_folds_fewer_coefficients(gl, scenes, degree):
    scene = scenes["yang"]
    k = (degree + 1) ** 2
    out = gl.slicer.slice(scene, 0.3, sh_degree=degree)
    got = gl.slicer.read_back(out)
    want = scene.slice(0.3).sh[:, :k]
    assert out.k == k and out.degree == degree
    _close("sh", got["sh"], want, want.abs().amax(dim=(1, 2), keepdim=True))


@pytest.mark.parametrize("degree", [None, 2])  # whole SH texels, and rows of 27 floats
def test_input_images_and_buffers_slice_alike(gl_ctx, scenes, degree, monkeypatch):
    """CPU rasterizers read the slice pass's params and SH from images (slice4d.comp
    INPUT_IMAGES), other drivers from storage buffers: the same records bit for bit."""
    import renderer.gl_backend.slice4d as sl

    outs = []
    for images in (True, False):
        monkeypatch.setattr(sl, "is_software", lambda ctx, images=images: images)
        slicer = sl.Slicer4D(gl_ctx)
        try:
            out = slicer.slice(scenes["yang"], 0.3, sh_degree=degree)
            assert slicer.scene.images == images
            outs.append(slicer.read_back(out))
        finally:
            slicer.release()
    assert outs[0].keys() == outs[1].keys()
    for k in outs[0]:
        assert torch.equal(outs[0][k], outs[1][k]), k


def test_yang_prefilter_variance(gl, scenes):
    s = scenes["yang"]
    scene = Gaussian4DScene("yang", s.means, s.times, s.scales, s.rotations, s.opacities, s.sh,
                            time_duration=s.time_duration, prefilter_var=0.01)
    for t in (0.0, 0.45):
        got = gl.slicer.read_back(gl.slicer.slice(scene, t))
        want = scene.slice(t)
        assert torch.equal(got["index"], scene.visible_at(t).nonzero().squeeze(1))
        assert len(want) > len(s.slice(t))  # the wider marginal keeps more
        _close("opacities", got["opacities"], want.opacities, want.opacities)


# ------------------------------------------------------------------ images against torch


@pytest.mark.parametrize("model", ["rotor", "yang"])
@pytest.mark.parametrize("when", list(TIMES))
def test_images_match_torch(gl, torch_r, scenes, model, when):
    scene = scenes[model]
    s = RenderSettings(time=TIMES[when], background=(0.1, 0.2, 0.3), sh_degree=3 if model == "yang" else 2)
    cam = orbit_camera(3.0, 30, 20, W, H)
    a, b = gl.render(scene, cam, s), torch_r.render(scene, cam, s)
    # Outside the range only the Gaussians whose time tails reach it show: a little coverage.
    assert float(b.alpha.mean()) > (0.002 if when in ("before", "after") else 0.02), "the case tests nothing"
    for ch, x, y in (("rgb", a.rgb, b.rgb), ("alpha", a.alpha, b.alpha)):
        p = psnr(x, y)
        if p < 45:
            path = save_diff(f"gl4d_{model}_{when}_{ch}", x, y)
            pytest.fail(f"{model} t={TIMES[when]}: {ch} PSNR {p:.1f} dB < 45 (diff image: {path})")
    assert a.stats.counters["visible"] == b.stats.counters["visible"]
    assert a.stats.counters["sliced"] == len(scene.slice(TIMES[when]))
    assert "slice" in a.stats.stages_ms


# ------------------------------------------------------------------ degenerate cases


@pytest.mark.parametrize("model", ["rotor", "yang"])
def test_far_outside_the_range_is_background(gl, scenes, model):
    bg = (0.2, 0.4, 0.6)
    cam = orbit_camera(3.0, 30, 20, 64, 48)
    for t in (1e4, -1e4, math.inf, math.nan):
        f = gl.render(scenes[model], cam, RenderSettings(time=t, background=bg))
        assert f.stats.counters["sliced"] == 0 and f.stats.counters["visible"] == 0
        torch.testing.assert_close(f.rgb, torch.tensor(bg).expand(48, 64, 3), atol=1e-6, rtol=0)
        assert float(f.alpha.abs().max()) == 0.0


def test_zero_temporal_scale(gl, torch_r):
    scene = make_scene("rotor", n=400, seed=3)
    rot = scene.rotations.clone()
    rot[:, 4:] = 0  # no space-time mixing: Sigma_tt = (|r|^2 s_t)^2
    scales = scene.scales.clone()
    scales[:200, 3] = 0.0  # zero temporal scale: never visible
    scales[200:, :3] *= 4  # big enough to see at 64x48
    scene = Gaussian4DScene("rotor", scene.means, scene.times, scales, rot, scene.opacities, scene.sh)
    t = 0.5
    out = gl.slicer.slice(scene, t)
    idx = gl.slicer.read_back(out)["index"]
    assert out.n == len(scene.slice(t)) > 0 and bool((idx >= 200).all())
    cam = orbit_camera(3.0, 30, 20, 64, 48)
    s = RenderSettings(time=t)
    a, b = gl.render(scene, cam, s), torch_r.render(scene, cam, s)
    assert psnr(a.rgb, b.rgb) > 45
    # only zero temporal scales: nothing at any time, the background everywhere
    zero = Gaussian4DScene("rotor", scene.means, scene.times, scales * torch.tensor([1, 1, 1, 0.0]), rot,
                           scene.opacities, scene.sh)
    f = gl.render(zero, cam, RenderSettings(time=scene.times[0].item(), background=(1, 0, 0)))
    assert f.stats.counters["sliced"] == 0
    torch.testing.assert_close(f.rgb, torch.tensor([1.0, 0, 0]).expand(48, 64, 3), atol=0, rtol=0)


def test_empty_scene(gl):
    scene = make_scene("yang", n=0)
    f = gl.render(scene, orbit_camera(3.0, 30, 20, 32, 24), RenderSettings(time=0.5, background=(0, 1, 0)))
    torch.testing.assert_close(f.rgb, torch.tensor([0.0, 1, 0]).expand(24, 32, 3), atol=0, rtol=0)


# ------------------------------------------------------------------ resources


def test_playback_allocates_nothing_per_frame(gl_ctx, scenes):
    r = get_renderer("gl", ctx=gl_ctx)
    cam = orbit_camera(3.0, 30, 20, W, H)
    times = np.linspace(-0.2, 1.2, 30)
    made = []
    real = {name: getattr(gl_ctx, name) for name in ("buffer", "texture")}

    def counting(name):
        def make(*a, **kw):
            made.append(name)
            return real[name](*a, **kw)
        return make

    try:
        for t in times:  # warm-up: scratch space grows to the largest frame
            r.draw(scenes["yang"], cam, RenderSettings(time=float(t)))
        slicer_stats = r.slicer.resource_stats()
        before = r.resource_stats()
        for name in real:
            setattr(gl_ctx, name, counting(name))
        for t in times:
            _, stats = r.draw(scenes["yang"], cam, RenderSettings(time=float(t)))
            assert r.slicer.resource_stats() == slicer_stats
        assert made == [], f"GL objects made during playback: {made}"
        assert r.resource_stats() == before
        # The slicer's buffers are sized once per scene: N Gaussians' inputs and outputs.
        n = len(scenes["yang"])
        assert slicer_stats["bytes"] < n * (16 + 64 + 3 * 16 * 12 + 4 + 48 + 16 * 12) + 65536
    finally:
        for name, fn in real.items():
            setattr(gl_ctx, name, fn)
        r.release()
    assert gl_ctx.error == "GL_NO_ERROR"


def test_switching_scene_kinds_frees_the_other(gl_ctx, scenes):
    from conftest import random_gaussians

    r = get_renderer("gl", ctx=gl_ctx)
    try:
        cam = orbit_camera(3.0, 30, 20, 32, 24)
        static = random_gaussians(500, seed=4, log_scale=-3.0)
        r.render(static, cam, RenderSettings())
        assert r.gaussians.scene is not None
        r.render(scenes["rotor"], cam, RenderSettings(time=0.5))
        assert r.gaussians.scene is None and r.slicer.scene is not None
        r.render(static, cam, RenderSettings())
        assert not r.slicer.holds and r.gaussians.scene is not None
    finally:
        r.release()


# ------------------------------------------------------------------ flipbooks


@pytest.fixture(scope="module")
def flipbook(tmp_path_factory):
    from conftest import random_gaussians

    from scenes import load_scene, save_scene

    folder = tmp_path_factory.mktemp("flipbook")
    for i in range(3):
        save_scene(random_gaussians(300, seed=10 + i, log_scale=-3.0), folder / f"frame_{i:04d}.ply")
    return load_scene(folder, fps=10)


def test_flipbook_frames_match_torch_and_are_cached(gl, torch_r, flipbook):
    cam = orbit_camera(3.0, 30, 20, 64, 48)
    slicer = gl.slicer
    for t, frame in ((0.0, 0), (0.05, 0), (0.15, 1), (0.29, 2), (5.0, 2), (-1.0, 0)):
        s = RenderSettings(time=t)
        a, b = gl.render(flipbook, cam, s), torch_r.render(flipbook, cam, s)
        assert a.stats.counters["frame"] == frame
        assert psnr(a.rgb, b.rgb) > 45
        want = torch_r.render(flipbook.frame(frame), cam, RenderSettings())
        assert psnr(a.rgb, want.rgb) > 45
    # Frame 0 was uploaded once, though shown three times.
    geom = slicer.frames[(id(flipbook), 0)][0].geom
    gl.render(flipbook, cam, RenderSettings(time=0.01))
    assert slicer.frames[(id(flipbook), 0)][0].geom is geom
    assert len(slicer.frames) <= 3


def test_draw_and_stats(gl, scenes):
    cam = orbit_camera(3.0, 30, 20, 64, 48)
    tex, stats = gl.draw(scenes["rotor"], cam, RenderSettings(time=0.5))
    assert tex.size == (64, 48)
    assert stats.counters["sliced"] > 0 and "slice" in stats.stages_ms and stats.backend == "gl"
    assert isinstance(scenes["rotor"].slice(0.5), GaussianScene)
