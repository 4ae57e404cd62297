"""Niantic `.spz` (nianticlabs/spz @21715c3 src/cc/load-spz.cc, splat-types.h; FORMATS.md section 2).

Versions:
* 1-3: gzip of [16-byte header + the attribute arrays back to back]; an un-gzipped copy of the same
  payload (starting with `NGSP`) also exists and is read too.
* 4: 32-byte plain header `NGSP` + TOC at tocByteOffset (numStreams x (u64 compressed, u64
  uncompressed)) + one zstd stream per non-empty attribute.
Header: magic `NGSP`, u32 version, u32 numPoints, u8 shDegree, u8 fractionalBits, u8 flags
(0x1 antialiased, 0x2 extensions), then (v4) u8 numStreams, u32 tocByteOffset, 12 reserved bytes.
Attributes, in this order: positions (24-bit signed fixed point / 2^fractionalBits; v1 float16),
alphas (u8 = 255 * sigmoid), colours (u8 = 255 * (0.15 * f_dc + 0.5)), scales (u8 = 16 * (log s + 10)),
rotations (v3+: u32 smallest-three of (x, y, z, w), 2-bit index + 3 x (sign, 9-bit magnitude);
v2: u8 x, y, z, w = sqrt(1 - |xyz|^2)), SH rest (u8 = 128 * v + 128, [coeff][channel]).

SPZ stores right-up-back (RUB, three.js). Radview's frame is INRIA's right-down-forward (RDF):
(x, y, z) -> (x, -y, -z), q = (w, x, y, z) -> (w, x, -y, -z), SH rest coefficient k times _FLIP_SH[k]
(spz splat-types.h coordinateConverter). The reader converts to RDF and sets up = (0, -1, 0) (RUB's
+Y); the writer converts back.
"""

from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import SceneLoadError
from ..load import FormatSpec
from ._quant import (
    SH_C0,
    normalize_quats,
    pack_smallest_three,
    quat_angle_deg,
    read_exact,
    scene_from_arrays,
    u8_round,
    unpack_smallest_three,
)

MAGIC = b"NGSP"
LEGACY_HEADER = 16
V4_HEADER = 32
COLOR_SCALE = 0.15  # spz load-spz.cc colorScale: f_dc * 0.15 instead of C0 leaves room for bright DC
_SQRT1_2 = np.float32(0.7071067811865476)
# RUB <-> RDF sign of each SH rest coefficient (INRIA order), spz splat-types.h with (x, y, z) = (1, -1, -1).
_FLIP_SH = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], dtype=np.float32)
_FLIP_P = np.array([1, -1, -1], dtype=np.float32)
_FLIP_Q = np.array([1, 1, -1, -1], dtype=np.float32)  # on (w, x, y, z)
_SH_DIM = {0: 0, 1: 3, 2: 8, 3: 15, 4: 24}  # rest coefficients per channel for each SH degree
_MAX_RATIO = 1024  # spz kMaxCompressionRatio: no real file compresses its positions more than this
_GZIP_MAX_RATIO = 1032  # deflate cannot compress better than ~1032:1
_EXT_SLACK = 1 << 20  # bytes of extension records accepted after the legacy payload


def _sizes(n: int, version: int, sh_dim: int) -> list[int]:
    """Byte sizes of positions, alphas, colours, scales, rotations, SH for n points."""
    return [n * (6 if version == 1 else 9), n, n * 3, n * 3, n * (4 if version >= 3 else 3), n * sh_dim * 3]


def sniff(path: Path, head: bytes) -> bool:
    if head.startswith(MAGIC):
        return True
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(31).decompress(head, 4)
        except zlib.error:
            return path.suffix.lower() == ".spz"  # a damaged .spz: let the reader say so
        return inner == MAGIC or (len(inner) < 4 and path.suffix.lower() == ".spz")
    return False


# ---------------------------------------------------------------------------------------------- reading

def read(path: Path):
    data = read_exact(path)
    if len(data) < 4:
        raise SceneLoadError(path, f"the file ({len(data)} bytes) is too short to be an SPZ file")
    if data[:2] == b"\x1f\x8b":
        return _read_legacy(path, data, gzipped=True)
    if data[:4] != MAGIC:
        raise SceneLoadError(path, "not an SPZ file (neither gzip data nor the 'NGSP' magic)")
    if len(data) < 8:
        raise SceneLoadError(path, "the SPZ header is truncated")
    version = struct.unpack_from("<I", data, 4)[0]
    if version == 4:
        return _read_v4(path, data)
    return _read_legacy(path, data, gzipped=False)


