"""antimatter15 .splat: real files, the 4-splat fixture, write/read round trip, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_gaussians, shared_file

from scenes import SceneLoadError, detect_format, load_scene, save_scene
from scenes.formats import splat as splat_fmt
from scenes.formats._quant import quat_angle_deg
from scenes.gaussians import SH_C0


def test_luma_seal_decodes():
    scene = load_scene(shared_file("splat/luma-seal.splat"))
    assert len(scene) == 101_780
    assert scene.meta["format"] == "splat" and scene.up is None
    scene.validate()
    assert bool(scene.finite_mask().all())
    # VERIFY.txt: xyz_min / xyz_max / opacity mean of this file
    lo, hi = scene.means.min(0).values.numpy(), scene.means.max(0).values.numpy()
    np.testing.assert_allclose(lo, [-1.524, -2.258, -1.346], atol=1e-3)
    np.testing.assert_allclose(hi, [1.516, 1.153, 1.636], atol=1e-3)
    assert abs(float(scene.opacities.mean()) - 0.4854) < 1e-3
    torch.testing.assert_close(scene.quats.norm(dim=1), torch.ones(len(scene)), atol=1e-5, rtol=0)
    assert scene.sh.shape == (len(scene), 1, 3)


def test_minimal_fixture():
    scene = load_scene(shared_file("codec_fixtures_splat_transform/minimal.splat"))
    assert len(scene) == 4
    torch.testing.assert_close(scene.scales, torch.full((4, 3), 0.1))
    torch.testing.assert_close(scene.opacities, torch.full((4,), 230 / 255))
    # The fixture stores rot bytes [128, 128, 128, 255]: (w, x, y, z) = (0, 0, 0, 1) in main.js decoding.
    torch.testing.assert_close(scene.quats, torch.tensor([[0.0, 0, 0, 1]]).expand(4, 4))


def _match_by_position(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ia, ib with a[ia] == b[ib] row-wise (positions are float32-exact here)."""
    ia = np.lexsort(a.T[::-1])
    ib = np.lexsort(b.T[::-1])
    return ia, ib


@pytest.mark.parametrize("degree", [0, 3])
def test_round_trip(tmp_path, degree):
    scene = random_gaussians(3000, seed=4, sh_degree=degree)
    path = tmp_path / "x.splat"
    report = save_scene(scene, path)
    assert path.stat().st_size == 32 * len(scene)
    back = load_scene(path)
    assert len(back) == len(scene)
    ia, ib = _match_by_position(scene.means.numpy(), back.means.numpy())
    src, got = scene.subset(torch.from_numpy(ia)), back.subset(torch.from_numpy(ib))
    assert torch.equal(src.means, got.means)
    assert torch.equal(src.scales, got.scales)
    rgb_src = (0.5 + SH_C0 * src.sh[:, 0]).clamp(0, 1)
    rgb_got = 0.5 + SH_C0 * got.sh[:, 0]
    assert float((rgb_src - rgb_got).abs().max()) <= 0.5 / 255 + 1e-6
    assert float((src.opacities - got.opacities).abs().max()) <= 0.5 / 255 + 1e-6
    ang = quat_angle_deg(src.quats.numpy(), got.quats.numpy())
    assert ang.max() < 1.0  # 8-bit components: about 0.8 degrees at worst
    assert report["max_position_error"] == 0.0 and report["max_scale_error"] == 0.0
    assert report["max_color_error"] <= 0.5 / 255 + 1e-6
    assert report["max_opacity_error"] <= 0.5 / 255 + 1e-6
    assert abs(report["max_rotation_error_deg"] - ang.max()) < 1e-3
    assert report["sh_bands_dropped"] == degree


def test_writer_sorts_like_antimatter15(tmp_path):
    scene = random_gaussians(500, seed=5, sh_degree=0)
    path = tmp_path / "s.splat"
    save_scene(scene, path)
    back = load_scene(path)
    # positions are float32-exact: find each written splat in the source, then check the source key
    ia, ib = _match_by_position(scene.means.numpy(), back.means.numpy())
    src_of_written = np.empty(len(ib), dtype=np.int64)
    src_of_written[ib] = ia
    src = scene.subset(torch.from_numpy(src_of_written))
    key = src.scales.double().prod(dim=1) * src.opacities.double()
    assert bool((key[:-1] >= key[1:]).all())


def test_nonfinite_rows_dropped(tmp_path):
    scene = random_gaussians(10, seed=6, sh_degree=0)
    rec = splat_fmt.encode(scene.means.numpy(), scene.quats.numpy(), scene.scales.numpy(),
                           scene.opacities.numpy(), scene.sh[:, 0].numpy())
    rec["pos"][3, 1] = np.nan
    rec["scale"][7, 0] = np.inf
    path = tmp_path / "nan.splat"
    path.write_bytes(rec.tobytes())
    back = load_scene(path)
    assert len(back) == 8 and back.meta["dropped_nonfinite"] == 2


@pytest.mark.parametrize("size", [31, 33, 32 * 3 + 5])
def test_bad_size(tmp_path, size):
    path = tmp_path / "bad.splat"
    path.write_bytes(bytes(size))
    with pytest.raises(SceneLoadError, match="multiple of 32"):
        load_scene(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.splat"
    path.write_bytes(b"")
    with pytest.raises(SceneLoadError):
        load_scene(path)


def test_sniff_needs_extension(tmp_path):
    src = shared_file("codec_fixtures_splat_transform/minimal.splat")
    other = tmp_path / "minimal.bin"
    other.write_bytes(src.read_bytes())
    with pytest.raises(SceneLoadError):
        detect_format(other)  # no header, so no claim without the extension
    assert detect_format(src).name == "splat"
