"""DirectVoxGO and Plenoxels loaders: exact key layouts round-trip; bad files raise SceneLoadError."""

from __future__ import annotations

import argparse
import collections

import numpy as np
import pytest
import torch
from conftest import orbit_camera, psnr

from renderer import RenderSettings
from renderer.torch_backend.voxels import render_voxels
from scenes import SceneLoadError, VoxelGridScene, detect_format, load_scene
from scenes.voxels import procedural_shell


def _dvgo_ckpt(fine: bool = True, res: int = 12) -> dict:
    """A checkpoint with DVGO's exact layout (run.py torch.save; lib/dvgo.py get_kwargs, state_dict)."""
    s = procedural_shell(res, fine=fine, seed=3)
    X, Y, Z = s.grid_shape
    kw = {
        "xyz_min": np.array([-1.0, -1.0, -1.0], dtype=np.float32),
        "xyz_max": np.array([1.0, 1.0, 1.0], dtype=np.float32),
        "num_voxels": res**3,
        "num_voxels_base": 1024000,
        "alpha_init": 1e-2 if fine else 1e-6,
        "voxel_size_ratio": torch.tensor(s.voxel_size_ratio),
        "mask_cache_path": "./logs/coarse_last.tar" if fine else None,
        "mask_cache_thres": 1e-3,
        "mask_cache_world_size": [X, Y, Z],
        "fast_color_thres": s.fast_color_thres,
        "density_type": "DenseGrid",
        "k0_type": "DenseGrid",
        "density_config": {},
        "k0_config": {},
        "rgbnet_dim": 12 if fine else 0,
        "rgbnet_direct": True,
        "rgbnet_full_implicit": False,
        "rgbnet_depth": 3,
        "rgbnet_width": 128,
        "viewbase_pe": 4,
    }
    lo, hi = torch.tensor(kw["xyz_min"]), torch.tensor(kw["xyz_max"])
    sd = collections.OrderedDict(
        {
            "xyz_min": lo,
            "xyz_max": hi,
            "act_shift": torch.tensor([s.act_shift]),
            "density.xyz_min": lo,
            "density.xyz_max": hi,
            "density.grid": s.density[None, None].clone(),
            "k0.xyz_min": lo,
            "k0.xyz_max": hi,
            "k0.grid": s.features[None].clone(),
            "mask_cache.mask": s.mask.clone(),
            "mask_cache.xyz2ijk_scale": s.mask_xyz2ijk_scale.clone(),
            "mask_cache.xyz2ijk_shift": s.mask_xyz2ijk_shift.clone(),
        }
    )
    if fine:
        sd["viewfreq"] = torch.tensor([1.0, 2.0, 4.0, 8.0])
        for name, (w, b) in zip(["rgbnet.0", "rgbnet.2.0", "rgbnet.3"], s.mlp, strict=True):
            sd[f"{name}.weight"], sd[f"{name}.bias"] = w.clone(), b.clone()
    return {
        "global_step": 20000,
        "model_kwargs": kw,
        "model_state_dict": sd,
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
    }, s


@pytest.mark.parametrize("fine", [True, False])
def test_dvgo_round_trip(tmp_path, fine):
    ck, ref = _dvgo_ckpt(fine)
    p = tmp_path / ("fine_last.tar" if fine else "coarse_last.tar")
    torch.save(ck, p)
    assert detect_format(p).name == "dvgo"
    s = load_scene(p)
    assert isinstance(s, VoxelGridScene) and s.kind == "voxels" and s.meta["format"] == "dvgo"
    assert s.color_mode == ("mlp" if fine else "sigmoid_k0") and s.meta["global_step"] == 20000
    assert torch.equal(s.density, ref.density) and torch.equal(s.features, ref.features)
    assert torch.equal(s.mask, ref.mask) and abs(s.act_shift - ref.act_shift) < 1e-6
    assert abs(s.voxel_size - ref.voxel_size) < 1e-6 and abs(s.voxel_size_ratio - ref.voxel_size_ratio) < 1e-6
    assert np.allclose(s.bounds(), [[-1, -1, -1], [1, 1, 1]]) and len(s) == 12**3 and s.up is None
    cam = orbit_camera(3.0, 30, 20, 24, 18)
    a = render_voxels(s, cam, RenderSettings(), "cpu")
    b = render_voxels(ref, cam, RenderSettings(), "cpu")
    assert psnr(a.rgb, b.rgb) > 100
    # The writer produces the same layout (without numpy in model_kwargs).
    q = tmp_path / "again.tar"
    from scenes.formats.dvgo import write_dvgo

    write_dvgo(s, q)
    s2 = load_scene(q)
    assert torch.equal(s2.density, s.density) and s2.color_mode == s.color_mode


def _expect(tmp_path, obj, words):
    p = tmp_path / "fine_last.tar"
    torch.save(obj, p)
    with pytest.raises(SceneLoadError) as e:
        load_scene(p, format="dvgo")
    msg = str(e.value)
    for w in words:
        assert w in msg, msg


