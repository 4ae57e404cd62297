"""Flipbook: a folder or ZIP of per-frame 3DGS PLYs (frame_0000.ply, frame_0001.ply, ...).

Opens as a FlipbookScene (kind "gaussians4d", the slice/time_range interface of Gaussian4DScene):
slice(t) is frame floor(t * fps), clamped to the first and last frame. Frames are read lazily
through scenes.load_scene (so any splat format a frame file is in works; in practice the INRIA PLY)
and the last few are kept in a small cache. fps defaults to 30: read(path, fps=...) or set
`scene.fps`.

Only folders (or ZIPs) whose every file is `<prefix><number>.ply` with one common prefix, at least
two of them, are claimed; frames are ordered by the number, not the name.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import SceneLoadError
from ..gaussians import GaussianScene
from ..load import FormatSpec

DEFAULT_FPS = 30.0
CACHE_FRAMES = 4
_FRAME = re.compile(r"^(.*?)(\d+)\.ply$", re.IGNORECASE)
ZIP_MAGIC = b"PK\x03\x04"


def frame_order(names: list[str]) -> list[str] | None:
    """The names sorted by frame number, or None unless all are <prefix><digits>.ply (one prefix, >= 2)."""
    parsed = []
    for name in names:
        m = _FRAME.match(name.rsplit("/", 1)[-1])
        if not m:
            return None
        parsed.append((m.group(1), int(m.group(2)), name))
    if len(parsed) < 2 or len({p for p, _, _ in parsed}) != 1:
        return None
    nums = [k for _, k, _ in parsed]
    if len(set(nums)) != len(nums):
        return None
    return [name for _, _, name in sorted(parsed, key=lambda x: x[1])]


def _folder_frames(path: Path) -> list[str] | None:
    files = [p.name for p in path.iterdir() if not p.name.startswith(".")]
    if any((path / f).is_dir() for f in files):
        return None
    return frame_order(files)


def _zip_frames(z: zipfile.ZipFile) -> list[str] | None:
    names = [n for n in z.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")
             and not n.rsplit("/", 1)[-1].startswith(".")]
    if len({n.rsplit("/", 1)[0] if "/" in n else "" for n in names}) > 1:
        return None  # frames must share one folder inside the archive
    return frame_order(names)


def sniff(path: Path, head: bytes) -> bool:
    if path.is_dir():
        return _folder_frames(path) is not None
    if not head.startswith(ZIP_MAGIC) or path.suffix.lower() != ".zip":
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return _zip_frames(z) is not None
    except (zipfile.BadZipFile, OSError):
        return False


@dataclass(eq=False)
class FlipbookScene:
    """3D Gaussian frames shown at `fps`; slice(t) -> the GaussianScene of frame floor(t fps)."""

    kind: ClassVar[str] = "gaussians4d"

    source: Path  # the folder or ZIP
    frames: list[str]  # frame file names (folder) or member names (ZIP), in frame order
    fps: float = DEFAULT_FPS
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    up: tuple[float, float, float] | None = None
    meta: dict = field(default_factory=dict)
    _cache: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False)

    @property
    def is_zip(self) -> bool:
        return self.source.is_file()

    def __len__(self) -> int:
        """Gaussians in the first frame (frames may differ; see frame(i))."""
        return len(self.frame(0))

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @property
    def sh_degree(self) -> int:
        return self.frame(0).sh_degree

    def frame_index(self, t: float) -> int:
        """floor(t * fps), clamped to the frames that exist."""
        if not math.isfinite(t):
            return 0
        return int(min(max(math.floor(t * self.fps + 1e-9), 0), len(self.frames) - 1))

    def frame(self, i: int) -> GaussianScene:
        """Frame i, loaded on first use; the last CACHE_FRAMES frames stay in memory."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        scene = self._load(i).to(self.device)
        self._cache[i] = scene
        while len(self._cache) > CACHE_FRAMES:
            self._cache.popitem(last=False)
        return scene

    def _load(self, i: int) -> GaussianScene:
        from ..load import load_scene  # late: load.py imports this module

        name = self.frames[i]
        if not self.is_zip:
            scene = load_scene(self.source / name)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="radview-flipbook-"))
            try:
                with zipfile.ZipFile(self.source) as z, z.open(name) as src:
                    out = tmp / Path(name).name
                    with open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                scene = load_scene(out)
            except zipfile.BadZipFile as e:
                raise SceneLoadError(self.source, f"cannot read frame {name} from the ZIP ({e})") from e
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            scene.meta["path"] = f"{self.source}!{name}"
        if getattr(scene, "kind", None) != "gaussians":
            raise SceneLoadError(self.source, f"frame {name} is a {scene.kind} scene, not 3D Gaussians")
        if self.up is None and scene.up is not None:
            self.up = scene.up
        return scene

    def slice(self, t: float) -> GaussianScene:
        return self.frame(self.frame_index(float(t)))

    def time_range(self) -> tuple[float, float]:
        """(0, frames / fps): every frame shows for 1 / fps seconds."""
        return 0.0, len(self.frames) / self.fps

    def frame_times(self) -> np.ndarray:
        """[F] start time of each frame, seconds."""
        return np.arange(len(self.frames)) / self.fps

    def bounds(self) -> np.ndarray:
        """The first frame's robust box, [2,3] float64."""
        return self.frame(0).bounds()

    def to(self, device: str | torch.device) -> FlipbookScene:
        return FlipbookScene(self.source, list(self.frames), self.fps, torch.device(device), self.up,
                             dict(self.meta))

    def validate(self) -> None:
        if len(self.frames) == 0:
            raise ValueError("a flipbook needs at least one frame")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be a positive number, not {self.fps}")


def read(path: Path, fps: float = DEFAULT_FPS) -> FlipbookScene:
    """Open a flipbook folder or ZIP; frame 0 is read now so a broken first frame fails here."""
    if path.is_dir():
        frames = _folder_frames(path)
    else:
        try:
            with zipfile.ZipFile(path) as z:
                frames = _zip_frames(z)
        except zipfile.BadZipFile as e:
            raise SceneLoadError(path, f"not a readable ZIP file ({e})") from e
    if frames is None:
        raise SceneLoadError(path, "not a flipbook: expected only <name><number>.ply frame files "
                                   "(at least two, one common name)")
    if not (fps > 0 and math.isfinite(fps)):
        raise SceneLoadError(path, f"fps must be a positive number, not {fps}")
    scene = FlipbookScene(path, frames, float(fps))
    scene.frame(0)
    scene.meta["frames"] = len(frames)
    return scene


FORMAT = FormatSpec(
    name="flipbook",
    extensions=("", ".zip"),
    sniff=sniff,
    read=read,
    description="flipbook of per-frame 3DGS PLYs (folder or ZIP)",
    kinds=("gaussians4d",),
)
