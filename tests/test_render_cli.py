"""`radview render`: stills, videos, camera path files, time, backends, bad input, Ctrl-C.

Renders are tiny (64x48, 3-4 frames) with the real renderers and the INRIA PLY reader/writer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import random_gaussians, shared_file

from app import cmd_render
from app.cli import main
from renderer.camera_paths import orbit, write_camera_path

REAL_PLY = "3dgs_ply/kacytran1122_try_iter7000_point_cloud.ply"


def _require(backend: str) -> None:
    """Skip a gl case where no GL context can be made. Asked at run time, not at collection:
    making an EGL context while collecting would break the Qt widget tests' GLX context."""
    if backend == "gl":
        gl_ok, gl_reason = cmd_render.gl_status()
        if not gl_ok:
            pytest.skip(f"no GL backend: {gl_reason}")


@pytest.fixture(scope="module")
def tiny_ply(tmp_path_factory) -> Path:
    from scenes import save_scene

    p = tmp_path_factory.mktemp("render") / "tiny.ply"
    try:
        save_scene(random_gaussians(200, seed=1, sh_degree=3, log_scale=-3.0), p)
    except ValueError as e:  # the INRIA PLY writer (scenes/formats/ply_3dgs.py) is not in this tree
        pytest.skip(f"cannot save an INRIA PLY here: {e}")
    return p


