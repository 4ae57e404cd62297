""".ksplat (read only): the three real files against their source INRIA PLY, a synthetic
multi-section file with partial buckets and mixed SH degrees, and bad headers."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from conftest import shared_file

from scenes import SceneLoadError, load_scene
from scenes.formats.ksplat import _record_dtype, _sh_order
from scenes.gaussians import SH_C0

PLY = "3dgs_ply/kacytran1122_try_iter7000_point_cloud.ply"
FILES = {
    0: "ksplat/kacytran_iter7000_c0_sh2.ksplat",
    1: "ksplat/kacytran_iter7000_c1_sh0.ksplat",
    2: "ksplat/kacytran_iter7000_c2_sh2.ksplat",
}


@pytest.fixture(scope="module")
def ply():
    return load_scene(shared_file(PLY))


def _nearest(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """For each row of a [N,3], the index of the nearest row of b [M,3]."""
    bt = torch.from_numpy(b).double()
    out = [torch.cdist(torch.from_numpy(a[i:i + 2048]).double(), bt).argmin(1)
           for i in range(0, len(a), 2048)]
    return torch.cat(out)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_real_files_match_ply(ply, mode):
    scene = load_scene(shared_file(FILES[mode]))
    assert len(scene) == 9080
    assert scene.meta["ksplat_mode"] == mode and scene.up is None
    scene.validate()
    # create-ksplat.js reorders splats into buckets: pair each with its source by position
    # (the PLY has a few exact duplicates; any of the twins is the same splat).
    ref = ply.subset(_nearest(scene.means.numpy(), ply.means.numpy()))
    # half a quantization step (block 5 / 2 / 32767) plus float32 rounding of centre + offset
    ulp = float(np.spacing(np.float32(ref.means.abs().max())))
    pos_tol = 0.0 if mode == 0 else 5.0 / 2 / 32767 * 0.5 + 2 * ulp
    assert float((scene.means - ref.means).abs().max()) <= pos_tol
    rel = ((scene.scales - ref.scales).abs() / ref.scales).max()
    assert float(rel) <= (1e-6 if mode == 0 else 2 ** -10)  # float16: 10-bit mantissa
    dq = torch.minimum((scene.quats - ref.quats).abs().amax(1), (scene.quats + ref.quats).abs().amax(1))
    assert float(dq.max()) <= (1e-6 if mode == 0 else 0.02)
    # colour / opacity: 8-bit, truncated by the producer, after clipping to [0, 1]
    rgb = 0.5 + SH_C0 * scene.sh[:, 0]
    rgb_ref = (0.5 + SH_C0 * ref.sh[:, 0]).clamp(0, 1)
    assert float((rgb - rgb_ref).abs().max()) <= 1.5 / 255
    assert float((scene.opacities - ref.opacities).abs().max()) <= 1.0 / 255
    if mode == 1:
        assert scene.sh_degree == 0
        return
    assert scene.sh_degree == 2
    rest, rest_ref = scene.sh[:, 1:9], ref.sh[:, 1:9]
    if mode == 0:
        assert torch.equal(rest, rest_ref)  # float32 SH, reordered from per-band to INRIA order
    else:
        lo, hi = -0.20010906, 0.21495727  # this file's header SH range; values outside are clipped
        step = (hi - lo) / 255
        assert float((rest - rest_ref.clamp(lo, hi)).abs().max()) <= step * 1.01


def test_minimal_fixture():
    scene = load_scene(shared_file("codec_fixtures_splat_transform/minimal.ksplat"))
    assert len(scene) == 4
    torch.testing.assert_close(scene.scales, torch.full((4, 3), 0.1))
    torch.testing.assert_close(scene.means[:, 1], torch.zeros(4))


# ----------------------------------------------------------------------------- synthetic files

def _section(rng, n, degree, mode, capacity=4, block=2.0, partial=(3, 0, 2)):
    """Arrays for one section, positions grouped into buckets of `capacity` then partial buckets."""
    sizes_full = (n - sum(partial)) // capacity
    assert sizes_full * capacity + sum(partial) == n
    buckets = sizes_full + len(partial)
    centers = rng.uniform(-5, 5, (buckets, 3)).astype(np.float32)
    bucket_of = np.concatenate([np.repeat(np.arange(sizes_full), capacity),
                                np.repeat(np.arange(sizes_full, buckets), partial)])
    q = 32767
    step = block / 2 / q
    u = rng.integers(1000, 64000, (n, 3)).astype(np.uint16)
    pos = (u.astype(np.float32) - q) * np.float32(step) + centers[bucket_of]
    kr = (degree + 1) ** 2 - 1
    return {
        "n": n, "degree": degree, "capacity": capacity, "block": block, "full": sizes_full,
        "partial": list(partial), "centers": centers, "u": u, "pos": pos,
        "scale": rng.uniform(0.01, 0.2, (n, 3)).astype(np.float32),
        "rot": np.tile(np.array([[1, 0, 0, 0]], np.float32), (n, 1)),
        "rgba": rng.integers(0, 256, (n, 4)).astype(np.uint8),
        "rest": rng.uniform(-1.2, 1.2, (n, kr, 3)).astype(np.float32),  # our order [N, K-1, 3]
        "mode": mode,
    }


def _ksplat_bytes(sections, mode, extra_sections=0):
    """A .ksplat in the GaussianSplats3D layout (test-only encoder)."""
    n_total = sum(s["n"] for s in sections)
    max_sections = len(sections) + extra_sections
    head = bytearray(4096)
    head[0], head[1] = 0, 1
    struct.pack_into("<IIII", head, 4, max_sections, len(sections), n_total, n_total)
    struct.pack_into("<H", head, 20, mode)
    struct.pack_into("<ff", head, 36, -1.5, 1.5)
    headers, bodies = [], []
    for s in sections:
        kr = (s["degree"] + 1) ** 2 - 1
        dt = _record_dtype(mode, kr * 3)
        rec = np.zeros(s["n"], dtype=dt)
        rec["pos"] = s["pos"] if mode == 0 else s["u"]
        rec["scale"] = s["scale"]
        rec["rot"] = s["rot"]
        rec["rgba"] = s["rgba"]
        if kr:
            flat = s["rest"].reshape(s["n"], -1)[:, _sh_order(s["degree"])]
            rec["sh"] = flat if mode < 2 else np.round((flat + 1.5) / 3.0 * 255)
        h = bytearray(1024)
        n_buckets = s["full"] + len(s["partial"])
        struct.pack_into("<IIIIfHxxI", h, 0, s["n"], s["n"], s["capacity"], n_buckets, s["block"], 12, 32767)
        struct.pack_into("<IIH", h, 32, s["full"], len(s["partial"]), s["degree"])
        headers.append(bytes(h))
        bodies.append(np.asarray(s["partial"], "<u4").tobytes() + s["centers"].astype("<f4").tobytes()
                      + rec.tobytes())
    headers += [bytes(1024)] * extra_sections
    return bytes(head) + b"".join(headers) + b"".join(bodies)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_synthetic_sections_partial_buckets_mixed_degrees(tmp_path, mode):
    rng = np.random.default_rng(7 + mode)
    secs = [_section(rng, 17, 2, mode), _section(rng, 13, 1, mode, partial=(1,)), _section(rng, 9, 0, mode,
                                                                                          partial=(5,))]
    path = tmp_path / "multi.ksplat"
    path.write_bytes(_ksplat_bytes(secs, mode, extra_sections=1))
    scene = load_scene(path)
    assert len(scene) == 39 and scene.sh_degree == 2 and scene.meta["ksplat_sections"] == 3
    pos = np.concatenate([s["pos"] for s in secs])
    np.testing.assert_allclose(scene.means.numpy(), pos, atol=1e-5 if mode else 0)
    scl_tol = 0 if mode == 0 else 2e-4
    np.testing.assert_allclose(scene.scales.numpy(), np.concatenate([s["scale"] for s in secs]), atol=scl_tol)
    rgba = np.concatenate([s["rgba"] for s in secs]).astype(np.float32) / 255
    np.testing.assert_allclose(scene.opacities.numpy(), rgba[:, 3], atol=1e-6)
    np.testing.assert_allclose(0.5 + SH_C0 * scene.sh[:, 0].numpy(), rgba[:, :3], atol=1e-6)
    sh_tol = {0: 0, 1: 1e-3, 2: 3.0 / 255 / 2 + 1e-6}[mode]
    start = 0
    for s in secs:
        kr = s["rest"].shape[1]
        got = scene.sh[start:start + s["n"]].numpy()
        np.testing.assert_allclose(got[:, 1:1 + kr], s["rest"], atol=sh_tol)
        assert not got[:, 1 + kr:].any()  # lower-degree sections are padded with zeros
        start += s["n"]


# ----------------------------------------------------------------------------- bad input

def _real_bytes():
    return shared_file(FILES[1]).read_bytes()


def _expect_error(tmp_path, blob, match):
    path = tmp_path / "bad.ksplat"
    path.write_bytes(blob)
    with pytest.raises(SceneLoadError, match=match):
        load_scene(path)


def test_truncated(tmp_path):
    blob = _real_bytes()
    _expect_error(tmp_path, blob[:2000], "smaller than the 4096-byte")
    _expect_error(tmp_path, blob[:4500], "cannot hold their headers")
    _expect_error(tmp_path, blob[:-10], "truncated")


def test_bad_header_fields(tmp_path):
    blob = bytearray(_real_bytes())
    bad = bytearray(blob)
    bad[0] = 1
    _expect_error(tmp_path, bytes(bad), "unsupported .ksplat version")
    bad = bytearray(blob)
    struct.pack_into("<H", bad, 20, 3)
    _expect_error(tmp_path, bytes(bad), "compression mode 3")
    bad = bytearray(blob)
    struct.pack_into("<I", bad, 16, 0)
    _expect_error(tmp_path, bytes(bad), "zero splats")
    bad = bytearray(blob)
    struct.pack_into("<I", bad, 4, 4_000_000_000)
    _expect_error(tmp_path, bytes(bad), "sections")
    bad = bytearray(blob)
    struct.pack_into("<II", bad, 4096, 3_000_000_000, 3_000_000_000)  # section splat count
    _expect_error(tmp_path, bytes(bad), "truncated")
    bad = bytearray(blob)
    struct.pack_into("<H", bad, 4096 + 40, 7)
    _expect_error(tmp_path, bytes(bad), "SH degree 7")
    bad = bytearray(blob)
    struct.pack_into("<I", bad, 16, 9081)
    _expect_error(tmp_path, bytes(bad), "promises 9,081 splats")
