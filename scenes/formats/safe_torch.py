"""Safe loading of PyTorch checkpoints: `torch.load(weights_only=True)` only, never full unpickling.

A checkpoint is a pickle; unpickling an untrusted one can run any code. weights_only=True lets
through tensors, containers (dict, list, tuple, OrderedDict), strings and numbers and refuses
everything else. A refused file raises SceneLoadError naming the Python objects it asked for.

`allow_numpy=True` also lets numpy arrays and scalars be rebuilt (DirectVoxGO keeps xyz_min/xyz_max
as numpy arrays in model_kwargs): exactly numpy's array and scalar reconstructors, ndarray and
dtype (with the plain numeric dtype classes), under both module paths (numpy 1.x pickles say
numpy.core, numpy 2.x numpy._core).

Not a FormatSpec: a helper for the checkpoint formats (rotor4d_ckpt, yang4d_ckpt, dvgo, ...).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import SceneLoadError

ZIP_MAGIC = b"PK\x03\x04"


def _numpy_globals() -> list:
    import numpy as np

    try:
        from numpy._core import multiarray as ma  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma
    out = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(ma, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    # np.dtype("f8") unpickles to an instance of numpy.dtypes.Float64DType whose state is then set:
    # torch asks for that class too. Plain numeric and bool dtypes only (no object, no void).
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in _NUMERIC_DTYPES if hasattr(dtypes, n)]
    return out


_NUMERIC_DTYPES = ("BoolDType", "Int8DType", "Int16DType", "Int32DType", "Int64DType", "UInt8DType",
                   "UInt16DType", "UInt32DType", "UInt64DType", "Float16DType", "Float32DType",
                   "Float64DType")


def _numpy_names() -> set[str]:
    names = {"numpy.ndarray", "numpy.dtype"} | {f"numpy.dtypes.{n}" for n in _NUMERIC_DTYPES}
    return names | {f"numpy.{m}.multiarray.{n}" for m in ("core", "_core")
                     for n in ("_reconstruct", "scalar")}


def load_checkpoint(path: str | Path, *, allow_numpy: bool = False, map_location: str = "cpu") -> Any:
    """torch.load(path, weights_only=True), with failures as SceneLoadError sentences.

    Args:
        path: the checkpoint file.
        allow_numpy: also rebuild numpy arrays/scalars (and nothing else).
        map_location: where tensors land ("cpu" by default: checkpoints often name CUDA devices).
    Returns:
        The unpickled object: tensors, containers and numbers only.
    """
    path = Path(path)
    try:
        if allow_numpy:
            with torch.serialization.safe_globals(_numpy_globals()):
                return torch.load(path, map_location=map_location, weights_only=True)
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        names = _unsafe_names(path)
        if allow_numpy:
            names = [n for n in names if n not in _numpy_names()]
        what = f" ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})" if names else ""
        if names or "weights only load failed" in str(e).lower():
            raise SceneLoadError(path, f"the file contains pickled Python objects{what} that Radview "
                                       "refuses to run; only plain tensors, containers and numbers "
                                       "are loaded from checkpoints") from e
        raise SceneLoadError(path, f"not a readable PyTorch checkpoint ({_first_line(e)})") from e
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, KeyError) as e:
        raise SceneLoadError(path, f"not a readable PyTorch checkpoint ({_first_line(e)})") from e


def _unsafe_names(path: Path) -> list[str]:
    """The globals a checkpoint's pickle asks for beyond the allowed ones (best effort)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - only for the message; the load already failed
        return []


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def pickle_bytes(path: str | Path, limit: int = 8 << 20) -> bytes | None:
    """The first `limit` bytes of data.pkl inside a torch zip checkpoint, or None if not one.

    Sniffers look for key names in these bytes without unpickling anything.
    """
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                return None
            with z.open(names[0]) as f:
                return f.read(limit)
    except (zipfile.BadZipFile, OSError, KeyError, RuntimeError, ValueError):
        return None


def tensor_field(path: Path, value: Any, name: str, shape: tuple, n: int | None = None) -> torch.Tensor:
    """Check one checkpoint entry is a float tensor of `shape` and return it as float32 on the CPU.

    `shape` may hold None (any size) and "N" (the row count, equal to `n` when given).
    A trailing 1 in `shape` is optional in the file ([N, 1] and [N] both pass for (N, 1)).
    """
    if not isinstance(value, torch.Tensor):
        raise SceneLoadError(path, f"{name} is a {type(value).__name__}, expected a tensor")
    t = value.detach()
    want = tuple(n if s == "N" and n is not None else s for s in shape)
    if len(want) == t.ndim + 1 and want[-1] == 1:
        t = t.unsqueeze(-1)
    ok = t.ndim == len(want) and all(w in (None, "N") or w == d for w, d in zip(want, t.shape, strict=True))
    if not ok:
        shown = ", ".join("N" if s == "N" else "*" if s is None else str(s) for s in want)
        raise SceneLoadError(path, f"{name} has shape {tuple(t.shape)}, expected ({shown})")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise SceneLoadError(path, f"{name} holds {t.dtype} values, expected floats")
    return t.to(device="cpu", dtype=torch.float32)
