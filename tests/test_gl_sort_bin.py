"""GPU scan, radix sort and tile binning against numpy (and the torch twin's binning)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import orbit_camera, psnr, random_gaussians, shared_file

from renderer import Camera, RenderSettings
from renderer.gl_backend import host_bin
from renderer.gl_backend.context import is_software, loop_cap
from renderer.gl_backend.gaussians import PAIR_TEX_W, GaussianPipeline
from renderer.gl_backend.sort import Scratch, exclusive_scan, radix_sort, scan_total
from scenes import GaussianScene

pytestmark = pytest.mark.gl


@pytest.fixture(scope="module", params=[(16, True, "gpu", "chunks"), (16, False, "gpu", "chunks"),
                                        (8, False, "gpu", "chunks"), ((8, 16), False, "gpu", "chunks"),
                                        (16, True, "gpu", "host"), ((8, 16), False, "cpu", "host")],
                ids=["tile16-exact", "tile16", "tile8", "tile8x16", "tile16-exact-host", "tile8x16-host"])
def pipe(gl_ctx, request):
    """Pipelines whose bins the tests below check against numpy: the chunk walks (bin.comp), and
    the host binning after either sort (the cpu sort hands it the order, else it reads it back)."""
    bt, exact, sort, method = request.param
    if method == "host" and not host_bin.available():
        pytest.skip("host binning needs numba")
    p = GaussianPipeline(gl_ctx, sort=sort, timing="off", blend_tile=bt, exact_tiles=exact, bin_method=method)
    assert p.binning.method == method
    yield p
    p.release()


@pytest.mark.parametrize("m,shape", [(1, None), (255, None), (256, None), (257, None), (70_001, None),
                                     (1, (1, 1)), (300, (100, 3)), (70_001, (70_001, 1)),
                                     (66_300, (1300, 51)), (70_000, (35_000, 2))])
def test_exclusive_scan(gl_ctx, m, shape):
    """In memory order, or (shape = (rows, cols), bin.comp's hist) in the order of a rows x cols
    matrix stored column by column."""
    rng = np.random.default_rng(m)
    data = rng.integers(0, 50, size=m, dtype=np.uint32)
    scratch = Scratch(gl_ctx)
    buf = gl_ctx.buffer(data.tobytes())
    exclusive_scan(gl_ctx, scratch, buf, m, transposed=shape)
    got = np.frombuffer(buf.read(), dtype=np.uint32)
    order = data if shape is None else data.reshape(shape[1], shape[0]).T.ravel()
    expect = np.concatenate([[0], np.cumsum(order)[:-1]]).astype(np.uint32)
    if shape is not None:
        expect = expect.reshape(shape).T.ravel()  # back to memory order
    assert np.array_equal(got, expect)
    assert scan_total(scratch, m, transposed=shape) == int(data.sum())
    buf.release()
    scratch.release()


def _check_radix_sort(ctx, keys: np.ndarray, **kw) -> None:
    """radix_sort(keys, 0..n-1, **kw) against numpy's stable argsort of the full keys."""
    n = len(keys)
    vals = np.arange(n, dtype=np.uint32)
    if kw.get("iota"):  # the values are the indices without being stored: vals holds junk
        vals = np.random.default_rng(n).integers(0, 2**32, size=n, dtype=np.uint32)
    scratch = Scratch(ctx)
    kb, vb = ctx.buffer(keys.tobytes()), ctx.buffer(vals.tobytes())
    _assert_stable_sort(keys, *radix_sort(ctx, scratch, kb, vb, n, **kw))
    kb.release()
    vb.release()
    scratch.release()


def _assert_stable_sort(keys: np.ndarray, sorted_keys, sorted_vals) -> None:
    """The buffers hold keys and their indices 0..n-1 in numpy's stable argsort order."""
    n = len(keys)
    order = np.argsort(keys, kind="stable")
    assert np.array_equal(np.frombuffer(sorted_keys.read(4 * n), dtype=np.uint32), keys[order])
    assert np.array_equal(np.frombuffer(sorted_vals.read(4 * n), dtype=np.uint32), order.astype(np.uint32))


@pytest.mark.parametrize("n,gpu", [(1, False), (100, False), (5000, False), (66_000, False), (66_000, True)])
def test_radix_sort_matches_numpy_stable(gl_ctx, monkeypatch, n, gpu):
    """gpu: the GPU choices (radix.comp DIGIT_MAJOR counters, scan_par.comp block sums)."""
    if gpu:
        from renderer.gl_backend import sort as S

        monkeypatch.setattr(S, "is_software", lambda ctx: False)
    rng = np.random.default_rng(n)
    depths = rng.uniform(0.01, 50.0, size=n).astype(np.float32)
    keys = depths.view(np.uint32).copy()
    keys[rng.random(n) < 0.2] = 0xFFFFFFFF  # culled
    keys[: n // 3] = keys[n // 2] if n > 2 else keys[: n // 3]  # many ties: stability matters
    _check_radix_sort(gl_ctx, keys)


@pytest.mark.parametrize("n", [1, 3000, 70_001])
def test_radix_sort_of_a_key_range(gl_ctx, n):
    """key_offset + key_bits (the pipeline's narrow depth range): the order of the full keys in
    fewer passes, INVALID_KEY last, ties stable."""
    rng = np.random.default_rng(n)
    keys = rng.uniform(1.3, 4.7, size=n).astype(np.float32).view(np.uint32).copy()
    keys[rng.random(n) < 0.1] = 0xFFFFFFFF
    keys[: n // 4] = keys[n // 2]  # ties: stability
    valid = keys[keys != 0xFFFFFFFF]
    lo, hi = int(valid.min()), int(valid.max())
    bits = (hi - lo + 1).bit_length()
    assert bits <= 24  # 3 passes where the plain keys need 4
    _check_radix_sort(gl_ctx, keys, key_bits=bits, key_offset=lo)
    _check_radix_sort(gl_ctx, keys, key_bits=bits, key_offset=lo, iota=True)
    # Depths over more than a factor of 2 (25 key bits): three 9-bit passes (the CPU choice).
    wide = rng.uniform(0.8, 3.5, size=n).astype(np.float32).view(np.uint32).copy()
    wide[rng.random(n) < 0.1] = 0xFFFFFFFF
    valid = wide[wide != 0xFFFFFFFF]
    lo, hi = int(valid.min()), int(valid.max())
    bits = (hi - lo + 1).bit_length()
    assert n < 3000 or bits == 25
    _check_radix_sort(gl_ctx, wide, key_bits=bits, key_offset=lo, iota=True, max_digit_bits=9, local=8)


def numpy_bins(keys: np.ndarray, rects: np.ndarray, tiles_x: int, num_tiles: int, spans=None, tie=None):
    """Reference: depth order (equal keys by index, or by `tie` [n] where given: the scene's index
    of each slot), then per tile the Gaussians whose rectangle (row spans [n, 8, 2] where given,
    for rectangles of up to 8 rows) covers it."""
    order = np.argsort(keys, kind="stable") if tie is None else np.lexsort((tie, keys))
    order = order[keys[order] != 0xFFFFFFFF]
    lists = [[] for _ in range(num_tiles)]
    for g in order:
        x0, y0, x1, y1 = rects[g]
        for ty in range(y0, y1):
            xa, xb = (x0, x1) if spans is None or y1 - y0 > 8 else spans[g, ty - y0]
            for tx in range(xa, xb):
                lists[ty * tiles_x + tx].append(g)
    start = np.zeros(num_tiles + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(li) for li in lists])
    ids = np.array([g for li in lists for g in li], dtype=np.int64)
    return start, ids


def _render_and_check(pipe, scene, camera):
    pipe.draw(scene, camera, RenderSettings())
    st = pipe.debug_state()
    tw, th = pipe.tile_w, pipe.tile_h
    tx, ty = (camera.width + tw - 1) // tw, (camera.height + th - 1) // th
    if len(scene) == 0:
        assert st["ids"].size == 0 and not st["tile_start"].any()
        return st
    # The projection writes view-z bits as keys; reconstruct the unsorted keys from the sorted pairs.
    keys = np.empty(len(scene), dtype=np.uint32)
    keys[st["sorted_vals"]] = st["sorted_keys"]
    start, ids = numpy_bins(keys, st["rects"], tx, tx * ty, st["spans"], tie=st.get("order"))
    assert np.array_equal(st["tile_start"], start)
    assert np.array_equal(st["ids"], ids)
    return st


def test_binning_matches_numpy_and_torch(pipe):
    """Exact 16 px tiles bin as the twin; culled tiles are checked against numpy on their spans."""
    from renderer.torch_backend.gaussians import TILE  # noqa: F401 - the twin is importable
    from renderer.torch_backend.project import project_gaussians, quat_scale_to_covar
    from renderer.torch_backend.tiles import bin_tiles

    scene = random_gaussians(1500, seed=11, log_scale=-3.0)
    cam = orbit_camera(2.5, 40, 10, 100, 70)  # 7 x 5 tiles, partial edge tiles
    st = _render_and_check(pipe, scene, cam)
    if not pipe.exact_tiles:
        return
    proj = project_gaussians(scene.means, quat_scale_to_covar(scene.quats, scene.scales),
                             torch.as_tensor(cam.T_camera_world, dtype=torch.float32),
                             cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, cam.near, cam.far)
    bins = bin_tiles(proj.means2d, proj.radii, proj.depths, proj.valid, cam.width, cam.height)
    assert np.array_equal(st["tile_start"], bins.tile_start.numpy())
    assert np.array_equal(st["ids"], bins.ids.numpy())


def test_binning_with_empty_tiles(pipe):
    scene = random_gaussians(400, seed=12, log_scale=-4.0, extent=0.15)
    scene.means += torch.tensor([0.6, 0.4, 0.0])  # a small clump off to one side
    cam = orbit_camera(3.0, 0, 0, 128, 96, target=(0, 0, 0))
    st = _render_and_check(pipe, scene, cam)
    counts = np.diff(st["tile_start"])
    assert (counts == 0).sum() > len(counts) // 2 and counts.max() > 0


def test_one_gaussian_covering_the_image(pipe):
    scene = GaussianScene(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 2.0),
                          torch.tensor([0.9]), torch.full((1, 1, 3), 0.5))
    cam = Camera.look_at((0, 0, -3), (0, 0, 0), (0, -1, 0), 64, 48)
    st = _render_and_check(pipe, scene, cam)
    n_tiles = (64 // pipe.tile_w) * (48 // pipe.tile_h)
    assert np.array_equal(np.diff(st["tile_start"]), np.ones(n_tiles))
    assert np.array_equal(st["ids"], np.zeros(n_tiles))


def test_empty_scene(pipe):
    st = _render_and_check(pipe, GaussianScene.empty(), orbit_camera(width=32, height=32))
    assert st["tile_start"].shape == ((32 // pipe.tile_w) * (32 // pipe.tile_h) + 1,)


def test_tile_sizes_give_the_same_image(gl_ctx):
    """8 px tiles, culled 16 px tiles, the twin's whole 16 px rectangles and 8 x 16 px tiles (16
    pixels a lane, or 8 with two invocations a column): one image, and the culled tiles leave
    pairs out."""
    scene = random_gaussians(3000, seed=14, log_scale=-3.5)
    cam = orbit_camera(width=100, height=70)
    imgs = []
    for bt, exact, ppt in ((16, True, None), (16, False, None), (8, False, None), ((8, 16), False, None),
                           ((8, 16), False, 8)):
        p = GaussianPipeline(gl_ctx, timing="off", blend_tile=bt, exact_tiles=exact, pixels_per_thread=ppt,
                             blend="software")  # one blend for every tile (GPUs take 8 x 16 in it only)
        assert p.ppt == (16 if bt == (8, 16) and ppt is None else 8)
        imgs.append(p.render(scene, cam, RenderSettings(antialias="mip")))
        p.release()
    for f in imgs[1:]:
        assert float((imgs[0].rgb - f.rgb).abs().max()) < 1e-5
        assert float((imgs[0].depth - f.depth).abs().max()) < 1e-4
        assert imgs[0].stats.counters["blended_samples"] == f.stats.counters["blended_samples"]
    pairs = [f.stats.counters["tile_pairs"] for f in imgs]
    assert pairs[1] < 0.9 * pairs[0] and pairs[3] < 0.9 * pairs[2] and pairs[3] == pairs[4]


def test_auto_blend_gives_gpus_the_software_blend_on_8x16_tiles(gl_ctx, monkeypatch):
    """gs_blend_hw.comp takes square tiles: on a GPU, auto blends 8 x 16 px tiles in software and
    square ones in hardware, and asking for the hardware blend on 8 x 16 tiles is an error."""
    import renderer.gl_backend.gaussians as G

    monkeypatch.setattr(G, "is_software", lambda ctx: False)
    for bt, blend in ((16, "hardware"), (8, "hardware"), ((8, 16), "software")):
        p = GaussianPipeline(gl_ctx, timing="off", blend_tile=bt)
        assert p.blend == blend
        p.release()
    with pytest.raises(ValueError, match="square tiles"):
        GaussianPipeline(gl_ctx, timing="off", blend_tile=(8, 16), blend="hardware")


def test_blends_are_counted_only_when_asked(gl_ctx):
    """count_blends=False (videos, the bench's timed frames): the same image, and no blend count
    in the stats rather than a 0 (the software blend; the hardware one counts anyway)."""
    scene = random_gaussians(2000, seed=25, log_scale=-3.4)
    cam = orbit_camera(width=64, height=48)
    p = GaussianPipeline(gl_ctx, timing="off")
    counted = p.render(scene, cam, RenderSettings())
    p.count_blends = False
    quiet = p.render(scene, cam, RenderSettings())
    p.count_blends = True
    again = p.render(scene, cam, RenderSettings())
    p.release()
    assert torch.equal(counted.rgb, quiet.rgb) and torch.equal(counted.depth, quiet.depth)
    assert counted.stats.counters["blended_samples"] > 1000
    assert again.stats.counters == counted.stats.counters
    assert ("blended_samples" in quiet.stats.counters) == (p.blend == "hardware")


def test_cpu_and_gpu_sort_agree(gl_ctx):
    """The two sorts give one image; auto sorts on the host on CPU rasterizers."""
    scene = random_gaussians(3000, seed=13, log_scale=-3.5)
    cam = orbit_camera(width=64, height=48)
    outs = []
    for sort in ("gpu", "cpu", "auto"):
        p = GaussianPipeline(gl_ctx, sort=sort, timing="off")
        if sort == "auto":
            assert p.binning.sort_mode == ("cpu" if is_software(gl_ctx) else "gpu")
        outs.append(p.render(scene, cam, RenderSettings()).rgb)
        p.release()
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("n", [1, 5000, 70_001])
def test_cpu_sort_is_numpys_stable_order(gl_ctx, n):
    """TileBinning's host sort: keys and indices in numpy's stable order, ties and culled keys
    included (it sorts (key, index) as one word with an unstable sort)."""
    from renderer.gl_backend.binning import TileBinning

    rng = np.random.default_rng(n)
    keys = rng.uniform(0.01, 50.0, size=n).astype(np.float32).view(np.uint32).copy()
    keys[rng.random(n) < 0.2] = 0xFFFFFFFF
    keys[: n // 3] = keys[n // 2]  # many ties
    scratch = Scratch(gl_ctx)
    binning = TileBinning(gl_ctx, scratch, "cpu")
    kb, vb = gl_ctx.buffer(keys.tobytes()), gl_ctx.buffer(reserve=4 * n)
    for _ in range(2):  # the second sort reuses the kept indices
        kb.write(keys.tobytes())
        _assert_stable_sort(keys, *binning.sort(kb, vb, n, iota=True))
    kb.release()
    vb.release()
    scratch.release()


# ---- the GPU paths (bin_par.comp, gs_blend_hw.comp, scan_par.comp, grouped atomics), run here on
# llvmpipe and compared with the software paths that the tests above check against numpy/torch.


@pytest.mark.parametrize("bt", [8, 16, (8, 16)], ids=["8", "16", "8x16"])
@pytest.mark.parametrize("cap", [4096, 16], ids=["shared-sort", "in-place-sort"])
@pytest.mark.parametrize("max_bucket", [32, 1, 0], ids=["buckets", "bucket-overflow", "bitonic"])
def test_parallel_binning_matches_chunk_walks(gl_ctx, bt, cap, max_bucket):
    scene = random_gaussians(2500, seed=21, log_scale=-3.2)
    cam = orbit_camera(2.5, 35, 15, 120, 90)
    out = {}
    for method in ("chunks", "parallel"):
        p = GaussianPipeline(gl_ctx, timing="off", blend_tile=bt, bin_method=method)
        p.binning.sort_cap = cap  # 16: most tiles take the in-place (global memory) bitonic sort
        # 1: most lists overflow a bucket and fall back to the bitonic sort; 0: no bucket sort
        p.binning.max_bucket = max_bucket
        st = _render_and_check(p, scene, cam)
        out[method] = (st["tile_start"], st["ids"], p.binning.method)
        p.release()
    assert out["parallel"][2] == "parallel" and out["chunks"][2] == "chunks"
    assert np.diff(out["chunks"][0]).max() > 16  # the small cap is exercised
    assert np.array_equal(out["chunks"][0], out["parallel"][0])
    assert np.array_equal(out["chunks"][1], out["parallel"][1])


@pytest.mark.parametrize("bt", [8, 16, (8, 16)], ids=["8", "16", "8x16"])
def test_host_binning_matches_chunk_walks(gl_ctx, bt):
    """Same bins and image, with a camera inside the cloud (rectangles over 8 rows or 15 tiles keep
    whole rows, FULL_SPANS) and Gaussians behind it."""
    if not host_bin.available():
        pytest.skip("host binning needs numba")
    scene = random_gaussians(3000, seed=31, log_scale=-2.8)
    cam = Camera.look_at((0.1, 0.05, -0.2), (0.0, 0.0, 1.0), (0, -1, 0), 256, 192)
    out = {}
    for method in ("chunks", "host"):
        p = GaussianPipeline(gl_ctx, timing="off", blend_tile=bt, bin_method=method)
        f = p.render(scene, cam, RenderSettings())
        st = p.debug_state()
        out[method] = (st["tile_start"], st["ids"], f.rgb)
        full = (st["rects"][:, 3] - st["rects"][:, 1] > 8) | (st["rects"][:, 2] - st["rects"][:, 0] > 15)
        assert full.any() and st["ids"].size > 10_000
        p.release()
    assert np.array_equal(out["chunks"][0], out["host"][0])
    assert np.array_equal(out["chunks"][1], out["host"][1])
    assert torch.equal(out["chunks"][2], out["host"][2])


def test_host_bin_tiles_clips_to_the_grid_and_checks_room():
    """Records reaching past the grid are clipped (the projections clip, but a bad record must not
    write out of bounds), and an ids array too short raises before anything is written."""
    if not host_bin.available():
        pytest.skip("host binning needs numba")
    def rect(x0, y0, x1, y1, spans=(0xFFFFFFFF, 0)):
        return [x0 | y0 << 16, x1 | y1 << 16, *spans]
    rects = np.array([rect(0, 0, 2, 2), rect(2, 1, 9, 7),  # the second reaches past 4 x 3 tiles
                      rect(1, 1, 4, 3, (0x21 | 0x31 << 8, 0))], dtype=np.uint32)  # spans 1..2, 1..3
    order = np.array([2, 0, 1], dtype=np.uint32)
    # rect 2's spans: tile x 2 of row 1, x 2 and 3 of row 2; rect 1 clipped to x 2..3, rows 1..2
    lists = {0: [0], 1: [0], 4: [0], 5: [0], 6: [2, 1], 7: [1], 10: [2, 1], 11: [2, 1]}
    want = [g for t in range(12) for g in lists.get(t, [])]
    for parts in (1, 2, 3, 5):  # runs binned by threads at once: the same lists
        ids = np.full(16, 99, dtype=np.uint32)
        ends, pairs = host_bin.bin_tiles(order, rects, 4, 3, ids, parts=parts)
        assert pairs == len(want) and list(ids[:pairs]) == want and (ids[pairs:] == 99).all()
        assert list(ends) == list(np.cumsum([len(lists.get(t, [])) for t in range(12)]))
    short = np.full(pairs - 1, 99, dtype=np.uint32)
    with pytest.raises(ValueError, match="do not fit"):
        host_bin.bin_tiles(order, rects, 4, 3, short)
    assert (short == 99).all()


def test_host_bin_compiles_where_no_cache_can_be_written():
    """numba's on-disk cache needs a writable place (refused here: a function without a source
    file); the loops then compile in each process rather than failing the import."""
    if not host_bin.available():
        pytest.skip("host binning needs numba")
    scope: dict = {}
    exec("def add(a, b):\n    return a + b\n", scope)
    assert host_bin._jit(scope["add"])(2, 3) == 5


def test_auto_bins_on_the_host_where_numba_is(gl_ctx, monkeypatch):
    """CPU rasterizers bin on the host, or walk chunks without numba; asking for the host binning
    without numba is an error. A host count other than the projection's raises, as do more pairs
    than the pair texture can hold."""
    from renderer.gl_backend import binning

    software = "host" if host_bin.available() else "chunks"
    assert GaussianPipeline(gl_ctx, timing="off").binning.method == (software if is_software(gl_ctx)
                                                                      else "parallel")
    monkeypatch.setattr(host_bin, "numba", None)
    if is_software(gl_ctx):
        assert GaussianPipeline(gl_ctx, timing="off").binning.method == "chunks"
    with pytest.raises(ValueError, match="needs numba"):
        GaussianPipeline(gl_ctx, timing="off", bin_method="host")
    monkeypatch.undo()
    if not host_bin.available():
        return
    p = GaussianPipeline(gl_ctx, timing="off", bin_method="host")
    real = host_bin.bin_tiles
    monkeypatch.setattr(binning.host_bin, "bin_tiles", lambda *a: (lambda e, n: (e, n - 1))(*real(*a)))
    scene, cam = random_gaussians(200, seed=3), orbit_camera(width=64, height=48)
    with pytest.raises(RuntimeError, match="tile binning counted"):
        p.render(scene, cam, RenderSettings())
    monkeypatch.undo()
    n_pairs = p.render(scene, cam, RenderSettings()).stats.counters["tile_pairs"]
    p.binning.max_pairs = n_pairs - 1
    with pytest.raises(RuntimeError, match="more than this GL implementation can bin"):
        p.render(scene, cam, RenderSettings())
    p.release()


def test_parallel_binning_checks_its_pair_count_after_the_frame(gl_ctx):
    """The parallel binning's count is read back with the frame's counters, not mid-frame: a count
    other than the projection's still raises."""
    scene = random_gaussians(500, seed=26, log_scale=-3.2)
    cam = orbit_camera(width=64, height=48)
    p = GaussianPipeline(gl_ctx, timing="off", bin_method="parallel")
    assert p.render(scene, cam, RenderSettings()).stats.counters["tile_pairs"] > 0
    real = p.binning.bin
    p.binning.bin = lambda keys, vals, rects, n_vis, expect, *rest: real(keys, vals, rects, n_vis,
                                                                         expect + 5, *rest)
    with pytest.raises(RuntimeError, match="tile binning counted"):
        p.render(scene, cam, RenderSettings())
    p.release()


def _close_but_for_exp2(want, got, max_err: float = 4e-3) -> None:
    """The software blend's image against the hardware blend's or another exp2 scheme's: alpha
    differs by gs_blend.comp's cubic exp2 (1e-4 relative), which moves a rare sample across the
    1/255 or the stopping threshold (one such: up to ~1e-3 in a pixel); the counts alike."""
    for a, b in ((want.rgb, got.rgb), (want.alpha, got.alpha)):
        assert float((a - b).abs().max()) < max_err and psnr(a, b) > 65
    cw, cg = dict(want.stats.counters), dict(got.stats.counters)
    bw, bg = cw.pop("blended_samples"), cg.pop("blended_samples")
    assert cw == cg and abs(bw - bg) <= 1e-4 * bw + 2


def _gpu_pipeline(ctx, bt):
    """Every GPU choice on this context: hardware blend, parallel bins, per-group atomics."""
    p = GaussianPipeline(ctx, timing="off", blend_tile=bt, blend="hardware", bin_method="parallel")
    p.software = False  # gs_project.comp with GROUP_ATOMICS
    return p


@pytest.mark.parametrize("bt", [8, 16])
def test_gpu_paths_give_the_software_image(gl_ctx, bt):
    scene = random_gaussians(3000, seed=22, log_scale=-3.4)
    cam = orbit_camera(width=96, height=72)
    frames = []
    for p in (GaussianPipeline(gl_ctx, timing="off", blend_tile=bt), _gpu_pipeline(gl_ctx, bt)):
        for mode in ("rgb", "depth"):
            frames.append(p.render(scene, cam, RenderSettings(mode=mode, antialias="mip")))
        p.release()
    sw, sw_d, hw, hw_d = frames
    _close_but_for_exp2(sw, hw)
    assert psnr(sw_d.rgb, hw_d.rgb) > 60


@pytest.mark.parametrize("max_bucket", [64, 1], ids=["buckets", "bitonic-fallback"])
def test_gpu_paths_on_a_trained_scene(gl_ctx, max_bucket):
    """A trained scene (the real 3DGS file), whose tiles hold ranks in runs where random clouds
    spread them: the GPU choices (culled 16 px tiles, parallel bins with the bucket sort or its
    bitonic fallback, the hardware blend) bin as numpy does and give the software image (but for
    the software blend's exp2, _close_but_for_exp2)."""
    from renderer.bench import frame_camera
    from scenes import load_scene

    scene = load_scene(shared_file("3dgs_ply/kacytran1122_try_iter7000_point_cloud.ply"))
    cam = frame_camera(scene.bounds(), 160, 120)
    sw = GaussianPipeline(gl_ctx, timing="off", blend_tile=16)
    want = sw.render(scene, cam, RenderSettings())
    sw.release()
    p = _gpu_pipeline(gl_ctx, 16)
    p.binning.max_bucket = max_bucket
    _render_and_check(p, scene, cam)
    got = p.render(scene, cam, RenderSettings())
    p.release()
    _close_but_for_exp2(want, got)
    assert float(want.alpha.mean()) > 0.05


@pytest.mark.parametrize("bt", [8, (8, 16)], ids=["8", "8x16"])
def test_blend_without_subgroup_broadcasts(gl_ctx, bt):
    """The unbatched blend (no ARB_shader_ballot), and the batched one reading its inputs through
    texelFetch (other drivers) rather than image loads (CPU rasterizers): the same image."""
    scene = random_gaussians(2000, seed=23, log_scale=-3.4)
    cam = orbit_camera(width=72, height=56)
    imgs = []
    for batch, images in ((None, True), (1, True), (None, False)):
        p = GaussianPipeline(gl_ctx, timing="off", blend_tile=bt)
        p.image_inputs = images
        if batch is not None:
            p.batch = batch  # the path for contexts without ARB_shader_ballot
        imgs.append(p.render(scene, cam, RenderSettings()))
        p.release()
    for f in imgs[1:]:
        assert float((imgs[0].rgb - f.rgb).abs().max()) < 1e-6
        assert imgs[0].stats.counters == f.stats.counters


@pytest.mark.parametrize("m", [70_001, 300_000])
def test_parallel_block_scan(gl_ctx, monkeypatch, m):
    from renderer.gl_backend import sort as S

    monkeypatch.setattr(S, "is_software", lambda ctx: False)  # scan_par.comp for the block sums
    data = np.random.default_rng(m).integers(0, 50, size=m, dtype=np.uint32)
    scratch = Scratch(gl_ctx)
    buf = gl_ctx.buffer(data.tobytes())
    exclusive_scan(gl_ctx, scratch, buf, m)
    expect = np.concatenate([[0], np.cumsum(data)[:-1]]).astype(np.uint32)
    assert np.array_equal(np.frombuffer(buf.read(), dtype=np.uint32), expect)
    assert scan_total(scratch, m) == int(data.sum())
    buf.release()
    scratch.release()


def test_chunk_walk_overrunning_the_loop_cap_is_rebinned(gl_ctx, monkeypatch):
    """One chunk for everything overruns llvmpipe's 65535-iteration cap (Mesa 22): the count check
    catches it, the frame is binned again with more chunks, and later frames start from there.
    Where loops are not capped (later Mesa, GPUs) the one long walk bins everything at once."""
    from renderer.gl_backend import binning

    monkeypatch.setattr(binning, "WALK_ITERATIONS", 1 << 30)
    p = GaussianPipeline(gl_ctx, timing="off", bin_method="chunks")
    scene = random_gaussians(80000, seed=24)  # a walk takes ~1 iteration per Gaussian: > 65535
    cam = orbit_camera(2.2, 30, 20, 256, 192)
    st = _render_and_check(p, scene, cam)
    assert st["ids"].size > 70_000
    if loop_cap(gl_ctx) is None:
        assert p.binning.chunk_scale == 1 and p._last["bins"].chunks == 1
    else:
        assert p.binning.chunk_scale > 1 and p._last["bins"].chunks > 1
    p.release()


def test_tile_blend_cut_by_the_loop_cap_raises(gl_ctx):
    """A tile whose pair list outlasts llvmpipe's 65535 loop iterations (batches of 8 pairs) while a
    pixel is still open would come out incomplete without notice: the frame raises instead. Here
    600k faint Gaussians sit on one pixel, which saturates, while the tile's other pixels stay open.
    Where loops are not capped (later Mesa, GPUs) the same frame renders whole."""
    n = 600_000
    base = random_gaussians(8, seed=5, sh_degree=0)
    scene = GaussianScene(
        means=torch.zeros(n, 3) + torch.linspace(-0.01, 0.01, n)[:, None] * torch.tensor([0.0, 0.0, 1.0]),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        scales=torch.full((n, 3), 1e-5), opacities=torch.full((n,), 0.5),
        sh=base.sh[:1].repeat(n, 1, 1))
    cam = Camera.look_at((0.0, 0.0, -3.0), (0.0, 0.0, 0.0), (0, -1, 0), 8, 8, fov_y_deg=40)
    p = GaussianPipeline(gl_ctx, timing="off")
    if loop_cap(gl_ctx) is None:
        f = p.render(scene, cam, RenderSettings())
        assert f.stats.counters["tile_pairs"] == n
        assert float(f.alpha[0, 0]) == 0.0 and float(f.alpha.max()) > 0.99
    else:
        with pytest.raises(RuntimeError, match="loop limit"):
            p.render(scene, cam, RenderSettings())
    # A tenth of them fits: same scene, no error, and the open pixels show the background.
    small = GaussianScene(means=scene.means[::10], quats=scene.quats[::10], scales=scene.scales[::10],
                          opacities=scene.opacities[::10], sh=scene.sh[::10])
    f = p.render(small, cam, RenderSettings())
    assert f.stats.counters["tile_pairs"] == n // 10
    assert float(f.alpha[0, 0]) == 0.0 and float(f.alpha.max()) > 0.99
    p.release()


def test_dense_frames_switch_binning_or_fail_clearly(gl_ctx):
    """A (tile, chunk) histogram larger than a storage buffer may hold (which crashed Mesa) makes
    the frame bin with the parallel method; more pairs than any method can hold raise."""
    scene = random_gaussians(60, seed=25, log_scale=-4.0)  # few pairs over many tiles
    cam = orbit_camera(width=400, height=300)
    p = GaussianPipeline(gl_ctx, timing="off", blend_tile=8, bin_method="chunks")
    want = p.render(scene, cam, RenderSettings())
    n_pairs = int(want.stats.counters["tile_pairs"])
    num_tiles = (400 // 8) * (300 // 8 + 1)
    assert 0 < n_pairs < num_tiles
    calls = []
    real = p.binning._bin_parallel
    p.binning._bin_parallel = lambda *a: calls.append(1) or real(*a)
    p.binning.max_words = n_pairs  # the pairs fit in a buffer, the (tile, chunk) histogram does not
    got = p.render(scene, cam, RenderSettings())
    assert calls and torch.equal(got.rgb, want.rgb)
    p.binning.max_pairs = n_pairs - 1
    with pytest.raises(RuntimeError, match="more than this GL implementation can bin"):
        p.render(scene, cam, RenderSettings())
    p.release()


def test_software_blend_with_barriers_gives_the_lockstep_image(gl_ctx):
    """gs_blend.comp off llvmpipe orders its shared-memory staging with barrier(); that build and
    the unbatched one run here too and must match the lockstep build exactly, as must a work group
    of two subgroups (4 px per invocation: per-subgroup slices of the staging) but for rounding
    (alpha is an exp2 per row there, by ratios between rows with 8 px)."""
    scene = random_gaussians(3000, seed=23, log_scale=-3.4)
    cam = orbit_camera(width=96, height=72)
    frames = []
    for lockstep, batch, ppt in ((True, None, 8), (False, None, 8), (True, 1, 8), (True, None, 4)):
        p = GaussianPipeline(gl_ctx, timing="off", pixels_per_thread=ppt)
        p.lockstep = lockstep
        p.batch = batch or p.batch
        frames.append(p.render(scene, cam, RenderSettings()))
        p.release()
    for f in frames[1:3]:
        assert torch.equal(frames[0].rgb, f.rgb) and torch.equal(frames[0].depth, f.depth)
        assert frames[0].stats.counters == f.stats.counters
    _close_but_for_exp2(frames[0], frames[3])


def test_storage_buffer_outputs_fall_back_to_images_past_the_binding_limit(gl_ctx):
    """On CPU rasterizers the projection, the binning and the blend write storage buffers that are
    copied into textures; where such a buffer would exceed one binding (GL_MAX_SHADER_STORAGE_
    BLOCK_SIZE: undefined, it crashed Mesa) they write the textures directly, same image."""
    if not is_software(gl_ctx):
        pytest.skip("GPUs write the textures directly (no storage-buffer outputs to fall back from)")
    scene = random_gaussians(3000, seed=24, log_scale=-3.4)
    cam = orbit_camera(width=96, height=72)
    frames = []
    for limited in (False, True):
        p = GaussianPipeline(gl_ctx, timing="off", bin_method="chunks")  # (the chunk walks' pair buffer)
        assert p.out_buffers and p.rec_buffers and p.binning.pair_buffer
        if limited:  # the pairs still fit one binding; the images, records and pair texture do not
            p.binning.max_words = frames[0].stats.counters["tile_pairs"]
            assert p.binning.max_words < min(4 * 96 * 72, 4 * PAIR_TEX_W)
        frames.append(p.render(scene, cam, RenderSettings()))
        for name in ("out_rgba", "rec0", "pair_buf"):
            assert (name in p.scratch.buffers) == (not limited), name
        p.release()
    assert torch.equal(frames[0].rgb, frames[1].rgb) and torch.equal(frames[0].depth, frames[1].depth)


@pytest.mark.parametrize("bt", [8, (8, 16)], ids=["8", "8x16"])
def test_row_spans_keep_every_tile_a_gaussian_reaches(gl_ctx, bt):
    """8 px and 8 x 16 px tiles: the row spans leave out only tiles where no pixel centre gets
    alpha >= 1/255 (checked on the projected records by brute force), and cut the pairs of thin
    tilted Gaussians well below their bounding boxes."""
    scene = random_gaussians(400, seed=31, log_scale=-4.0, log_scale_std=0.3)
    scene.scales[:, 0] *= 12.0  # needles in every direction: their boxes hold many empty tiles
    cam = orbit_camera(2.2, 25, 15, 120, 88)
    p = GaussianPipeline(gl_ctx, timing="off", blend_tile=bt)
    tw, th = p.tile_w, p.tile_h
    p.render(scene, cam, RenderSettings())
    st = p.debug_state()
    n = len(scene)
    rec = [np.frombuffer(p.textures.held[f"rec{i}"].read(), dtype=np.float32).reshape(-1, 4)[:n]
           for i in range(2)]
    p.release()
    visible = st["sorted_vals"][st["sorted_keys"] != 0xFFFFFFFF]
    yy, xx = np.mgrid[0:th, 0:tw] + 0.5
    in_spans = box_pairs = 0
    for g in visible:
        x0, y0, x1, y1 = st["rects"][g]
        (mx, my, qx, qy), (qz, lo) = rec[0][g], rec[1][g][:2]
        box_pairs += (x1 - x0) * (y1 - y0)
        for ty in range(y0, y1):
            xa, xb = (x0, x1) if y1 - y0 > 8 else st["spans"][g, ty - y0]
            in_spans += xb - xa
            for tx in range(x0, x1):
                dx, dy = mx - (tw * tx + xx), my - (th * ty + yy)
                reached = (lo + qx * dx * dx + qy * dx * dy + qz * dy * dy >= np.log2(1 / 255)).any()
                assert not reached or xa <= tx < xb, (g, tx, ty)
    assert in_spans < 0.85 * box_pairs


@pytest.mark.parametrize("walk,lockstep,split", [(4, False, 2), (8, False, 2), (8, True, 1), (8, True, 2)])
def test_chunk_walks_with_barriers_and_other_widths(gl_ctx, walk, lockstep, split):
    """bin.comp staged with barrier() (any driver; one chunk a work group whatever SPLIT says), with
    4 lanes per walk, and in lockstep with one or two chunks a work group, bins as numpy does."""
    p = GaussianPipeline(gl_ctx, timing="off", blend_tile=8, bin_method="chunks")
    if lockstep and not p.binning.lockstep:
        pytest.skip("lockstep walks need llvmpipe")
    p.binning.lockstep, p.binning.walk, p.binning.split = lockstep, walk, split
    assert p.binning._split() == (split if lockstep else 1)
    scene = random_gaussians(2500, seed=26, log_scale=-3.2)
    st = _render_and_check(p, scene, orbit_camera(2.5, 35, 15, 120, 90))
    assert st["ids"].size > 5000 and p._last["bins"].chunks >= 1
    p.release()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_projection_reads_images_or_buffers_alike(gl_ctx, degree):
    """CPU rasterizers read a scene's geom and SH through images where the SH fill whole texels
    (degrees 1 and 3), else through the storage buffers: one image either way, and the textures
    are freed with the scene."""
    scene = random_gaussians(1500, seed=32, sh_degree=degree, log_scale=-3.3)
    cam = orbit_camera(width=80, height=60)
    frames = []
    for images in (True, False):
        p = GaussianPipeline(gl_ctx, timing="off")
        p.image_inputs = images
        frames.append(p.render(scene, cam, RenderSettings()))
        has = p.scene.textures is not None
        assert has == (images and degree in (1, 3)), (images, degree)
        held = p.resource_stats()["objects"]
        p.release_scene()
        assert p.resource_stats()["objects"] < held
        p.release()
    assert torch.equal(frames[0].rgb, frames[1].rgb) and torch.equal(frames[0].depth, frames[1].depth)
    assert frames[0].stats.counters == frames[1].stats.counters and float(frames[0].alpha.max()) > 0.3


@pytest.mark.parametrize("lockstep", [True, False], ids=["lockstep", "barriers"])
def test_dynamic_tiles_give_the_static_image(gl_ctx, monkeypatch, lockstep):
    """The software blend taking its tiles from a counter (DYNAMIC_TILES) or one tile per work
    group: the same image, depth and counts, also where work groups run out of their loop budget
    after a tile or two (GRAB_BUDGET 4: the host then dispatches more groups)."""
    from renderer.gl_backend import pipeline as PL

    scene = random_gaussians(3000, seed=31, log_scale=-3.4)
    cam = orbit_camera(width=100, height=76)
    if lockstep and "llvmpipe" not in gl_ctx.info["GL_RENDERER"].lower():
        pytest.skip("LOCKSTEP is for llvmpipe, which runs a subgroup as one SIMD vector")
    frames = []
    for dynamic, budget, least in ((False, PL.GRAB_BUDGET, PL.DYNAMIC_GROUPS), (True, PL.GRAB_BUDGET,
                                    PL.DYNAMIC_GROUPS), (True, 4, 1)):
        monkeypatch.setattr(PL, "GRAB_BUDGET", budget)
        monkeypatch.setattr(PL, "DYNAMIC_GROUPS", least)
        p = GaussianPipeline(gl_ctx, timing="off", blend_tile=(8, 16))
        p.lockstep = lockstep
        p.dynamic_tiles = dynamic
        frames.append(p.render(scene, cam, RenderSettings()))
        p.release()
    assert float(frames[0].alpha.mean()) > 0.3
    for f in frames[1:]:
        assert torch.equal(frames[0].rgb, f.rgb) and torch.equal(frames[0].depth, f.depth)
        assert frames[0].stats.counters == f.stats.counters


def test_spatial_order_keeps_the_scene_order_of_equal_depths(gl_ctx):
    """A scene uploaded in Morton order (locality.py, with the host sort) gives the image, depth,
    counts and bins (mapped back through debug_state's order) of the scene's own order, where many
    Gaussians share a depth: the host sort and the marker z-buffer break ties by the scene's index."""
    from renderer.gl_backend.markers import MarkerPipeline

    scene = random_gaussians(4000, seed=41, log_scale=-3.0)
    scene.means[:, 2] = torch.round(scene.means[:, 2] * 3.0) / 3.0  # a few depth planes: ties
    cam = Camera.look_at(np.array([0.0, 0.0, -3.0]), np.zeros(3), np.array([0.0, -1.0, 0.0]), 96, 72, 50.0)
    out, states, marks = [], [], []
    for spatial in (False, True):
        p = GaussianPipeline(gl_ctx, sort="cpu", timing="off")
        p.spatial_order = spatial
        out.append(p.render(scene, cam, RenderSettings()))
        states.append(p.debug_state())
        mk = MarkerPipeline(gl_ctx, timing="off")
        marks.append(mk.render(scene, cam, RenderSettings(mode="points", point_size=3.0), p._scene_buffers))
        mk.release()
        p.release()
    plain, spatial = states
    assert not np.array_equal(spatial["order"], np.arange(len(scene)))  # the upload was reordered
    keys = plain["sorted_keys"][plain["sorted_keys"] != 0xFFFFFFFF]
    assert len(keys) - len(np.unique(keys)) > 1000  # the ties are there
    assert torch.equal(out[0].rgb, out[1].rgb) and torch.equal(out[0].depth, out[1].depth)
    assert out[0].stats.counters == out[1].stats.counters
    assert np.array_equal(plain["tile_start"], spatial["tile_start"])
    assert np.array_equal(plain["ids"], spatial["order"][spatial["ids"]])
    assert torch.equal(marks[0].rgb, marks[1].rgb) and torch.equal(marks[0].depth, marks[1].depth)


def test_spatial_order_is_kept_while_the_scene_changes_in_place(gl_ctx, monkeypatch):
    """Training changes a scene's tensors in place: the upload reuses the scene's order (any order
    renders the same image), and a new count makes a new one, the old buffers freed."""
    from renderer.gl_backend.locality import SpatialOrder

    freed = []
    release = SpatialOrder.release
    monkeypatch.setattr(SpatialOrder, "release", lambda self: (freed.append(self), release(self)))
    scene = random_gaussians(2000, seed=43, log_scale=-3.2)
    cam = orbit_camera(width=64, height=48)
    p = GaussianPipeline(gl_ctx, sort="cpu", timing="off")
    p.render(scene, cam, RenderSettings())
    slots = p.scene.slots
    held = p.resource_stats()
    with torch.no_grad():
        scene.means.mul_(1.05)
    moved = p.render(scene, cam, RenderSettings())
    assert p.scene.slots is slots and p.resource_stats() == held
    fresh = GaussianPipeline(gl_ctx, sort="cpu", timing="off")
    assert torch.equal(moved.rgb, fresh.render(scene, cam, RenderSettings()).rgb)
    fresh.release()
    pruned = scene.subset(torch.arange(1500))  # the same object with fewer Gaussians (densification)
    for f in ("means", "quats", "scales", "opacities", "sh"):
        setattr(scene, f, getattr(pruned, f))
    p.render(scene, cam, RenderSettings())
    assert p.scene.slots is not slots and len(p.scene.slots.order) == 1500 and freed == [slots]
    assert p.resource_stats()["objects"] == held["objects"]
    p.release()


def test_morton_order_is_a_local_permutation():
    from renderer.gl_backend.locality import morton_order

    pts = np.random.default_rng(5).random((5000, 3)).astype(np.float32) * [4.0, 1.0, 0.01]
    pts[7] = np.nan  # non-finite rows still get a place
    order = morton_order(pts)
    assert np.array_equal(np.sort(order), np.arange(len(pts)))
    ok = np.isfinite(pts).all(axis=1)
    step = np.linalg.norm(np.diff(pts[order][ok[order]], axis=0), axis=1).mean()
    assert step < 0.1 * np.linalg.norm(np.diff(pts[ok], axis=0), axis=1).mean()
    assert morton_order(np.zeros((0, 3))).shape == (0,)