def test_dvgo_bad_files(tmp_path):
    ck, _ = _dvgo_ckpt(True)
    bad = dict(ck, model_state_dict=dict(ck["model_state_dict"]))
    del bad["model_state_dict"]["density.grid"]
    _expect(tmp_path, bad, ["density.grid"])
    bad = dict(ck, model_state_dict=dict(ck["model_state_dict"]))
    bad["model_state_dict"]["k0.grid"] = torch.zeros(1, 12, 5, 5, 5)
    _expect(tmp_path, bad, ["k0.grid", "density.grid"])
    bad = dict(ck, model_state_dict=dict(ck["model_state_dict"]))
    g = bad["model_state_dict"]["density.grid"].clone()
    g[0, 0, 1, 2, 3] = float("nan")
    bad["model_state_dict"]["density.grid"] = g
    _expect(tmp_path, bad, ["density.grid", "NaN"])
    bad = dict(ck, model_state_dict=dict(ck["model_state_dict"]))
    bad["model_state_dict"]["rgbnet.3.weight"] = torch.zeros(4, 128)
    _expect(tmp_path, bad, ["rgbnet"])
    _expect(tmp_path, {"model_state_dict": {}}, ["model_kwargs"])
    bad = dict(ck, model_kwargs=dict(ck["model_kwargs"], density_type="TensoRFGrid"))
    _expect(tmp_path, bad, ["TensoRFGrid"])
    # A pickled object that is neither a tensor, a container nor numpy: refused, and named.
    bad = dict(ck, model_kwargs=dict(ck["model_kwargs"], extra=argparse.Namespace(lr=0.1)))
    _expect(tmp_path, bad, ["argparse.Namespace", "refuses"])


def _plenoxels(tmp_path, **over):
    g = np.random.default_rng(0)
    links = np.full((6, 5, 4), -1, dtype=np.int32)
    occ = g.random(links.shape) < 0.5
    m = int(occ.sum())
    links[occ] = g.permutation(m)
    arr = {
        "radius": np.array([1.0, 1.0, 0.8], dtype=np.float32),
        "center": np.array([0.0, 0.1, 0.0], dtype=np.float32),
        "links": links,
        "density_data": (g.random((m, 1)) * 20).astype(np.float32),
        "sh_data": (g.standard_normal((m, 27)) * 0.3).astype(np.float16),
        "basis_type": np.array(0),
    }
    arr.update(over)
    arr = {k: v for k, v in arr.items() if v is not None}
    p = tmp_path / "ckpt.npz"
    np.savez(p, **arr)
    return p, arr


def test_plenoxels_round_trip(tmp_path):
    p, arr = _plenoxels(tmp_path)
    assert detect_format(p).name == "plenoxels"
    s = load_scene(p)
    assert (
        s.color_mode == "sh"
        and s.sh_degree == 2
        and s.links is not None
        and len(s) == arr["density_data"].shape[0]
    )
    assert torch.equal(s.links, torch.from_numpy(arr["links"]))
    assert torch.equal(s.features, torch.from_numpy(arr["sh_data"].astype(np.float32)))
    # The box of voxel centres: center -+ (radius - half a voxel).
    h = 2 * arr["radius"] / np.array(arr["links"].shape)
    assert np.allclose(
        s.bounds(), [arr["center"] - arr["radius"] + h / 2, arr["center"] + arr["radius"] - h / 2]
    )
    q = tmp_path / "again.npz"
    from scenes.formats.plenoxels import write_plenoxels

    write_plenoxels(s, q)
    s2 = load_scene(q)
    assert torch.equal(s2.links, s.links) and torch.allclose(s2.density, s.density)
    assert np.allclose(s2.bounds(), s.bounds(), atol=1e-6)
    f = render_voxels(s, orbit_camera(3.0, 20, 20, 16, 12), RenderSettings(), "cpu")
    assert float(f.alpha.max()) > 0


@pytest.mark.parametrize(
    "over,words",
    [
        ({"sh_data": np.zeros((3, 27), dtype=np.float16)}, ["sh_data"]),
        ({"links": np.full((6, 5, 4), 10**6, dtype=np.int32)}, ["links"]),
        ({"basis_type": np.array(1)}, ["basis_type"]),
        ({"density_data": None}, ["density_data"]),
        ({"radius": np.array([1.0, np.inf, 1.0])}, ["radius"]),
        ({"links": np.array([object()] * 8, dtype=object).reshape(2, 2, 2)}, ["pickle"]),
    ],
)
def test_plenoxels_bad_files(tmp_path, over, words):
    p, _ = _plenoxels(tmp_path, **over)
    with pytest.raises(SceneLoadError) as e:
        load_scene(p, format="plenoxels")
    for w in words:
        assert w in str(e.value), str(e.value)


def test_plenoxels_nonfinite_density(tmp_path):
    p, arr = _plenoxels(tmp_path)
    d = arr["density_data"].copy()
    d[0, 0] = np.nan
    p, _ = _plenoxels(tmp_path, density_data=d)
    with pytest.raises(SceneLoadError, match="density_data holds 1 NaN"):
        load_scene(p)