def _render(capsys, *args) -> tuple[int, str, list[str]]:
    rc = main(["render", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.strip().splitlines()


class Spy:
    """Wraps the real torch renderer: records each frame's time, can raise Ctrl-C at a frame."""

    name = "torch"

    def __init__(self, interrupt_at: int | None = None):
        from renderer import get_renderer

        self.inner = get_renderer("torch")
        self.times: list[tuple[float, float]] = []
        self.interrupt_at = interrupt_at

    def supports(self, scene) -> bool:
        return self.inner.supports(scene)

    def render(self, scene, camera, settings):
        if self.interrupt_at is not None and len(self.times) == self.interrupt_at:
            raise KeyboardInterrupt
        self.times.append((camera.time, settings.time))
        return self.inner.render(scene, camera, settings)


@pytest.mark.parametrize("backend", ["torch", "gl"])
def test_png_still(tiny_ply, tmp_path, capsys, backend):
    _require(backend)
    out = tmp_path / "still.png"
    rc, _, err = _render(capsys, tiny_ply, "-o", out, "--size", "64x48", "--backend", backend)
    assert rc == 0, err
    img = iio.imread(out)
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert img.max() > 50  # the scene is in view
    assert len(err) == 1 and "wrote" in err[0] and backend in err[0]


def test_background_and_modes(tiny_ply, tmp_path, capsys):
    base = [tiny_ply, "--size", "64x48", "--backend", "torch"]
    paths = {}
    for name, extra in {"black": [], "white": ["--background", "1,1,1"], "depth": ["--mode", "depth"],
                        "alpha": ["--mode", "alpha"], "sh0": ["--sh-degree", "0"],
                        "mip": ["--antialias", "mip"], "fov": ["--fov", "30"]}.items():
        paths[name] = tmp_path / f"{name}.png"
        rc, _, err = _render(capsys, *base, "-o", paths[name], *extra)
        assert rc == 0, err
    img = {k: iio.imread(p).astype(int) for k, p in paths.items()}
    empty = img["black"].max(axis=2) == 0
    assert empty.any() and (img["white"][empty] >= 250).all()
    for k in ("depth", "alpha", "fov"):
        assert img[k].shape == (48, 64, 3) and np.abs(img[k] - img["black"]).mean() > 1, k
    assert np.abs(img["alpha"] - img["alpha"][..., :1]).max() == 0  # alpha is grey


def test_mp4_orbit(tiny_ply, tmp_path, capsys):
    out = tmp_path / "orbit.mp4"
    rc, _, err = _render(capsys, tiny_ply, "-o", out, "--size", "64x48", "--frames", "3", "--fps", "12",
                         "--backend", "torch")
    assert rc == 0, err
    frames = iio.imread(out, plugin="FFMPEG", index=None)
    assert frames.shape == (3, 48, 64, 3)
    assert iio.immeta(out, plugin="FFMPEG")["fps"] == pytest.approx(12)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 0.5  # the camera moves
    assert len(err) == 1 and "3 frames" in err[0]


def test_mp4_camera_path(tiny_ply, tmp_path, capsys):
    cams = orbit(np.array([[-1.0, -1, -1], [1, 1, 1]]), (0, -1, 0), 4, 32, 24, fov_y_deg=45)
    path = tmp_path / "camera_path.json"
    write_camera_path(path, cams, fps=8)
    out = tmp_path / "path.mp4"
    rc, _, err = _render(capsys, tiny_ply, "-o", out, "--path", path, "--backend", "torch")
    assert rc == 0, err
    assert iio.imread(out, plugin="FFMPEG", index=None).shape == (4, 24, 32, 3)  # the file's size and length
    assert iio.immeta(out, plugin="FFMPEG")["fps"] == pytest.approx(8)
    rc, _, err = _render(capsys, tiny_ply, "-o", out, "--path", path, "--frames", "3", "--size", "64x48",
                         "--backend", "torch")
    assert rc == 0, err
    assert iio.imread(out, plugin="FFMPEG", index=None).shape == (3, 48, 64, 3)


def test_time_per_frame(tiny_ply, tmp_path, capsys, monkeypatch):
    spy = Spy()
    monkeypatch.setattr(cmd_render, "choose_renderer", lambda name, scene: spy)
    rc, _, err = _render(capsys, tiny_ply, "-o", tmp_path / "t.mp4", "--size", "64x48", "--frames", "3",
                         "--time-range", "0", "2")
    assert rc == 0, err
    np.testing.assert_allclose(spy.times, [(0, 0), (1, 1), (2, 2)])
    spy.times.clear()
    rc, _, err = _render(capsys, tiny_ply, "-o", tmp_path / "t.png", "--size", "64x48", "--time", "0.7")
    assert rc == 0, err
    np.testing.assert_allclose(spy.times, [(0.7, 0.7)])
    # A camera path's render_time wins over --time-range.
    cams = [replace(c, time=0.5 + i) for i, c in enumerate(orbit(np.array([[-1.0, -1, -1], [1, 1, 1]]),
                                                                  (0, -1, 0), 3, 64, 48))]
    path = tmp_path / "timed.json"
    write_camera_path(path, cams, with_time=True)
    spy.times.clear()
    rc, _, err = _render(capsys, tiny_ply, "-o", tmp_path / "t.mp4", "--path", path, "--time-range", "0", "9")
    assert rc == 0, err
    np.testing.assert_allclose(spy.times, [(0.5, 0.5), (1.5, 1.5), (2.5, 2.5)])


def test_ctrl_c_closes_the_video(tiny_ply, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cmd_render, "choose_renderer", lambda name, scene: Spy(interrupt_at=2))
    out = tmp_path / "cut.mp4"
    rc, _, err = _render(capsys, tiny_ply, "-o", out, "--size", "64x48", "--frames", "4")
    assert rc == 130
    assert len(err) == 1 and "cancelled after 2/4 frames" in err[0]
    assert iio.imread(out, plugin="FFMPEG", index=None).shape == (2, 48, 64, 3)  # a finished, playable file


def test_default_backend_falls_back_with_one_notice(tiny_ply, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cmd_render, "gl_status", lambda: (False, "no display in this test"))
    rc, _, err = _render(capsys, tiny_ply, "-o", tmp_path / "a.png", "--size", "64x48")
    assert rc == 0
    assert len(err) == 2 and "no display in this test" in err[0] and "using the torch backend" in err[0]
    rc, _, err = _render(capsys, tiny_ply, "-o", tmp_path / "a.png", "--size", "64x48", "--backend", "gl")
    assert rc == 2 and len(err) == 1 and "gl backend is not available" in err[0]


def _bad_inputs(tmp: Path, ply: Path) -> dict[str, list]:
    broken = tmp / "broken.json"
    broken.write_text('{"camera_path": [')
    bad_matrix = tmp / "bad_matrix.json"
    bad_matrix.write_text(json.dumps({"render_width": 64, "render_height": 48,
                                      "camera_path": [{"camera_to_world": [1, 0, 0], "fov": 50}]}))
    out = tmp / "o.png"
    return {
        "missing scene": [tmp / "nope.ply", "-o", out],
        "bad size": [ply, "-o", out, "--size", "64by48"],
        "zero size": [ply, "-o", out, "--size", "0x48"],
        "unknown extension": [ply, "-o", tmp / "o.avi"],
        "broken camera path": [ply, "-o", out, "--path", broken],
        "bad camera matrix": [ply, "-o", out, "--path", bad_matrix],
        "missing camera path": [ply, "-o", out, "--path", tmp / "nope.json"],
        "odd mp4 size": [ply, "-o", tmp / "o.mp4", "--size", "63x48"],
        "bad mode": [ply, "-o", out, "--mode", "sepia"],
        "bad background": [ply, "-o", out, "--background", "1,2"],
        "bad frames": [ply, "-o", tmp / "o.mp4", "--frames", "many"],
        "png with frames": [ply, "-o", out, "--frames", "5"],
        "missing output folder": [ply, "-o", tmp / "no" / "o.png"],
        "bad sh degree": [ply, "-o", out, "--sh-degree", "7"],
    }


BAD_CASES = ["missing scene", "bad size", "zero size", "unknown extension", "broken camera path",
             "bad camera matrix", "missing camera path", "odd mp4 size", "bad mode", "bad background",
             "bad frames", "png with frames", "missing output folder", "bad sh degree"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_exits_2_with_one_line(tiny_ply, tmp_path, capsys, case):
    rc, out, err = _render(capsys, *_bad_inputs(tmp_path, tiny_ply)[case], "--backend", "torch")
    assert rc == 2, (case, err)
    assert len(err) == 1 and err[0].startswith("radview render: error:"), err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.mp4").exists()


def test_console_script_bad_input(tmp_path):
    exe = Path(sys.executable).with_name("radview")
    if not exe.exists():
        pytest.skip(f"the radview console script is not installed next to {sys.executable}")
    r = subprocess.run([str(exe), "render", str(tmp_path / "missing.ply"), "-o", str(tmp_path / "o.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such file" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("backend", ["torch", "gl"])
def test_real_file_still(tmp_path, capsys, backend):
    _require(backend)
    ply = shared_file(REAL_PLY)
    out = tmp_path / "real.png"
    rc, _, err = _render(capsys, ply, "-o", out, "--size", "64x48", "--backend", backend)
    assert rc == 0, err
    img = iio.imread(out)
    assert img.shape == (48, 64, 3) and img.mean() > 5


def test_backends_agree_through_the_cli(tmp_path, capsys):
    gl_ok, reason = cmd_render.gl_status()
    if not gl_ok:
        pytest.skip(f"no GL backend: {reason}")
    ply = shared_file(REAL_PLY)
    img = {}
    for b in ("torch", "gl"):
        rc, _, err = _render(capsys, ply, "-o", tmp_path / f"{b}.png", "--size", "64x48", "--backend", b)
        assert rc == 0, err
        img[b] = iio.imread(tmp_path / f"{b}.png").astype(np.float64) / 255
    mse = float(((img["torch"] - img["gl"]) ** 2).mean())
    psnr = float("inf") if mse == 0 else -10 * np.log10(mse)
    if psnr < 35:
        import torch
        from conftest import save_diff

        save_diff("render_cli_torch_vs_gl", torch.tensor(img["torch"]), torch.tensor(img["gl"]))
    assert psnr >= 35, f"torch and gl stills differ: PSNR {psnr:.1f} dB"


def test_renderer_refusal_is_bad_input_and_leaves_no_file(tiny_ply, tmp_path, capsys, monkeypatch):
    class Refuses(Spy):
        def render(self, scene, camera, settings):
            raise ValueError("mode sepia is not supported")

    monkeypatch.setattr(cmd_render, "choose_renderer", lambda name, scene: Refuses())
    out = tmp_path / "none.mp4"
    rc, _, err = _render(capsys, tiny_ply, "-o", out, "--size", "64x48", "--frames", "3")
    assert rc == 2 and len(err) == 1 and "cannot render this: mode sepia" in err[0]
    assert not out.exists()


def test_default_backend_is_gl_where_available(tiny_ply, tmp_path, capsys):
    gl_ok, _ = cmd_render.gl_status()
    rc, _, err = _render(capsys, tiny_ply, "-o", tmp_path / "d.png", "--size", "64x48")
    assert rc == 0, err
    if gl_ok:
        assert len(err) == 1 and "gl backend" in err[0]
    else:
        assert len(err) == 2 and "using the torch backend" in err[0] and "torch backend" in err[1]


# ------------------------------------------------------------------ 4D scenes on the GL backend


class GLSpy:
    """Wraps a real GL renderer: records each frame's time and the 4D slice's counters."""

    name = "gl"

    def __init__(self):
        from renderer import get_renderer

        self.inner = get_renderer("gl")
        self.calls: list[tuple[float, dict]] = []
        self.scene = None

    def supports(self, scene) -> bool:
        return self.inner.supports(scene)

    def render(self, scene, camera, settings):
        self.scene = scene
        frame = self.inner.render(scene, camera, settings)
        self.calls.append((settings.time, dict(frame.stats.counters)))
        return frame

    def release(self):
        self.inner.release()


def _need_gl():
    ok, reason = cmd_render.gl_status()
    if not ok:
        pytest.skip(f"no GL backend: {reason}")


@pytest.fixture(scope="module")
def ply_4d(tmp_path_factory) -> Path:
    from test_gl_gaussians4d import make_scene

    from scenes import save_scene

    p = tmp_path_factory.mktemp("render4d") / "rotor4d.ply"
    save_scene(make_scene("rotor", n=600, seed=5), p)
    return p


def test_4d_scene_time_on_gl(ply_4d, tmp_path, capsys, monkeypatch):
    _need_gl()
    img = {}
    for b in ("torch", "gl"):
        rc, _, err = _render(capsys, ply_4d, "-o", tmp_path / f"{b}.png", "--size", "64x48", "--backend", b,
                             "--time", "0.3")
        assert rc == 0, err
        img[b] = iio.imread(tmp_path / f"{b}.png").astype(np.float64) / 255
    assert img["gl"].max() > 0.2
    mse = float(((img["torch"] - img["gl"]) ** 2).mean())
    assert mse == 0 or -10 * np.log10(mse) >= 35
    # --time-range reaches the GL backend's slice, frame by frame
    spy = GLSpy()
    monkeypatch.setattr(cmd_render, "choose_renderer", lambda name, scene: spy)
    rc, _, err = _render(capsys, ply_4d, "-o", tmp_path / "t.mp4", "--size", "64x48", "--frames", "3",
                         "--time-range", "0", "1")
    assert rc == 0, err
    assert [t for t, _ in spy.calls] == [0.0, 0.5, 1.0]
    sliced = [c["sliced"] for _, c in spy.calls]
    assert sliced == [len(spy.scene.slice(t)) for t in (0.0, 0.5, 1.0)] and len(set(sliced)) > 1


def test_flipbook_fps_on_gl(tmp_path, capsys, monkeypatch):
    _need_gl()
    from scenes import save_scene

    book = tmp_path / "book"
    book.mkdir()
    for i in range(3):
        save_scene(random_gaussians(100, seed=i, log_scale=-3.0), book / f"frame_{i:04d}.ply")
    spy = GLSpy()
    monkeypatch.setattr(cmd_render, "choose_renderer", lambda name, scene: spy)
    out = tmp_path / "book.mp4"
    rc, _, err = _render(capsys, book, "-o", out, "--size", "64x48", "--frames", "3", "--fps", "10",
                         "--time-range", "0", "0.25")
    assert rc == 0, err
    assert spy.scene.fps == 10 and [c["frame"] for _, c in spy.calls] == [0, 1, 2]
    assert iio.immeta(out, plugin="FFMPEG")["fps"] == pytest.approx(10)


def test_time_duration_is_checked(ply_4d, tmp_path, capsys):
    rc, _, err = _render(capsys, ply_4d, "-o", tmp_path / "x.png", "--time-duration", "1", "1")
    assert rc == 2 and len(err) == 1 and "--time-duration" in err[0]
