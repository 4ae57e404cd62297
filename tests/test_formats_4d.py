"""4D loaders: 4D-Rotor nerfstudio .ckpt, Yang 4DGS .pth, Radview 4D PLY, flipbooks, safe torch loading.

No small public 4D checkpoint exists, so the fixtures are built here with the exact key layouts
(FORMATS.md section 3) and saved with torch.save.
"""

from __future__ import annotations

import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import random_gaussians

from scenes import Gaussian4DScene, GaussianScene, SceneLoadError, detect_format, load_scene, save_scene
from scenes.formats.safe_torch import load_checkpoint
from scenes.load import get_format

N = 40


# ------------------------------------------------------------------ fixtures with the real layouts

def rotor_params(n: int = N, seed: int = 0, sh_rest: int = 15) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return OrderedDict(
        xyz=torch.nn.Parameter(r(n, 3)),
        t=torch.nn.Parameter(torch.rand(n, 1, generator=g)),
        scales_xyz=torch.nn.Parameter(r(n, 3) * 0.3 - 3),
        scales_t=torch.nn.Parameter(r(n, 1) * 0.3 - 1.5),
        quats1=torch.nn.Parameter(r(n, 4) * 0.4 + torch.tensor([1.0, 0, 0, 0])),
        quats2=torch.nn.Parameter(r(n, 4) * 0.1),
        features_dc=torch.nn.Parameter(r(n, 1, 3)),
        features_rest=torch.nn.Parameter(r(n, sh_rest, 3) * 0.1),
        opacities=torch.nn.Parameter(r(n, 1)),
    )


