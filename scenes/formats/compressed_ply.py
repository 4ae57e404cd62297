"""SuperSplat / PlayCanvas compressed PLY (`*.compressed.ply`): read and write.

Layout (FORMATS.md section 2; playcanvas/splat-transform > src/lib/readers/decompress-ply.ts >
decompressPly, src/lib/writers/compressed-chunk.ts > CompressedChunk.pack):

* element `chunk` [ceil(N/256)]: float32 min/max of x,y,z, of log scale, and (optionally) of the
  colour `0.5 + C0*f_dc` of its 256 splats.
* element `vertex` [N]: uint32 packed_position, packed_rotation, packed_scale, packed_color.
  position/scale: 11-10-11 bit unorm (bits 31..21, 20..11, 10..0) lerped between the chunk bounds;
  rotation: bits 31..30 = index (w,x,y,z) of the largest component, then 3 x 10-bit
  (v - 0.5)*sqrt(2) for the others in order; colour 8-8-8-8 RGBA, A = sigmoid(opacity).
* optional element `sh` [N]: uchar f_rest_0..{8,23,44} (INRIA channel-major order),
  n = 0 -> 0, 255 -> 1, else (u + 0.5)/256; value = (n - 0.5)*8.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import SceneLoadError
from ..gaussians import SH_C0, GaussianScene
from ..load import FormatSpec
from ..morton import morton_codes
from ._quant import scene_from_arrays
from .ply import PlyHeader, is_ply, parse_header, read_ply, write_ply

CHUNK = 256  # splats per chunk (splat-transform > decompress-ply.ts > CHUNK_SIZE)
_BOUND_PROPS = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"]
_COLOR_PROPS = ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
_PACKED = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
# For each index of the omitted largest quaternion component, the slots of the three stored ones.
_OTHER_SLOTS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
# Its inverse: for each largest index, the column of [stored0, stored1, stored2, largest] per slot.
_GATHER = np.array([[3, 0, 1, 2], [0, 3, 1, 2], [0, 1, 3, 2], [0, 1, 2, 3]])
# u8 SH value -> coefficient: n = 0 -> 0, 255 -> 1, else (u + 0.5)/256; value = (n - 0.5)*8.
_SH_LUT = ((np.concatenate([[0.0], (np.arange(1, 255) + 0.5) / 256.0, [1.0]]) - 0.5) * 8.0).astype(np.float32)
# Log scales are clamped to this range in the chunk bounds, as SuperSplat does ("values at infinity").
LOG_SCALE_CLAMP = 20.0


# ----------------------------------------------------------------------------- shared helpers

def scene_arrays(scene: GaussianScene) -> tuple[dict[str, np.ndarray], int]:
    """The finite rows of `scene` as float64 numpy arrays, and how many rows were dropped.

    Keys: means [N,3], quats [N,4] (unit, wxyz), log_scales [N,3], opacities [N], sh [N,K,3].
    """
    means = scene.means.detach().cpu().double().numpy()
    quats = scene.quats.detach().cpu().double().numpy()
    scales = scene.scales.detach().cpu().double().numpy()
    opac = scene.opacities.detach().cpu().double().numpy()
    sh = scene.sh.detach().cpu().double().numpy()
    n = len(means)
    norm = np.linalg.norm(quats, axis=1)
    keep = (np.isfinite(means).all(1) & np.isfinite(quats).all(1) & (norm > 0) & np.isfinite(scales).all(1)
            & (scales >= 0).all(1) & np.isfinite(opac) & np.isfinite(sh.reshape(n, -1)).all(1))
    with np.errstate(divide="ignore"):
        log_scales = np.log(scales)
    out = {"means": means[keep], "quats": quats[keep] / norm[keep, None], "log_scales": log_scales[keep],
           "opacities": np.clip(opac[keep], 0.0, 1.0), "sh": sh[keep]}
    return out, int(n - keep.sum())


def morton_order(means: np.ndarray) -> np.ndarray:
    """Indices [N] sorting points [N,3] along a 30-bit Morton curve (keeps chunks spatially tight)."""
    if len(means) == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = means.min(0), means.max(0)
    q = ((means - lo) / np.where(hi > lo, hi - lo, 1.0) * 1023.0 + 0.5).astype(np.int64)
    return np.argsort(morton_codes(q), kind="stable")


def pack_smallest_three(quats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest-three quaternion code: ([N] index of the largest |component|, [N,3] unorm in [0,1]).

    quats [N,4] unit wxyz; the sign is flipped so the dropped component is positive. The three
    others lie in [-1/sqrt2, 1/sqrt2] and map to (c*sqrt2 + 1)/2.
    """
    largest = np.argmax(np.abs(quats), axis=1)
    rows = np.arange(len(quats))
    q = quats * np.where(quats[rows, largest] < 0, -1.0, 1.0)[:, None]
    others = q[rows[:, None], _OTHER_SLOTS[largest]]
    return largest, np.clip(others * math.sqrt(2) * 0.5 + 0.5, 0.0, 1.0)