def _check_header(path: Path, version: int, n: int, degree: int) -> None:
    if not 1 <= version <= 4:
        raise SceneLoadError(path, f"unsupported SPZ version {version} (Radview reads versions 1 to 4)")
    if n == 0:
        raise SceneLoadError(path, "the SPZ file holds zero splats")
    if n > 0x7FFFFFFF:
        raise SceneLoadError(path, f"the SPZ header claims {n:,} splats, more than any SPZ reader accepts")
    if degree not in _SH_DIM:
        raise SceneLoadError(path, f"the SPZ header gives SH degree {degree}; SPZ stores degree 0 to 4")


def _read_legacy(path: Path, data: bytes, gzipped: bool):
    if gzipped:
        d = zlib.decompressobj(31)
        try:
            head = d.decompress(data, LEGACY_HEADER)
        except zlib.error as e:
            raise SceneLoadError(path, f"the gzip stream is corrupted ({e})") from e
    else:
        head = data[:LEGACY_HEADER]
    if len(head) < LEGACY_HEADER:
        raise SceneLoadError(path, "the SPZ header is truncated")
    if head[:4] != MAGIC:
        raise SceneLoadError(path, "the gzip data is not an SPZ file (no 'NGSP' magic inside)")
    version, n, degree, frac_bits, flags = struct.unpack_from("<IIBBB", head, 4)
    if version == 4:
        raise SceneLoadError(path, "SPZ version 4 data inside gzip is not a valid SPZ layout")
    _check_header(path, version, n, degree)
    sizes = _sizes(n, version, _SH_DIM[degree])
    need = sum(sizes)
    if gzipped:
        if need > _GZIP_MAX_RATIO * len(data):
            raise SceneLoadError(path, f"the header promises {n:,} splats ({need:,} bytes) but {len(data):,} "
                                       "bytes of gzip data cannot hold them")
        try:
            body = d.decompress(d.unconsumed_tail, need + _EXT_SLACK)
        except zlib.error as e:
            raise SceneLoadError(path, f"the gzip stream is corrupted ({e})") from e
        if not d.eof and len(body) < need + _EXT_SLACK:  # all input used, stream not finished
            raise SceneLoadError(path, "the gzip stream ends early (truncated file?)")
    else:
        body = data[LEGACY_HEADER:]
    if len(body) < need:
        raise SceneLoadError(path, f"the header promises {n:,} splats ({need:,} bytes of data) but the "
                                   f"payload holds only {len(body):,} bytes (truncated?)")
    streams, off = [], 0
    for s in sizes:
        streams.append(memoryview(body)[off:off + s])
        off += s
    return _decode(path, version, n, degree, frac_bits, flags, streams)


