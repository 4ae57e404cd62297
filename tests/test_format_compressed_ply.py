"""SuperSplat compressed PLY: real files, write -> read round trips, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import random_gaussians, shared_file

from scenes import SceneLoadError, detect_format, load_scene, save_scene
from scenes.formats import compressed_ply
from scenes.formats.ply import read_ply, write_ply
from scenes.gaussians import SH_C0

# Reference statistics from ../shared/data/VERIFY.txt (decoded there with splat-transform 2.7.1).
VERIFY = {
    "biker": dict(n=152746, xyz_min=[-0.621, -3.18, -0.532], xyz_max=[0.414, -0.0, 0.613],
                  scale_pct=[0.00013, 0.00311, 0.04455],
                  opacity_mean=0.2966, dc_rgb_mean=[0.319, 0.308, 0.301],
                  alpha_255=198),
    "guitar": dict(n=90854, xyz_min=[-0.655, -4.292, -0.528], xyz_max=[0.822, 0.086, 0.925],
                   scale_pct=[2e-05, 0.00357, 0.08455],
                   opacity_mean=0.3889, dc_rgb_mean=[0.472, 0.409, 0.306],
                   alpha_255=667),
}


@pytest.mark.parametrize("name", ["biker", "guitar"])
def test_real_files_match_reference(name):
    ref = VERIFY[name]
    path = shared_file(f"compressed_ply/{name}.compressed.ply")
    assert detect_format(path).name == "compressed_ply"
    s = load_scene(path)
    s.validate()
    assert len(s) == ref["n"]
    assert s.meta["format"] == "compressed_ply" and s.meta["has_chunk_color"]
    assert s.meta["dropped_nonfinite"] == 0 and bool(s.finite_mask().all())
    m = s.means.numpy()
    np.testing.assert_allclose(m.min(0), ref["xyz_min"], atol=1.5e-3)
    np.testing.assert_allclose(m.max(0), ref["xyz_max"], atol=1.5e-3)
    pct = np.percentile(s.scales.numpy(), [1, 50, 99])
    np.testing.assert_allclose(pct, ref["scale_pct"], rtol=0.02, atol=1e-5)
    assert s.opacities.mean().item() == pytest.approx(ref["opacity_mean"], abs=1e-3)
    rgb = (s.sh[:, 0] * SH_C0 + 0.5).clamp(0, 1).mean(0).numpy()
    np.testing.assert_allclose(rgb, ref["dc_rgb_mean"], atol=1.5e-3)
    torch.testing.assert_close(s.quats.norm(dim=1), torch.ones(len(s)), atol=1e-5, rtol=0)
    # VERIFY.txt counts non-finite logits -log(1/a - 1); they come from alpha bytes of 255 (a = 1,
    # logit +inf), not 0. Opacities are stored activated, and raw() clamps the logit to a finite value.
    assert int((s.opacities == 1).sum()) == ref["alpha_255"]
    assert bool(torch.isfinite(s.raw()["opacity_logits"]).all())


def test_alpha_bytes_0_and_255_give_finite_logits(tmp_path):
    scene = random_gaussians(10, seed=2, sh_degree=0)
    scene.opacities[:5] = 0.0
    scene.opacities[5:] = 1.0
    save_scene(scene, tmp_path / "a.compressed.ply")
    back = load_scene(tmp_path / "a.compressed.ply")
    assert sorted(back.opacities.tolist()) == [0.0] * 5 + [1.0] * 5
    assert back.meta["dropped_nonfinite"] == 0
    assert bool(torch.isfinite(back.raw()["opacity_logits"]).all())


def _sorted_arrays(scene):
    """The scene's finite arrays in the Morton order the writer uses (to compare splat by splat)."""
    a, _ = compressed_ply.scene_arrays(scene)
    order = compressed_ply.morton_order(a["means"])
    return {k: v[order] for k, v in a.items()}


def test_write_read_round_trip_within_quantization(tmp_path):
    scene = random_gaussians(700, seed=3, sh_degree=3, log_scale=-3.0)
    out = tmp_path / "r.compressed.ply"
    report = save_scene(scene, out)
    assert detect_format(out).name == "compressed_ply"
    back = load_scene(out)
    assert len(back) == 700 and back.sh_degree == 3
    a = _sorted_arrays(scene)
    b = {"means": back.means.double().numpy(), "quats": back.quats.double().numpy(),
         "log_scales": back.scales.log().double().numpy(), "opacities": back.opacities.double().numpy(),
         "sh": back.sh.double().numpy()}
    # 11/10/11 bits across a chunk's extent (a chunk spans at most the cube of side 2).
    pos_err = np.abs(a["means"] - b["means"]).max()
    assert pos_err <= 2.0 / 1023 / 2 + 1e-5
    assert pos_err == pytest.approx(report["max_position_error"], rel=1e-3, abs=1e-6)
    assert np.abs(a["log_scales"] - b["log_scales"]).max() <= report["max_scale_log_error"] + 1e-5
    assert report["max_scale_log_error"] < 0.01
    angle = compressed_ply.quat_angle_error(a["quats"], b["quats"]).max()
    assert angle < 0.5 and report["max_rotation_error_deg"] < 0.5
    assert np.abs(a["opacities"] - b["opacities"]).max() <= 0.5 / 255 + 1e-6
    col_err = np.abs((a["sh"][:, 0] - b["sh"][:, 0]) * SH_C0).max()
    assert col_err <= report["max_color_error"] + 1e-5 and col_err < 0.01
    sh_err = np.abs(a["sh"][:, 1:] - b["sh"][:, 1:]).max()  # u8 over [-4, 4]
    assert sh_err <= 8.0 / 256 / 2 + 1e-5 and report["max_sh_error"] <= 8.0 / 256 / 2 + 1e-5