def unpack_smallest_three(largest: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Inverse of pack_smallest_three: largest [N] in 0..3, others [N,3] already in [-1/sqrt2, 1/sqrt2]."""
    m = np.sqrt(np.maximum(0.0, 1.0 - (others * others).sum(1)))
    ext = np.concatenate([others, m[:, None]], axis=1)  # [N, 4]: the three stored, then the largest
    return np.take_along_axis(ext, _GATHER[largest], axis=1)


def quat_angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation angle in degrees between unit quaternions a, b [N,4] (sign-insensitive)."""
    d = np.clip(np.abs((a * b).sum(1)), 0.0, 1.0)
    return np.degrees(2.0 * np.arccos(d))


def _unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """Bits [shift, shift+bits) of uint32 v as float32 in [0, 1]."""
    m = (1 << bits) - 1
    return ((v >> np.uint32(shift)) & np.uint32(m)).astype(np.float32) / np.float32(m)


def _quantize(t: np.ndarray, bits: int) -> np.ndarray:
    m = (1 << bits) - 1
    return np.clip(np.floor(t * m + 0.5), 0, m).astype(np.uint32)


# ----------------------------------------------------------------------------- reading

def _sniff(path: Path, head: bytes) -> bool:
    return is_ply(head) and b"element chunk " in head and b"packed_position" in head


def _check_header(path: Path, header: PlyHeader) -> tuple[int, bool, int]:
    """Validate the elements; returns (N, has chunk colours, f_rest count)."""
    chunk, vertex, sh = header.element("chunk"), header.element("vertex"), header.element("sh")
    if chunk is None or vertex is None:
        raise SceneLoadError(path, "a compressed PLY needs a 'chunk' and a 'vertex' element")
    extra = [e.name for e in header.elements if e.name not in ("chunk", "vertex", "sh")]
    if extra:
        raise SceneLoadError(path, f"unexpected element(s) {', '.join(extra)} in a compressed PLY")
    cprops = dict(chunk.properties)
    missing = [p for p in _BOUND_PROPS if cprops.get(p) != "f4"]
    if missing:
        raise SceneLoadError(path, f"the chunk element lacks float properties {', '.join(missing)}")
    has_color = all(cprops.get(p) == "f4" for p in _COLOR_PROPS)
    vprops = dict(vertex.properties)
    missing = [p for p in _PACKED if vprops.get(p) != "u4"]
    if missing:
        raise SceneLoadError(path, f"the vertex element lacks uint properties {', '.join(missing)}")
    n = vertex.count
    if chunk.count != -(-n // CHUNK):
        raise SceneLoadError(path, f"{chunk.count:,} chunks cannot describe {n:,} splats "
                                   f"(expected ceil({n:,}/256) = {-(-n // CHUNK):,})")
    n_rest = 0
    if sh is not None:
        n_rest = len(sh.properties)
        if n_rest not in (9, 24, 45):
            raise SceneLoadError(path, f"the sh element has {n_rest} properties, expected 9, 24 or 45")
        bad = [p for i, (p, t) in enumerate(sh.properties) if p != f"f_rest_{i}" or t != "u1"]
        if bad:
            raise SceneLoadError(path, f"sh properties must be uchar f_rest_0..{n_rest - 1} (got {bad[0]!r})")
        if sh.count != n:
            raise SceneLoadError(path, f"the sh element has {sh.count:,} rows for {n:,} splats")
    return n, has_color, n_rest


def decode_arrays(path: Path) -> dict:
    """Decode a compressed PLY into float32 arrays (means, quats, log_scales, colors, alpha, f_rest)."""
    header = parse_header(path)
    n, has_color, n_rest = _check_header(path, header)
    read_ply(path, header)
    ch = header.element("chunk").data
    v = header.element("vertex").data
    m_chunks = len(ch)
    t_pad = np.zeros(m_chunks * CHUNK, dtype=np.float32)

    def lerp(lo_name: str, hi_name: str, t: np.ndarray) -> np.ndarray:
        # Broadcast the chunk bounds over [chunks, 256] instead of gathering them per splat.
        lo = ch[lo_name].astype(np.float32)[:, None]
        hi = ch[hi_name].astype(np.float32)[:, None]
        t_pad[:n] = t
        tt = t_pad.reshape(m_chunks, CHUNK)
        return (lo * (1.0 - tt) + hi * tt).reshape(-1)[:n]

    pos, rot, scl, col = (np.ascontiguousarray(v[p]) for p in _PACKED)
    means = np.empty((n, 3), dtype=np.float32)
    log_scales = np.empty((n, 3), dtype=np.float32)
    for j, (ax, (shift, bits)) in enumerate(zip("xyz", [(21, 11), (11, 10), (0, 11)], strict=True)):
        means[:, j] = lerp(f"min_{ax}", f"max_{ax}", _unorm(pos, shift, bits))
        log_scales[:, j] = lerp(f"min_scale_{ax}", f"max_scale_{ax}", _unorm(scl, shift, bits))

    others = np.stack([_unorm(rot, s, 10) for s in (20, 10, 0)], 1)
    quats = unpack_smallest_three((rot >> np.uint32(30)).astype(np.int8),
                                  (others - np.float32(0.5)) * np.float32(math.sqrt(2)))

    colors = np.stack([_unorm(col, s, 8) for s in (24, 16, 8)], 1)
    if has_color:
        for j, c in enumerate("rgb"):
            colors[:, j] = lerp(f"min_{c}", f"max_{c}", colors[:, j])
    alpha = (col & np.uint32(0xFF)).astype(np.float32) / np.float32(255.0)

    f_rest = None
    if n_rest:
        u = header.element("sh").data.view(np.uint8).reshape(n, n_rest)  # 45 packed uchar fields
        f_rest = _SH_LUT[u]  # [N, n_rest] float32
    return {"n": n, "means": means, "quats": quats, "log_scales": log_scales, "colors": colors,
            "alpha": alpha, "f_rest": f_rest, "has_chunk_color": has_color, "comments": header.comments}


def read(path: Path) -> GaussianScene:
    """Read a compressed PLY into activated Gaussians (opacity = alpha byte / 255, never a logit)."""
    path = Path(path)
    d = decode_arrays(path)
    n = d["n"]
    k_rest = 0 if d["f_rest"] is None else d["f_rest"].shape[1] // 3
    sh = np.empty((n, 1 + k_rest, 3), dtype=np.float32)
    sh[:, 0] = (d["colors"] - 0.5) / SH_C0
    if k_rest:
        sh[:, 1:] = d["f_rest"].reshape(n, 3, k_rest).transpose(0, 2, 1)  # channel-major -> [N,K,3]
    meta = {"sh_degree_file": int(round(math.sqrt(1 + k_rest))) - 1,
            "has_chunk_color": d["has_chunk_color"], "comments": d["comments"]}
    with np.errstate(over="ignore"):
        scales = np.exp(d["log_scales"])
    return scene_from_arrays(path, d["means"], d["quats"], scales, d["alpha"], sh,
                             check=("means", "scales", "opacities", "sh_dc"), meta=meta)


# ----------------------------------------------------------------------------- writing

def _chunk_minmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk min and max of x [N, C] -> ([M, C], [M, C]); the last chunk is padded by repeating."""
    n = len(x)
    m = -(-n // CHUNK)
    pad = m * CHUNK - n
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    x = x.reshape(m, CHUNK, -1)
    return x.min(1), x.max(1)


def _normalize(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, ci: np.ndarray) -> np.ndarray:
    lo, hi = lo[ci], hi[ci]
    span = hi - lo
    return np.clip(np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.0), 0.0, 1.0)


def write(scene: GaussianScene, path: Path, **opts) -> dict:
    """Write a compressed PLY (Morton order, chunks of 256). Returns the errors it introduced.

    The errors are measured by decoding the written file and comparing splat by splat:
    max_position_error (world units), max_scale_log_error, max_rotation_error_deg,
    max_color_error (0.5 + C0*f_dc units), max_opacity_error, max_sh_error (f_rest values).
    """
    path = Path(path)
    a, dropped = scene_arrays(scene)
    n = len(a["means"])
    if n == 0:
        raise ValueError("cannot write a compressed PLY with no finite splats")
    order = morton_order(a["means"])
    means = a["means"][order]
    log_scales = np.clip(a["log_scales"][order], -LOG_SCALE_CLAMP, LOG_SCALE_CLAMP)
    quats = a["quats"][order]
    opac = a["opacities"][order]
    sh = a["sh"][order]
    colors = sh[:, 0] * SH_C0 + 0.5
    ci = np.arange(n) // CHUNK

    # Bounds are stored as float32: normalize against the rounded values the decoder will see.
    pmin, pmax, smin, smax, cmin, cmax = (b.astype(np.float32).astype(np.float64) for b in (
        *_chunk_minmax(means), *_chunk_minmax(log_scales), *_chunk_minmax(colors)))

    def pack111011(t: np.ndarray) -> np.ndarray:
        return (_quantize(t[:, 0], 11) << np.uint32(21)) | (_quantize(t[:, 1], 10) << np.uint32(11)) \
            | _quantize(t[:, 2], 11)

    packed_position = pack111011(_normalize(means, pmin, pmax, ci))
    packed_scale = pack111011(_normalize(log_scales, smin, smax, ci))
    largest, others = pack_smallest_three(quats)
    packed_rotation = (largest.astype(np.uint32) << np.uint32(30)) \
        | (_quantize(others[:, 0], 10) << np.uint32(20)) | (_quantize(others[:, 1], 10) << np.uint32(10)) \
        | _quantize(others[:, 2], 10)
    c = _normalize(colors, cmin, cmax, ci)
    packed_color = (_quantize(c[:, 0], 8) << np.uint32(24)) | (_quantize(c[:, 1], 8) << np.uint32(16)) \
        | (_quantize(c[:, 2], 8) << np.uint32(8)) | _quantize(opac, 8)

    f32 = np.float32
    chunk_cols = {}
    for j, ax in enumerate("xyz"):
        chunk_cols[f"min_{ax}"] = pmin[:, j].astype(f32)
    for j, ax in enumerate("xyz"):
        chunk_cols[f"max_{ax}"] = pmax[:, j].astype(f32)
    for j, ax in enumerate("xyz"):
        chunk_cols[f"min_scale_{ax}"] = smin[:, j].astype(f32)
    for j, ax in enumerate("xyz"):
        chunk_cols[f"max_scale_{ax}"] = smax[:, j].astype(f32)
    for j, cc in enumerate("rgb"):
        chunk_cols[f"min_{cc}"] = cmin[:, j].astype(f32)
    for j, cc in enumerate("rgb"):
        chunk_cols[f"max_{cc}"] = cmax[:, j].astype(f32)
    elements = [("chunk", chunk_cols),
                ("vertex", {"packed_position": packed_position, "packed_rotation": packed_rotation,
                            "packed_scale": packed_scale, "packed_color": packed_color})]
    k_rest = sh.shape[1] - 1
    if k_rest:
        f_rest = sh[:, 1:].transpose(0, 2, 1).reshape(n, 3 * k_rest)  # [N,K,3] -> channel-major
        # splat-transform > write-compressed-ply.ts: trunc((v/8 + 0.5)*256) clamped to 0..255
        u = np.clip(np.trunc((f_rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8)
        elements.append(("sh", {f"f_rest_{i}": u[:, i] for i in range(3 * k_rest)}))
    write_ply(path, elements, comments=["Generated by radview"])

    # Measure what was written by reading it back.
    d = decode_arrays(path)
    report = {"format": "compressed_ply", "count": n, "order": "morton (splats were reordered)",
              "dropped_nonfinite": dropped, "warnings": []}
    report["max_position_error"] = float(np.abs(d["means"] - means).max())
    orig_ls = a["log_scales"][order]
    report["max_scale_log_error"] = float(np.abs(d["log_scales"] - np.clip(orig_ls, -LOG_SCALE_CLAMP,
                                                                            LOG_SCALE_CLAMP)).max())
    clamped = int((np.abs(orig_ls) > LOG_SCALE_CLAMP).any(1).sum())
    if clamped:
        report["warnings"].append(f"{clamped} splats had log scales outside +-{LOG_SCALE_CLAMP:g} (clamped)")
    report["max_rotation_error_deg"] = float(quat_angle_error(
        d["quats"] / np.linalg.norm(d["quats"], axis=1, keepdims=True), quats).max())
    report["max_color_error"] = float(np.abs(d["colors"] - colors).max())
    report["max_opacity_error"] = float(np.abs(d["alpha"] - opac).max())
    if k_rest:
        report["max_sh_error"] = float(np.abs(d["f_rest"] - f_rest).max())
        outside = int((np.abs(f_rest) > 4.0).sum())
        if outside:
            report["warnings"].append(f"{outside} SH coefficients outside [-4, 4] were clamped")
    if dropped:
        report["warnings"].append(f"{dropped} non-finite splats were not written")
    return report


FORMAT = FormatSpec(
    name="compressed_ply",
    extensions=(".ply", ".compressed.ply"),
    sniff=_sniff,
    read=read,
    write=write,
    description="SuperSplat compressed PLY",
)