def _read_v4(path: Path, data: bytes):
    import zstandard

    if len(data) < V4_HEADER:
        raise SceneLoadError(path, "the SPZ v4 header is truncated (needs 32 bytes)")
    version, n, degree, frac_bits, flags, n_streams, toc = struct.unpack_from("<IIBBBBI", data, 4)
    _check_header(path, version, n, degree)
    sizes = [s for s in _sizes(n, version, _SH_DIM[degree]) if s]
    if n_streams != len(sizes):
        raise SceneLoadError(path, f"the SPZ v4 header lists {n_streams} streams; SH degree {degree} "
                                   f"needs {len(sizes)}")
    if toc < V4_HEADER or toc + 16 * n_streams > len(data):
        raise SceneLoadError(path, f"the SPZ v4 table of contents (offset {toc:,}) lies outside the file "
                                   "(truncated?)")
    if 9 * n > _MAX_RATIO * len(data):
        raise SceneLoadError(path, f"the header promises {n:,} splats but a {len(data):,}-byte file cannot "
                                   "hold them")
    entries = struct.unpack_from(f"<{2 * n_streams}Q", data, toc)
    off = toc + 16 * n_streams
    names = ["positions", "alphas", "colours", "scales", "rotations", "SH"]
    chunks = []
    for i, size in enumerate(sizes):
        comp, raw = entries[2 * i], entries[2 * i + 1]
        if raw != size:
            raise SceneLoadError(path, f"the {names[i]} stream holds {raw:,} bytes; {n:,} splats need "
                                       f"{size:,}")
        if comp > len(data) - off:
            raise SceneLoadError(path, f"the {names[i]} stream runs past the end of the file (truncated?)")
        chunks.append((names[i], memoryview(data)[off:off + comp], size))
        off += comp
    if off != len(data):
        raise SceneLoadError(path, f"{len(data) - off:,} unexpected bytes follow the last SPZ v4 stream")

    def unzstd(job) -> bytes:
        name, chunk, size = job
        try:
            declared = zstandard.frame_content_size(chunk)
            if declared not in (-1, size):
                raise SceneLoadError(path, f"the {name} zstd frame declares {declared:,} bytes, "
                                           f"expected {size:,}")
            # decompressobj grows its output with the data actually produced, never from a header.
            out = zstandard.ZstdDecompressor().decompressobj().decompress(chunk)
        except zstandard.ZstdError as e:
            raise SceneLoadError(path, f"the {name} zstd stream is corrupted ({e})") from e
        if len(out) != size:
            raise SceneLoadError(path, f"the {name} zstd stream decodes to {len(out):,} bytes, "
                                       f"expected {size:,} (corrupted?)")
        return out

    # The streams are independent (spz decompresses them in parallel too); zstd releases the GIL.
    workers = min(len(chunks), os.cpu_count() or 1)
    if workers > 1 and n > 100_000:
        with ThreadPoolExecutor(workers) as pool:
            streams = list(pool.map(unzstd, chunks))
    else:
        streams = [unzstd(c) for c in chunks]
    if degree == 0:
        streams.append(b"")
    return _decode(path, version, n, degree, frac_bits, flags, streams)


def _positions(buf, n: int, version: int, frac_bits: int) -> np.ndarray:
    if version == 1:
        return np.frombuffer(buf, dtype="<f2", count=n * 3).astype(np.float32).reshape(n, 3)
    b = np.frombuffer(buf, dtype=np.uint8, count=n * 9).reshape(n * 3, 3).astype(np.int32)
    fixed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    fixed = (fixed ^ 0x800000) - 0x800000  # sign-extend 24 bits
    return (fixed.astype(np.float32) * np.float32(2.0 ** -frac_bits)).reshape(n, 3)


def _rotations(buf, n: int, version: int) -> np.ndarray:
    """Unit quaternions [n, 4] in SPZ's (x, y, z, w) order."""
    if version >= 3:
        comp = np.frombuffer(buf, dtype="<u4", count=n)
        idx = (comp >> 30).astype(np.uint8)
        rest = np.empty((n, 3), dtype=np.float32)
        for j, shift in enumerate((20, 10, 0)):  # first-written (lowest index) component sits highest
            c = (comp >> shift) & 0x3FF
            mag = (c & 0x1FF).astype(np.float32) * (_SQRT1_2 / 511.0)
            rest[:, j] = np.where(c & 0x200, -mag, mag)
        return unpack_smallest_three(idx, rest)
    xyz = np.frombuffer(buf, dtype=np.uint8, count=n * 3).reshape(n, 3).astype(np.float32) / 127.5 - 1.0
    w = np.sqrt(np.maximum(0.0, 1.0 - np.sum(xyz * xyz, axis=1)))
    return np.concatenate([xyz, w[:, None]], axis=1)


