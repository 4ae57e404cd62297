"""renderer/video.py: mp4 streaming through imageio-ffmpeg and PNG stills, read back with imageio."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from renderer.video import VideoWriter, write_png


def _frame(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : 16 * (i + 1)] = (200, 120, 40)  # a bar that grows by 16 px per frame
    return a


def test_mp4_frames_size_and_fps(tmp_path):
    p = tmp_path / "v.mp4"
    with VideoWriter(p, fps=10, width=64, height=48) as v:
        for i in range(4):
            v.write(_frame(i))
    assert v.frames_written == 4
    frames = iio.imread(p, plugin="FFMPEG", index=None)
    assert frames.shape == (4, 48, 64, 3)
    assert iio.immeta(p, plugin="FFMPEG")["fps"] == pytest.approx(10)
    for i in range(4):  # the content survives H.264 (away from the bar's edge)
        ref = _frame(i).astype(int)
        inside = np.abs(frames[i].astype(int) - ref)[:, np.r_[0:16 * (i + 1) - 4, 16 * (i + 1) + 4:64]]
        assert inside.max() <= 12, f"frame {i} differs by {inside.max()}"


def test_float_and_tensor_frames(tmp_path):
    p = tmp_path / "f.mp4"
    with VideoWriter(p, fps=5, width=32, height=16) as v:
        v.write(np.full((16, 32, 3), 0.5, np.float32))
        v.write(torch.full((16, 32, 3), 1.0))
    frames = iio.imread(p, plugin="FFMPEG", index=None)
    assert frames.shape == (2, 16, 32, 3)
    assert abs(int(frames[0].mean()) - 128) <= 3 and frames[1].min() >= 250


def test_odd_size_and_wrong_frames_rejected(tmp_path):
    p = tmp_path / "odd.mp4"
    with pytest.raises(ValueError, match="even width and height"):
        VideoWriter(p, fps=10, width=63, height=48)
    assert not p.exists()  # rejected before ffmpeg started
    with VideoWriter(tmp_path / "w.mp4", fps=10, width=64, height=48) as v:
        with pytest.raises(ValueError, match="64x48"):
            v.write(np.zeros((48, 62, 3), np.uint8))
        with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
            v.write(np.zeros((48, 64), np.uint8))
        v.write(_frame(0))


def test_error_inside_block_keeps_frames_written(tmp_path):
    p = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(p, fps=10, width=64, height=48) as v:
            v.write(_frame(0))
            v.write(_frame(1))
            raise RuntimeError("stop")
    assert iio.imread(p, plugin="FFMPEG", index=None).shape[0] == 2
    v.close()  # closing twice is fine


def test_write_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(iio.imread(tmp_path / "a.png"), rgb)
    write_png(tmp_path / "b.png", np.full((3, 4, 3), 1.0))
    assert (iio.imread(tmp_path / "b.png") == 255).all()