def save_rotor_ckpt(path, params: OrderedDict, extra: dict | None = None) -> None:
    """nerfstudio trainer.save_checkpoint layout: {step, pipeline, optimizers, schedulers, scalers}."""
    pipeline = OrderedDict((f"_model.gauss_params.{k}", v.detach()) for k, v in params.items())
    pipeline["_model.background_color"] = torch.zeros(3)
    opt = torch.optim.Adam([params["xyz"]], lr=1e-3)
    params["xyz"].grad = torch.zeros_like(params["xyz"])
    opt.step()
    obj = {"step": 29999, "pipeline": pipeline, "optimizers": {"xyz": opt.state_dict()},
           "schedulers": {"xyz": {"base_lrs": [1.6e-4], "last_epoch": 29999}}, "scalers": {"scale": 65536.0}}
    obj.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def yang_capture(n: int = N, seed: int = 1, blocks: int = 3) -> list:
    """GaussianModel.capture() for gaussian_dim 4, rot_4d True (order of FORMATS.md section 3)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    P = torch.nn.Parameter
    xyz, f_dc, f_rest = P(r(n, 3)), P(r(n, 1, 3)), P(r(n, 16 * blocks - 1, 3) * 0.1)
    scaling, rotation, opacity = P(r(n, 3) * 0.3 - 3), P(r(n, 4)), P(r(n, 1))
    t, scaling_t, rotation_r = P(torch.rand(n, 1, generator=g) * 12 - 1), P(r(n, 1) * 0.3), P(r(n, 4))
    groups = [("xyz", xyz), ("f_dc", f_dc), ("f_rest", f_rest), ("opacity", opacity), ("scaling", scaling),
              ("rotation", rotation), ("t", t), ("scaling_t", scaling_t), ("rotation_r", rotation_r)]
    opt = torch.optim.Adam([{"params": [p], "lr": 1e-3, "name": nm} for nm, p in groups], lr=0.0, eps=1e-15)
    for _, p in groups:
        p.grad = torch.zeros_like(p)
    opt.step()
    z = torch.zeros(n, 1)
    return [3, xyz, f_dc, f_rest, scaling, rotation, opacity, torch.zeros(n), z, z, z,
            opt.state_dict(), 5.0, t, scaling_t, rotation_r, True, None, blocks - 1]


def save_yang_ckpt(path, capture: list, iteration: int = 30000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save((tuple(capture), iteration), path)


# Refusal fixture: unpickling this would run `_ran` (were the loader to allow it).
RAN = []


def _ran(*args):
    RAN.append(args)
    return "pwned"


class Evil:
    def __reduce__(self):
        return (_ran, ("evil",))


class Custom:
    def __init__(self):
        self.x = 1


# ------------------------------------------------------------------ 4D-Rotor .ckpt

def test_rotor_ckpt_round_trip(tmp_path):
    params = rotor_params()
    path = tmp_path / "nerfstudio_models" / "step-000029999.ckpt"
    save_rotor_ckpt(path, params)
    assert detect_format(path).name == "rotor4d_ckpt"
    sc = load_scene(path)
    assert isinstance(sc, Gaussian4DScene) and sc.model == "rotor" and len(sc) == N
    sc.validate()
    P = {k: v.detach() for k, v in params.items()}
    torch.testing.assert_close(sc.means, P["xyz"])
    torch.testing.assert_close(sc.times, P["t"][:, 0])
    torch.testing.assert_close(sc.scales, torch.exp(torch.cat([P["scales_xyz"], P["scales_t"]], 1)))
    torch.testing.assert_close(sc.rotations, torch.cat([P["quats1"], P["quats2"]], 1))  # raw, unnormalized
    torch.testing.assert_close(sc.opacities, torch.sigmoid(P["opacities"][:, 0]))
    torch.testing.assert_close(sc.sh[:, 0, 0], P["features_dc"][:, 0])
    torch.testing.assert_close(sc.sh[:, 0, 1:], P["features_rest"])
    assert sc.sh_degree == 3 and sc.time_degree == 0
    assert sc.meta["format"] == "rotor4d_ckpt" and sc.meta["step"] == 29999
    assert len(sc.slice(0.5)) > 0


def test_rotor_ckpt_wrong_shape_and_missing_key(tmp_path):
    p = rotor_params()
    p["quats1"] = torch.nn.Parameter(torch.randn(N, 3))
    save_rotor_ckpt(tmp_path / "a.ckpt", p)
    with pytest.raises(SceneLoadError, match=r"quats1 has shape \(40, 3\), expected \(40, 4\)"):
        load_scene(tmp_path / "a.ckpt")
    p = rotor_params()
    p["features_rest"] = torch.nn.Parameter(torch.randn(N, 5, 3))
    save_rotor_ckpt(tmp_path / "b.ckpt", p)
    with pytest.raises(SceneLoadError, match="features_rest has 5 coefficients"):
        load_scene(tmp_path / "b.ckpt")
    p = rotor_params()
    p["t"] = torch.nn.Parameter(torch.randn(N + 1, 1))
    save_rotor_ckpt(tmp_path / "c.ckpt", p)
    with pytest.raises(SceneLoadError, match=r"t has shape \(41, 1\), expected \(40, 1\)"):
        load_scene(tmp_path / "c.ckpt")
    p = rotor_params()
    del p["opacities"]
    save_rotor_ckpt(tmp_path / "d.ckpt", p)
    with pytest.raises(SceneLoadError, match="lacks _model.gauss_params.opacities"):
        load_scene(tmp_path / "d.ckpt", format="rotor4d_ckpt")


def test_rotor_ckpt_nonfinite_rows_dropped_and_counted(tmp_path):
    p = rotor_params()
    with torch.no_grad():
        p["xyz"][2, 1] = float("nan")
        p["scales_t"][5, 0] = float("inf")
        p["features_rest"][7, 3, 2] = float("-inf")
    save_rotor_ckpt(tmp_path / "n.ckpt", p)
    sc = load_scene(tmp_path / "n.ckpt")
    assert len(sc) == N - 3 and sc.meta["dropped_nonfinite"] == 3
    assert torch.isfinite(sc.means).all() and torch.isfinite(sc.scales).all()


# ------------------------------------------------------------------ Yang 4DGS .pth

def test_yang_ckpt_round_trip(tmp_path):
    cap = yang_capture()
    path = tmp_path / "chkpnt30000.pth"
    save_yang_ckpt(path, cap)
    assert detect_format(path).name == "yang4d_ckpt"
    sc = load_scene(path)
    assert isinstance(sc, Gaussian4DScene) and sc.model == "yang" and len(sc) == N
    sc.validate()
    torch.testing.assert_close(sc.means, cap[1].detach())
    torch.testing.assert_close(sc.times, cap[13].detach()[:, 0])
    torch.testing.assert_close(sc.scales, torch.exp(torch.cat([cap[4], cap[14]], 1)).detach())
    torch.testing.assert_close(sc.rotations[:, :4], torch.nn.functional.normalize(cap[5].detach(), dim=1))
    torch.testing.assert_close(sc.rotations[:, 4:], torch.nn.functional.normalize(cap[15].detach(), dim=1))
    feats = torch.cat([cap[2], cap[3]], 1).detach()  # [N, 48, 3]: block b, basis k at 16 b + k
    assert sc.sh.shape == (N, 3, 16, 3) and sc.time_degree == 2
    torch.testing.assert_close(sc.sh[:, 1, 5], feats[:, 21])
    torch.testing.assert_close(sc.sh[:, 2, 15], feats[:, 47])
    # times span about [-1, 11]: the guess snaps to the N3V range
    assert sc.time_duration == (0.0, 10.0) and sc.meta["time_duration_guessed"]
    assert sc.meta["iteration"] == 30000
    # an explicit duration, and one from a config beside the checkpoint
    sc2 = get_format("yang4d_ckpt").read(path, time_duration=(0.0, 2.0))
    assert sc2.time_duration == (0.0, 2.0)
    (tmp_path / "cook_spinach.yaml").write_text("gaussian_dim: 4\ntime_duration: [0.0, 5.0]\n")
    assert load_scene(path).time_duration == (0.0, 5.0)


def test_yang_ckpt_active_degrees_cut_the_colour(tmp_path):
    cap = yang_capture()
    cap[0], cap[18] = 1, 1  # training stopped early: SH degree 1, time degree 1
    save_yang_ckpt(tmp_path / "chkpnt7000.pth", cap)
    sc = load_scene(tmp_path / "chkpnt7000.pth")
    assert sc.sh.shape == (N, 2, 4, 3)
    torch.testing.assert_close(sc.sh[:, 1, 2], cap[3].detach()[:, 17])


def test_yang_ckpt_bad_inputs(tmp_path):
    cap = yang_capture()
    cap[15] = torch.randn(N, 3)
    save_yang_ckpt(tmp_path / "a.pth", cap)
    with pytest.raises(SceneLoadError, match=r"_rotation_r has shape \(40, 3\), expected \(40, 4\)"):
        load_scene(tmp_path / "a.pth")
    cap = yang_capture()
    cap[16] = False
    save_yang_ckpt(tmp_path / "b.pth", cap)
    with pytest.raises(SceneLoadError, match="rot_4d=False"):
        load_scene(tmp_path / "b.pth")
    cap = yang_capture()
    save_yang_ckpt(tmp_path / "c.pth", cap[:12])
    with pytest.raises(SceneLoadError, match="3D Gaussian checkpoint"):
        load_scene(tmp_path / "c.pth", format="yang4d_ckpt")
    cap = yang_capture()
    with torch.no_grad():
        cap[1][0, 0] = float("nan")
        cap[5][3] = 0.0  # zero quaternion: no rotation
    save_yang_ckpt(tmp_path / "d.pth", cap)
    sc = load_scene(tmp_path / "d.pth")
    assert len(sc) == N - 2 and sc.meta["dropped_nonfinite"] == 2


def test_pth_that_is_not_ours(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(3)}}, tmp_path / "model.pth")
    with pytest.raises(SceneLoadError, match="not a valid 4DGS"):
        load_scene(tmp_path / "model.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x80\x02not really a pickle" * 10)
    with pytest.raises(SceneLoadError):
        load_scene(tmp_path / "junk.pth")
    with pytest.raises(SceneLoadError, match="not a 4DGS checkpoint"):
        load_scene(tmp_path / "model.pth", format="yang4d_ckpt")


# ------------------------------------------------------------------ safe loading

def test_pickled_objects_are_refused_without_running(tmp_path):
    p = rotor_params()
    save_rotor_ckpt(tmp_path / "evil.ckpt", p, extra={"payload": Evil(), "thing": Custom()})
    RAN.clear()
    with pytest.raises(SceneLoadError, match="pickled Python objects .*refuses to run") as e:
        load_scene(tmp_path / "evil.ckpt")  # sniffed as rotor (the keys are there), then refused
    assert "evil.ckpt" in str(e.value) and "_ran" in str(e.value)
    assert RAN == []
    torch.save((tuple(yang_capture()) + (Custom(),), 1), tmp_path / "chkpnt1.pth")
    with pytest.raises(SceneLoadError, match="Custom"):
        load_scene(tmp_path / "chkpnt1.pth", format="yang4d_ckpt")


def test_numpy_allow_list_for_dvgo_style_checkpoints(tmp_path):
    obj = {"global_step": 20000,
           "model_kwargs": {"xyz_min": np.array([-1.5, -1.5, -1.5]), "xyz_max": np.array([1.5, 1.5, 1.5]),
                            "num_voxels": 1000, "alpha_init": 1e-2, "density_type": "DenseGrid"},
           "model_state_dict": {"density.grid": torch.zeros(1, 1, 4, 4, 4)}}
    torch.save(obj, tmp_path / "fine_last.tar")
    with pytest.raises(SceneLoadError, match="pickled Python objects"):
        load_checkpoint(tmp_path / "fine_last.tar")
    got = load_checkpoint(tmp_path / "fine_last.tar", allow_numpy=True)
    np.testing.assert_array_equal(got["model_kwargs"]["xyz_max"], [1.5, 1.5, 1.5])
    obj["model_kwargs"]["evil"] = Evil()
    torch.save(obj, tmp_path / "bad.tar")
    RAN.clear()
    with pytest.raises(SceneLoadError, match="_ran"):
        load_checkpoint(tmp_path / "bad.tar", allow_numpy=True)
    assert RAN == []


# ------------------------------------------------------------------ Radview 4D PLY

@pytest.mark.parametrize("model", ["rotor", "yang"])
def test_ply_4d_round_trip(tmp_path, model):
    if model == "rotor":
        save_rotor_ckpt(tmp_path / "s.ckpt", rotor_params())
        sc = load_scene(tmp_path / "s.ckpt")
        sc.time_duration = (0.0, 1.0)
    else:
        save_yang_ckpt(tmp_path / "s.pth", yang_capture())
        sc = get_format("yang4d_ckpt").read(tmp_path / "s.pth", time_duration=(0.0, 10.0), prefilter_var=0.01)
    sc.up = (0.0, -1.0, 0.0)
    out = tmp_path / "scene4d.ply"
    save_scene(sc, out)
    assert b"radview-4d model=" + model.encode() in out.read_bytes()[:4096]
    assert detect_format(out).name == "ply_4d"
    back = load_scene(out)
    assert isinstance(back, Gaussian4DScene) and back.model == model
    assert back.time_duration == sc.time_duration and back.up == sc.up
    assert back.prefilter_var == sc.prefilter_var
    for name in ("means", "times", "scales", "rotations", "opacities", "sh"):
        torch.testing.assert_close(getattr(back, name), getattr(sc, name), rtol=1e-5, atol=1e-6)
    a, b = sc.slice(0.5), back.slice(0.5)
    assert len(a) == len(b)
    torch.testing.assert_close(a.covars, b.covars, rtol=1e-4, atol=1e-9)


def test_inria_ply_still_goes_to_ply_3dgs(tmp_path):
    save_scene(random_gaussians(20), tmp_path / "p.ply")
    assert detect_format(tmp_path / "p.ply").name == "ply_3dgs"


def test_ply_with_t_but_no_tag(tmp_path):
    from scenes.formats.ply import write_ply

    keys = ["x", "y", "z", "t", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    props = {k: np.zeros(3, np.float32) for k in keys}
    write_ply(tmp_path / "q.ply", [("vertex", props)])
    with pytest.raises(SceneLoadError, match="radview-4d"):
        load_scene(tmp_path / "q.ply")


# ------------------------------------------------------------------ flipbook

def _write_frames(folder, count=3, prefix="frame_"):
    folder.mkdir()
    scenes = [random_gaussians(10 + 5 * i, seed=i, sh_degree=1) for i in range(count)]
    for i, s in enumerate(scenes):
        save_scene(s, folder / f"{prefix}{i:04d}.ply")
    return scenes


def test_flipbook_folder(tmp_path):
    frames = _write_frames(tmp_path / "seq", count=3)
    assert detect_format(tmp_path / "seq").name == "flipbook"
    fb = load_scene(tmp_path / "seq")
    assert fb.kind == "gaussians4d" and fb.frame_count == 3 and fb.fps == 30
    assert fb.time_range() == (0.0, 0.1)
    assert len(fb._cache) == 1  # lazily: only the first frame so far
    for t, i in ((0.0, 0), (1 / 30 + 1e-6, 1), (0.99 / 15, 1), (2 / 30, 2), (10.0, 2), (-1.0, 0)):
        got = fb.slice(t)
        assert isinstance(got, GaussianScene) and len(got) == len(frames[i]), (t, i)
        torch.testing.assert_close(got.means, frames[i].means)
    fb.fps = 10
    assert len(fb.slice(0.15)) == len(frames[1])


def test_flipbook_zip_and_numeric_order(tmp_path):
    _write_frames(tmp_path / "seq", count=3)
    # frame numbers without zero padding must sort by value: 2 < 10
    zpath = tmp_path / "seq.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for i, name in enumerate(["f10.ply", "f2.ply", "f7.ply"]):
            z.write(tmp_path / "seq" / f"frame_{i:04d}.ply", f"take1/{name}")
    fb = load_scene(zpath)
    assert fb.meta["format"] == "flipbook" and fb.frames == ["take1/f2.ply", "take1/f7.ply", "take1/f10.ply"]
    assert len(fb.slice(0.0)) == 15 and len(fb.slice(2 / 30)) == 10


def test_flipbook_only_claims_numbered_ply_folders(tmp_path):
    _write_frames(tmp_path / "seq", count=2)
    (tmp_path / "seq" / "notes.txt").write_text("hi")
    with pytest.raises(SceneLoadError):
        detect_format(tmp_path / "seq")
    _write_frames(tmp_path / "mixed", count=2)
    save_scene(random_gaussians(5), tmp_path / "mixed" / "point_cloud.ply")
    with pytest.raises(SceneLoadError):
        load_scene(tmp_path / "mixed", format="flipbook")