def _decode(path: Path, version: int, n: int, degree: int, frac_bits: int, flags: int, streams):
    pos_b, alpha_b, color_b, scale_b, rot_b, sh_b = streams
    means = _positions(pos_b, n, version, frac_bits) * _FLIP_P
    opac = np.frombuffer(alpha_b, dtype=np.uint8, count=n).astype(np.float32) / 255.0
    col = np.frombuffer(color_b, dtype=np.uint8, count=n * 3).reshape(n, 3).astype(np.float32)
    scales = np.exp(np.frombuffer(scale_b, dtype=np.uint8, count=n * 3).reshape(n, 3) / np.float32(16) - 10)
    quats = _rotations(rot_b, n, version)[:, [3, 0, 1, 2]] * _FLIP_Q
    meta = {"spz_version": version, "fractional_bits": frac_bits, "antialiased": bool(flags & 1)}
    keep = min(degree, 3)
    k = (keep + 1) ** 2
    sh = np.empty((n, k, 3), dtype=np.float32)
    sh[:, 0] = (col / 255.0 - 0.5) / COLOR_SCALE
    if degree:
        dim = _SH_DIM[degree]
        rest = np.frombuffer(sh_b, dtype=np.uint8, count=n * dim * 3).reshape(n, dim, 3)[:, :k - 1]
        # in place: 45 values per splat at degree 3 make temporaries the main cost
        out = sh[:, 1:]
        np.subtract(rest, np.float32(128), out=out)
        out *= (_FLIP_SH[:k - 1] / np.float32(128))[:, None]
    warnings = []
    if degree > 3:
        warnings.append("SH degree 4 coefficients dropped (Radview renders up to degree 3)")
    if flags & 2:
        warnings.append("SPZ extension records ignored")
        meta["spz_extensions_ignored"] = True
    if warnings:
        meta["warnings"] = warnings
    # Only v1's float16 positions can hold NaN/inf; everything else is decoded from integers.
    return scene_from_arrays(path, means, quats, scales.astype(np.float32), opac, sh,
                             check=("means",) if version == 1 else (), up=(0.0, -1.0, 0.0), meta=meta)


# ---------------------------------------------------------------------------------------------- writing

