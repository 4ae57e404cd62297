"""PlayCanvas SOG: v1 and v2 folders, .sog bundles, the v2 writer, bad input."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import random_gaussians, shared_file
from PIL import Image

from scenes import SceneLoadError, detect_format, load_scene, save_scene
from scenes.formats import compressed_ply, sog
from scenes.gaussians import SH_C0

# Reference statistics from ../shared/data/VERIFY.txt (decoded there with splat-transform 2.7.1).
VERIFY = {
    "sog/playbot_lod6_v2": dict(n=1873, deg=2, version=2, xyz_min=[-1.023, -1.074, -1.024],
                                xyz_max=[1.023, 0.037, 1.029], scale_pct=[0.00037, 0.01676, 0.17019],
                                opacity_mean=0.902, dc_rgb_mean=[0.325, 0.301, 0.271], f_rest_absmax=1.6353),
    "sog/playcanvas_logo_v1": dict(n=307128, deg=0, version=1, xyz_min=[-1.535, -2.782, -0.577],
                                   xyz_max=[1.535, 0.296, 0.577], scale_pct=[3e-05, 0.00182, 0.05396],
                                   opacity_mean=0.689, dc_rgb_mean=[0.703, 0.414, 0.257]),
    "sog_bundle/monkey_0001.sog": dict(n=31658, deg=0, version=2, xyz_min=[-1.329, -0.939, -0.778],
                                       xyz_max=[1.329, 0.972, 0.823], scale_pct=[0.00058, 0.00212, 0.00897],
                                       opacity_mean=0.5961, dc_rgb_mean=[1.0, 0.0, 0.0]),
}


@pytest.mark.parametrize("rel", list(VERIFY))
def test_real_files_match_reference(rel):
    ref = VERIFY[rel]
    path = shared_file(rel)
    assert detect_format(path).name == "sog"
    s = load_scene(path)
    s.validate()
    assert len(s) == ref["n"] and s.sh_degree == ref["deg"]
    assert s.meta["format"] == "sog" and s.meta["sog_version"] == ref["version"]
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
    if "f_rest_absmax" in ref:
        assert s.sh[:, 1:].abs().max().item() == pytest.approx(ref["f_rest_absmax"], abs=1e-3)


def test_playbot_meta_json_path_and_first_splats():
    folder = shared_file("sog/playbot_lod6_v2")
    a = load_scene(folder)
    b = load_scene(folder / "meta.json")
    torch.testing.assert_close(a.means, b.means)
    first = a.subset(torch.arange(16))
    assert bool(first.finite_mask().all())
    torch.testing.assert_close(first.quats.norm(dim=1), torch.ones(16), atol=1e-5, rtol=0)
    assert bool(((first.opacities >= 0) & (first.opacities <= 1)).all())
    assert bool((first.scales > 0).all()) and first.sh.shape == (16, 9, 3)


def test_webp_lossless_round_trip_is_exact():
    rgba = np.random.default_rng(0).integers(0, 256, (13, 20, 4), dtype=np.uint8)
    rgba[::3, :, 3] = 0  # RGB under alpha 0 must survive (sh0 keeps colour indices there)
    img = Image.open(io.BytesIO(sog._webp_bytes(rgba)))
    assert img.format == "WEBP"
    np.testing.assert_array_equal(np.asarray(img.convert("RGBA")), rgba)


def _compare(scene, back):
    """Errors between `scene` (in the writer's Morton order) and what was read back."""
    a, _ = compressed_ply.scene_arrays(scene)
    order = compressed_ply.morton_order(a["means"])
    a = {k: v[order] for k, v in a.items()}
    return {
        "pos": np.abs(a["means"] - back.means.double().numpy()).max(),
        "log_scale": np.abs(a["log_scales"] - back.scales.log().double().numpy()).max(),
        "angle": compressed_ply.quat_angle_error(a["quats"], back.quats.double().numpy()).max(),
        "opacity": np.abs(a["opacities"] - back.opacities.double().numpy()).max(),
        "color": np.abs(a["sh"][:, 0] - back.sh[:, 0].double().numpy()).max() * SH_C0,
        "sh_rms": np.sqrt(((a["sh"][:, 1:] - back.sh[:, 1:].double().numpy()) ** 2).mean()),
    }


@pytest.mark.parametrize("name", ["r.sog", "folder", "folder2/meta.json"])
def test_write_read_round_trip(tmp_path, name):
    scene = random_gaussians(600, seed=7, sh_degree=3, log_scale=-3.0)
    out = tmp_path / name
    report = save_scene(scene, out, format=None if name.endswith(".sog") else "sog")
    if name.endswith(".sog"):
        assert zipfile.is_zipfile(out) and "meta.json" in zipfile.ZipFile(out).namelist()
    else:
        folder = out.parent if name.endswith(".json") else out
        assert json.loads((folder / "meta.json").read_text())["version"] == 2
    back = load_scene(out)
    assert len(back) == 600 and back.sh_degree == 3 and back.meta["sog_version"] == 2
    err = _compare(scene, back)
    assert err["pos"] < 1e-4 and err["pos"] == pytest.approx(report["max_position_error"], rel=1e-3, abs=1e-7)
    assert err["angle"] < 1.5 and err["opacity"] <= 0.5 / 255 + 1e-6
    # 256-entry k-means codebooks: sparse tails of these random values get coarse entries.
    assert err["log_scale"] < 0.15 and err["color"] < 0.1
    assert err["sh_rms"] < 0.1 and report["sh_palette_size"] <= 600


def test_rewrite_real_v2_keeps_count_and_bands(tmp_path):
    src = load_scene(shared_file("sog/playbot_lod6_v2"))
    report = save_scene(src, tmp_path / "p.sog")
    back = load_scene(tmp_path / "p.sog")
    assert len(back) == len(src) == report["count"] and back.sh_degree == 2
    # Its values already sit on 256-entry codebooks, so a new 256-entry codebook is nearly exact.
    assert report["max_position_error"] < 1e-4 and report["max_scale_log_error"] < 0.05
    assert report["max_color_error"] < 0.01 and report["max_opacity_error"] < 1e-6


def _written(tmp_path, name="s") -> tuple:
    out = tmp_path / name
    save_scene(random_gaussians(100, seed=8, sh_degree=1), out, format="sog")
    return out, json.loads((out / "meta.json").read_text())


def _expect(path, words):
    with pytest.raises(SceneLoadError) as e:
        load_scene(path)
    assert words in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_bad_zip_without_meta(tmp_path):
    p = tmp_path / "x.sog"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("means_l.webp", b"x")
    _expect(p, "no meta.json")


def test_bad_not_a_zip(tmp_path):
    p = tmp_path / "x.sog"
    p.write_bytes(b"not a zip at all")
    _expect(p, "not a valid")


def test_bad_unknown_version(tmp_path):
    out, meta = _written(tmp_path)
    meta["version"] = 3
    (out / "meta.json").write_text(json.dumps(meta))
    _expect(out, "unsupported SOG version 3")


def test_bad_missing_texture(tmp_path):
    out, _ = _written(tmp_path)
    (out / "quats.webp").unlink()
    _expect(out, "missing texture quats.webp")


def test_bad_texture_too_small_and_count_too_large(tmp_path):
    out, meta = _written(tmp_path)
    (out / "scales.webp").write_bytes(sog._webp_bytes(np.zeros((4, 4, 4), np.uint8)))
    _expect(out, "scales.webp is 4x4")
    out2, meta2 = _written(tmp_path, "t")
    meta2["count"] = 10**7  # more splats than any texture holds: refused before decoding
    (out2 / "meta.json").write_text(json.dumps(meta2))
    _expect(out2, "too small")


def test_bad_centroid_width_and_json(tmp_path):
    out, meta = _written(tmp_path)
    (out / "shN_centroids.webp").write_bytes(sog._webp_bytes(np.zeros((10, 100, 4), np.uint8)))
    _expect(out, "expected 192")
    out2, _ = _written(tmp_path, "t")
    (out2 / "meta.json").write_text("{not json")
    _expect(out2, "not valid JSON")


def test_lod_set_is_refused_clearly(tmp_path):
    d = tmp_path / "lod"
    d.mkdir()
    (d / "lod-meta.json").write_text(json.dumps({"version": 1, "lodLevels": 2, "filenames": [], "tree": {}}))
    _expect(d, "LOD set")
    _expect(d / "lod-meta.json", "LOD set")
