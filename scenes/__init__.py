"""Radview scenes: dataclasses of tensors and the file formats that fill them. No Qt, no renderer."""

from .errors import SceneLoadError
from .gaussians import GaussianScene
from .gaussians4d import Gaussian4DScene as Gaussian4DScene  # re-export (kind "gaussians4d")
from .load import detect_format, formats, load_scene, save_scene
from .voxels import VoxelGridScene as VoxelGridScene  # re-export (kind "voxels")

__all__ = ["SceneLoadError", "GaussianScene", "load_scene", "save_scene", "detect_format", "formats"]
