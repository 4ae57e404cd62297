"""Write frames: mp4 streamed through imageio-ffmpeg (H.264, yuv420p), and single PNGs.

Frames go straight into ffmpeg's stdin as they are rendered: no temporary files, memory
for one frame. yuv420p (what every player decodes) stores chroma at half resolution, so
width and height must be even; odd sizes are rejected rather than silently padded or scaled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _as_uint8_rgb(rgb, what: str = "frame") -> np.ndarray:
    """[H, W, 3] C-contiguous uint8 from uint8, or float in [0, 1], arrays or tensors."""
    if hasattr(rgb, "detach"):  # a torch tensor
        rgb = rgb.detach().cpu().numpy()
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{what} must be [H, W, 3], got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{what} must be uint8 or float in [0, 1], got {a.dtype}")
        a = (np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def write_png(path: str | os.PathLike, rgb) -> None:
    """Write one image. rgb: [H, W, 3] uint8 (or float in [0, 1], rounded to 8 bits)."""
    import imageio.v3 as iio

    iio.imwrite(Path(path), _as_uint8_rgb(rgb, "image"), extension=".png")


class VideoWriter:
    """Stream RGB frames to an H.264 mp4.

    with VideoWriter("out.mp4", fps=30, width=640, height=480) as video:
        for frame in frames:
            video.write(frame)        # [480, 640, 3] uint8

    Closing (also on an exception or Ctrl-C inside the block) finishes the file, so the frames
    written so far play.
    """

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int, quality: float = 8.0):
        """quality: imageio-ffmpeg's 1..10 scale (8 -> x264 CRF 10, visually lossless for renders)."""
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise ValueError(f"an mp4 (H.264, yuv420p) needs an even width and height, got {width}x{height}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        import imageio_ffmpeg

        self.path = Path(path)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.frames_written = 0
        self._gen = imageio_ffmpeg.write_frames(
            str(self.path),
            (self.width, self.height),
            fps=self.fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=quality,
            macro_block_size=2,  # even sizes are enough for yuv420p; never let ffmpeg rescale
            ffmpeg_log_level="error",
        )
        self._gen.send(None)  # start ffmpeg

    def write(self, rgb) -> None:
        """Append one frame: [H, W, 3] uint8 (or float in [0, 1]) of the writer's size."""
        if self._gen is None:
            raise ValueError(f"{self.path}: the video is already closed")
        a = _as_uint8_rgb(rgb)
        if a.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {a.shape[1]}x{a.shape[0]}, the video is {self.width}x{self.height}")
        try:
            self._gen.send(a)
        except OSError as e:
            self._gen = None
            raise OSError(f"{self.path}: the encoder stopped ({str(e).splitlines()[0]})") from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file (waits for ffmpeg). Safe to call twice."""
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