def test_real_file_rewrite_keeps_values(tmp_path):
    src = load_scene(shared_file("compressed_ply/guitar.compressed.ply"))
    out = tmp_path / "g.compressed.ply"
    report = save_scene(src, out)
    back = load_scene(out)
    assert len(back) == len(src) == report["count"]
    assert report["max_position_error"] < 5e-3 and report["max_scale_log_error"] < 0.02
    assert report["max_opacity_error"] < 1e-6  # alpha bytes are re-quantized exactly
    # Same multiset of splats: compare sorted opacities and the mean colour.
    np.testing.assert_allclose(np.sort(back.opacities.numpy()), np.sort(src.opacities.numpy()), atol=1e-6)
    torch.testing.assert_close(back.sh[:, 0].mean(0), src.sh[:, 0].mean(0), atol=2e-3, rtol=0)


def test_nonfinite_chunk_rows_are_dropped_and_counted(tmp_path):
    out = tmp_path / "n.compressed.ply"
    save_scene(random_gaussians(300, seed=4, sh_degree=0), out)
    h = read_ply(out)
    chunk = {n: h.element("chunk").data[n].copy() for n in h.element("chunk").names()}
    vertex = {n: h.element("vertex").data[n].copy() for n in h.element("vertex").names()}
    chunk["min_x"][1] = np.nan  # the second chunk holds splats 256..299
    write_ply(out, [("chunk", chunk), ("vertex", vertex)])
    s = load_scene(out)
    assert len(s) == 256 and s.meta["dropped_nonfinite"] == 44


def test_sniff_leaves_inria_ply_alone(tmp_path):
    p = tmp_path / "inria.ply"
    write_ply(p, [("vertex", {k: np.zeros(3, np.float32) for k in ["x", "y", "z", "opacity"]})])
    assert not compressed_ply._sniff(p, p.read_bytes()[:4096])


def _header(n_vertex: int, n_chunk: int | None = None, sh_props: int = 0) -> bytes:
    n_chunk = -(-n_vertex // 256) if n_chunk is None else n_chunk
    lines = ["ply", "format binary_little_endian 1.0", f"element chunk {n_chunk}"]
    lines += [f"property float {p}" for p in compressed_ply._BOUND_PROPS]
    lines += [f"element vertex {n_vertex}"] + [f"property uint {p}" for p in compressed_ply._PACKED]
    if sh_props:
        lines += [f"element sh {n_vertex}"] + [f"property uchar f_rest_{i}" for i in range(sh_props)]
    return ("\n".join(lines) + "\nend_header\n").encode()


@pytest.mark.parametrize("case, words", [
    ("truncated", "truncated"),
    ("huge_count", "header promises"),
    ("bad_chunks", "chunks cannot describe"),
    ("bad_sh", "expected 9, 24 or 45"),
])
def test_bad_input_raises_scene_load_error(tmp_path, case, words):
    p = tmp_path / f"{case}.compressed.ply"
    if case == "truncated":
        save_scene(random_gaussians(600, seed=5, sh_degree=1), p)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif case == "huge_count":  # a billion splats promised by a file of a few hundred bytes
        p.write_bytes(_header(1_000_000_000) + b"\0" * 256)
    elif case == "bad_chunks":
        p.write_bytes(_header(300, n_chunk=1) + b"\0" * (48 + 300 * 16))
    else:
        p.write_bytes(_header(10, sh_props=7) + b"\0" * (48 + 10 * 16 + 70))
    with pytest.raises(SceneLoadError) as e:
        load_scene(p)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_scale_outliers_are_clamped_and_reported(tmp_path):
    scene = random_gaussians(50, seed=6, sh_degree=0)
    scene.scales[0] = 0.0  # log scale -inf
    scene.scales[1] = math.exp(30.0)
    report = save_scene(scene, tmp_path / "c.compressed.ply")
    assert any("clamped" in w for w in report["warnings"])
    back = load_scene(tmp_path / "c.compressed.ply")
    assert len(back) == 50 and bool(back.finite_mask().all())
