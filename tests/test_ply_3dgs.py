"""INRIA 3DGS PLY: the real file, exact round trips, and every bad-input case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_gaussians, shared_file

from scenes import GaussianScene, SceneLoadError, load_scene, save_scene
from scenes.formats.ply import read_ply

REAL = "3dgs_ply/kacytran1122_try_iter7000_point_cloud.ply"


def _header(n: int, props: list[str], fmt: str = "binary_little_endian") -> bytes:
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {n}"]
    lines += [f"property float {p}" for p in props]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode()


def _props(f_rest: int = 0) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(f_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _write_raw(path, values: np.ndarray, props: list[str], fmt="binary_little_endian"):
    body = values.astype("<f4" if fmt == "binary_little_endian" else ">f4").tobytes()
    path.write_bytes(_header(len(values), props, fmt) + body)
    return path


def test_real_file_loads_with_inria_layout():
    path = shared_file(REAL)
    scene = load_scene(path)
    assert isinstance(scene, GaussianScene)
    assert len(scene) == 9080 and scene.sh_degree == 3
    assert scene.meta["format"] == "ply_3dgs"
    raw = read_ply(path).element("vertex").data
    # f_rest is channel-major on disk: coefficient 1 of red is f_rest_0, of green f_rest_15.
    assert torch.equal(scene.sh[:, 1, 0], torch.from_numpy(raw["f_rest_0"].copy()))
    assert torch.equal(scene.sh[:, 1, 1], torch.from_numpy(raw["f_rest_15"].copy()))
    assert torch.equal(scene.sh[:, 15, 2], torch.from_numpy(raw["f_rest_44"].copy()))
    assert torch.allclose(scene.scales[:, 0], torch.exp(torch.from_numpy(raw["scale_0"].copy())))
    assert torch.allclose(scene.quats.norm(dim=1), torch.ones(len(scene)), atol=1e-6)
    assert ((scene.opacities > 0) & (scene.opacities < 1)).all()
    lo, hi = scene.bounds()
    assert (lo < hi).all()


def test_real_file_round_trip_is_byte_exact(tmp_path):
    path = shared_file(REAL)
    out = tmp_path / "copy.ply"
    save_scene(load_scene(path), out)
    assert out.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_exact_for_every_degree(tmp_path, degree):
    scene = random_gaussians(57, seed=degree, sh_degree=degree)
    out = tmp_path / "s.ply"
    save_scene(scene, out)
    back = load_scene(out)
    assert back.sh_degree == degree
    # Raw parameters are exact; activations may differ in the last bit (vectorized vs scalar paths).
    for name in ("means", "quats", "scales", "opacities", "sh"):
        torch.testing.assert_close(getattr(back, name), getattr(scene, name), rtol=1e-6, atol=0)
    for k, v in scene.raw().items():
        assert torch.equal(back.raw()[k], v), k


def test_ascii_and_big_endian_are_read(tmp_path):
    vals = np.random.default_rng(0).normal(size=(5, len(_props(9)))).astype(np.float32)
    le = load_scene(_write_raw(tmp_path / "le.ply", vals, _props(9)))
    be = load_scene(_write_raw(tmp_path / "be.ply", vals, _props(9), "binary_big_endian"))
    asc = tmp_path / "a.ply"
    asc.write_bytes(_header(5, _props(9), "ascii")
                    + "\n".join(" ".join(repr(float(x)) for x in row) for row in vals).encode() + b"\n")
    a = load_scene(asc)
    assert le.sh_degree == 1
    for s in (be, a):
        assert torch.allclose(s.means, le.means) and torch.allclose(s.sh, le.sh)


def test_extra_properties_are_tolerated(tmp_path):
    props = _props(0) + ["filter_3D", "semantic_id"]
    vals = np.random.default_rng(1).normal(size=(4, len(props)))
    scene = load_scene(_write_raw(tmp_path / "x.ply", vals, props))
    assert len(scene) == 4 and scene.sh_degree == 0


def test_nan_rows_are_dropped_and_reported(tmp_path):
    vals = np.random.default_rng(2).normal(size=(6, len(_props(0))))
    vals[1, 0] = np.nan
    vals[4, 12] = np.inf
    scene = load_scene(_write_raw(tmp_path / "nan.ply", vals, _props(0)))
    assert len(scene) == 4
    assert scene.meta["dropped_nonfinite"] == 2
    assert "dropped 2" in scene.meta["warnings"][0]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("empty", "empty"),
    ("not_ply", "unknown scene format"),
    ("missing_props", "lacks opacity, scale_0"),
    ("f_rest_44", "f_rest has 44 properties, expected 0, 9, 24 or 45"),
    ("huge_count", "promises"),
    ("truncated", "truncated"),
    ("no_end_header", "end_header"),
    ("zero", "zero Gaussians"),
    ("all_nan", "NaN"),
    ("list_prop", "list property"),
])
def test_bad_input_raises_scene_load_error(tmp_path, case, message):
    p = tmp_path / f"{case}.ply"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "not_ply":
        p = tmp_path / "notes.txt"
        p.write_text("hello")
    elif case == "missing_props":
        props = [q for q in _props(0) if q not in ("opacity", "scale_0")]
        _write_raw(p, np.zeros((2, len(props))), props)
    elif case == "f_rest_44":
        _write_raw(p, np.zeros((2, len(_props(44)))), _props(44))
    elif case == "huge_count":
        p.write_bytes(_header(10**12, _props(0)) + b"\0" * 100)
    elif case == "truncated":
        data = _header(100, _props(0)) + np.zeros((100, len(_props(0))), "<f4").tobytes()
        p.write_bytes(data[:-10])
    elif case == "no_end_header":
        p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n")
    elif case == "zero":
        p.write_bytes(_header(0, _props(0)))
    elif case == "all_nan":
        _write_raw(p, np.full((3, len(_props(0))), np.nan), _props(0))
    elif case == "list_prop":
        p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n"
                      b"property float f_dc_0\nproperty float opacity\n"
                      b"property list uchar int vertex_indices\nend_header\n")
    with pytest.raises(SceneLoadError) as info:
        load_scene(p)
    assert message in str(info.value)
    assert str(p) in str(info.value)


def test_save_then_load_keeps_up_free_and_counts(tmp_path):
    scene = GaussianScene.from_raw(torch.zeros(1, 3), torch.tensor([[2.0, 0, 0, 0]]), torch.zeros(1, 3),
                                   torch.zeros(1), torch.zeros(1, 1, 3))
    save_scene(scene, tmp_path / "one.ply")
    back = load_scene(tmp_path / "one.ply")
    # The raw (unnormalized) quaternion survives, the activated one is unit length.
    assert torch.equal(back.raw()["quats"], torch.tensor([[2.0, 0, 0, 0]]))
    assert torch.equal(back.quats, torch.tensor([[1.0, 0, 0, 0]]))