def _encode(means, quats, scales, opac, sh, frac_bits: int, version: int,
            sh1_bits: int, sh_rest_bits: int) -> list[bytes]:
    """Activated arrays in Radview's RDF frame -> the six SPZ attribute byte strings (RUB)."""
    fixed = np.rint(np.nan_to_num(means * _FLIP_P).astype(np.float64) * 2.0 ** frac_bits).astype(np.int64)
    fixed = np.clip(fixed, -(1 << 23), (1 << 23) - 1) & 0xFFFFFF
    pos = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, fixed >> 16], axis=-1).astype(np.uint8)

    alphas = u8_round(opac * 255.0)
    colors = u8_round(sh[:, 0] * (COLOR_SCALE * 255.0) + 127.5)
    logs = np.log(np.maximum(np.nan_to_num(scales, nan=1.0), 1e-30))
    scl = u8_round((logs + 10.0) * 16.0)

    q = normalize_quats(np.nan_to_num(quats) * _FLIP_Q)[:, [1, 2, 3, 0]]  # (w,x,y,z) -> (x,y,z,w)
    if version >= 3:
        idx, rest = pack_smallest_three(q)
        mag = np.minimum(np.floor(np.abs(rest) * (511.0 / _SQRT1_2) + 0.5), 511).astype(np.uint32)
        c = mag | ((rest < 0).astype(np.uint32) << 9)
        comp = (idx.astype(np.uint32) << 30) | (c[:, 0] << 20) | (c[:, 1] << 10) | c[:, 2]
        rot = comp.astype("<u4").tobytes()
    else:
        q = np.where(q[:, 3:4] < 0, -q, q)
        rot = u8_round(q[:, :3] * 127.5 + 127.5).tobytes()

    shb = b""
    if sh.shape[1] > 1:
        k = sh.shape[1] - 1
        v = np.rint(sh[:, 1:] * _FLIP_SH[:k, None] * 128.0) + 128.0
        bits = np.where(np.arange(k) < 3, sh1_bits, sh_rest_bits)[None, :, None]
        bucket = 2.0 ** (8 - bits)
        # spz quantizeSH: snap to the centre of 2^(8-bits)-wide buckets to help the compressor
        v = np.floor((v + bucket // 2) / bucket) * bucket
        shb = u8_round(v).tobytes()
    return [pos.tobytes(), alphas.tobytes(), colors.tobytes(), scl.tobytes(), rot, shb]


def write(scene, path: Path, version: int = 4, fractional_bits: int = 12, sh1_bits: int = 8,
          sh_rest_bits: int = 8, level: int | None = None, **_opts) -> dict:
    """Write SPZ version 4 (zstd, default) or 3 (gzip); the scene is taken to be in Radview's RDF frame.

    `fractional_bits` (default 12, as Niantic's packer) is lowered automatically when positions would
    overflow the 24-bit range. `sh1_bits` / `sh_rest_bits` (1..8) coarsen SH like Niantic's packer
    (its defaults are 5 / 4; ours are 8 = no extra loss). Returns the errors introduced.
    """
    if version not in (3, 4):  # v2's (x, y, z)-only rotations lose up to ~10 degrees: not offered
        raise ValueError(f"the SPZ writer supports versions 3 and 4, not {version}")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise ValueError("sh1_bits and sh_rest_bits must be between 1 and 8")
    means = scene.means.detach().cpu().float().numpy()
    quats = scene.quats.detach().cpu().float().numpy()
    scales = scene.scales.detach().cpu().float().numpy()
    opac = scene.opacities.detach().cpu().float().numpy()
    sh = scene.sh.detach().cpu().float().numpy()
    n = len(means)
    if n == 0:
        raise ValueError("an SPZ file needs at least one splat")
    degree = scene.sh_degree
    big = float(np.max(np.abs(np.nan_to_num(means)))) if n else 0.0
    frac = int(fractional_bits)
    while frac > 0 and big * 2.0 ** frac > (1 << 23) - 1:
        frac -= 1
    if big * 2.0 ** frac > (1 << 23) - 1:
        raise ValueError(f"positions up to {big:.3g} exceed the 24-bit fixed-point range of SPZ")

    streams = _encode(means, quats, scales, opac, sh, frac, version, sh1_bits, sh_rest_bits)
    flags = 1 if scene.meta.get("antialiased") else 0
    if version == 4:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=level if level is not None else 12)
        comp = [(cctx.compress(s), len(s)) for s in streams if s]
        header = MAGIC + struct.pack("<IIBBBBI", 4, n, degree, frac, flags, len(comp), V4_HEADER) + bytes(12)
        toc = b"".join(struct.pack("<QQ", len(c), u) for c, u in comp)
        blob = header + toc + b"".join(c for c, _ in comp)
    else:
        header = MAGIC + struct.pack("<IIBBBB", version, n, degree, frac, flags, 0)
        co = zlib.compressobj(level if level is not None else 6, zlib.DEFLATED, 31)
        blob = co.compress(header + b"".join(streams)) + co.flush()
    path.write_bytes(blob)

    # Measure what was lost by decoding the bytes just written, in our frame.
    back = _decode(path, version, n, degree, frac, flags,
                   [np.frombuffer(s, dtype=np.uint8) if s else b"" for s in streams])
    keep = np.asarray(scene.finite_mask().cpu())
    fin = keep.all()
    b_means, b_quats, b_scales = back.means.numpy(), back.quats.numpy(), back.scales.numpy()
    b_opac, b_sh = back.opacities.numpy(), back.sh.numpy()
    if not fin:  # the decoder dropped nothing (no NaN survives encoding); compare the finite rows only
        means, quats, scales, opac, sh = (a[keep] for a in (means, quats, scales, opac, sh))
        b_means, b_quats, b_scales, b_opac, b_sh = (a[keep] for a in
                                                    (b_means, b_quats, b_scales, b_opac, b_sh))
    report = {
        "count": n,
        "version": version,
        "fractional_bits": frac,
        "bytes": len(blob),
        "max_position_error": float(np.max(np.abs(b_means - means))),
        "max_log_scale_error": float(np.max(np.abs(np.log(b_scales) - np.log(np.maximum(scales, 1e-30))))),
        "max_rotation_error_deg": float(np.max(quat_angle_deg(b_quats, normalize_quats(quats)))),
        "max_opacity_error": float(np.max(np.abs(b_opac - opac))),
        # base colour in rgb units (f_dc * C0)
        "max_color_error": float(np.max(np.abs(b_sh[:, 0] - sh[:, 0]))) * SH_C0,
        "colors_clipped": int(np.sum(np.abs(sh[:, 0]) > 127.5 / 255.0 / COLOR_SCALE + 1e-6)),
    }
    if degree:
        report["max_sh_error"] = float(np.max(np.abs(b_sh[:, 1:] - sh[:, 1:])))
    return report


FORMAT = FormatSpec(
    name="spz",
    extensions=(".spz",),
    sniff=sniff,
    read=read,
    write=write,
    description="Niantic .spz",
)
