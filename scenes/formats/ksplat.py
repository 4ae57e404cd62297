"""mkkellogg GaussianSplats3D `.ksplat` (read only).

Layout from GaussianSplats3D src/loaders/SplatBuffer.js, as transcribed in playcanvas/splat-transform
@8d6b801 src/lib/readers/read-ksplat.ts (FORMATS.md section 2):

* 4096-byte main header: u8 major = 0, u8 minor >= 1, u32@4 maxSections, u32@16 numSplats,
  u16@20 compressionMode (0, 1, 2), f32@36 / f32@40 min / max SH value for mode 2 (0 -> -1.5 / 1.5).
* maxSections x 1024-byte section headers: u32@0 splatCount, u32@4 maxSplats, u32@8 bucketCapacity,
  u32@12 bucketCount, f32@16 spatialBlockSize, u16@20 bucketStorageSize, u32@24 quantRange
  (0 -> 1 in mode 0, 32767 otherwise), u32@32 fullBuckets, u32@36 partialBuckets, u16@40 shDegree.
* each section's data: partialBuckets x u32 sizes, bucketCount x 3 f32 centres (bucketStorageSize
  bytes each), then maxSplats records (splatCount used).
* record: mode 0: f32 xyz, f32 scale (linear), f32 rot (w,x,y,z), u8 rgba, f32 SH;
  modes 1/2: u16 xyz = (u - Q) * block / 2 / Q + bucket centre, f16 scale, f16 rot, u8 rgba,
  SH f16 (mode 1) or u8 (mode 2: min + u / 255 * (max - min)).
* rgba as .splat (rgb = 255 * (0.5 + C0 * f_dc), a = 255 * opacity). SH is stored per band and
  channel-major within a band (band 1: R1..3 G1..3 B1..3; band 2: R4..8 G4..8 B4..8), converted here
  to our [N, K, 3] INRIA coefficient order.

The frame is the source PLY's (usually INRIA's RDF); no `up` hint is set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SceneLoadError
from ..load import FormatSpec
from ._quant import rgb_to_dc, scene_from_arrays

MAIN_HEADER = 4096
SECTION_HEADER = 1024
# (position, scale, rotation, SH value) numpy types per compression mode.
_MODES = {0: ("<f4", "<f4", "<f4", "<f4"), 1: ("<u2", "<f2", "<f2", "<f2"), 2: ("<u2", "<f2", "<f2", "u1")}
_DEFAULT_QUANT = {0: 1, 1: 32767, 2: 32767}
_SH_VALUES = [0, 9, 24, 45]  # SH values per splat for degree 0..3 (3 channels x rest coefficients)
_MAX_SECTIONS = 1 << 20


def _record_dtype(mode: int, n_sh: int) -> np.dtype:
    pos, scale, rot, sh = _MODES[mode]
    fields = [("pos", pos, (3,)), ("scale", scale, (3,)), ("rot", rot, (4,)), ("rgba", "u1", (4,))]
    if n_sh:
        fields.append(("sh", sh, (n_sh,)))
    return np.dtype(fields)


def _sh_order(degree: int) -> np.ndarray:
    """perm [S]: on-disk SH value i goes to flat index perm[i] of our [K-1, 3] rest block."""
    perm = []
    for band in range(1, degree + 1):
        width = 2 * band + 1
        first = band * band - 1  # index of the band's first rest coefficient
        for i in range(3 * width):
            channel, c = divmod(i, width)
            perm.append((first + c) * 3 + channel)
    return np.asarray(perm, dtype=np.intp)


def _head_ok(head: bytes) -> bool:
    if len(head) < 44 or head[0] != 0 or head[1] < 1:
        return False
    max_sections = int.from_bytes(head[4:8], "little")
    n = int.from_bytes(head[16:20], "little")
    mode = int.from_bytes(head[20:22], "little")
    return 1 <= max_sections <= _MAX_SECTIONS and n > 0 and mode <= 2


def sniff(path: Path, head: bytes) -> bool:
    if path.suffix.lower() == ".ksplat":
        # The main header has no magic: trust the extension unless the file is plainly something else
        # (the reader then explains what is wrong with the header).
        return not head.startswith((b"ply\n", b"ply\r\n", b"NGSP", b"\x1f\x8b", b"PK\x03\x04"))
    if not _head_ok(head):
        return False
    max_sections = int.from_bytes(head[4:8], "little")
    return path.stat().st_size >= MAIN_HEADER + max_sections * SECTION_HEADER


def _u32(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 4], "little")


def _u16(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 2], "little")


def _f32(b: bytes, off: int) -> float:
    return float(np.frombuffer(b, dtype="<f4", count=1, offset=off)[0])


def read(path: Path):
    size = path.stat().st_size
    if size < MAIN_HEADER:
        raise SceneLoadError(path, f"the file ({size:,} bytes) is smaller than the 4096-byte .ksplat header")
    with open(path, "rb") as f:
        head = f.read(MAIN_HEADER)
    major, minor = head[0], head[1]
    if major != 0 or minor < 1:
        raise SceneLoadError(path, f"unsupported .ksplat version {major}.{minor} (expected 0.1 or later)")
    max_sections = _u32(head, 4)
    n_total = _u32(head, 16)
    mode = _u16(head, 20)
    if mode not in _MODES:
        raise SceneLoadError(path, f"unknown .ksplat compression mode {mode} (expected 0, 1 or 2)")
    if n_total == 0:
        raise SceneLoadError(path, "the .ksplat file holds zero splats")
    if max_sections == 0:
        raise SceneLoadError(path, "the .ksplat header lists no sections")
    data_start = MAIN_HEADER + max_sections * SECTION_HEADER
    if max_sections > _MAX_SECTIONS or data_start > size:
        raise SceneLoadError(path, f"the header lists {max_sections:,} sections but the file "
                                   f"({size:,} bytes) "
                                   "cannot hold their headers (truncated?)")
    sh_min, sh_max = _f32(head, 36), _f32(head, 40)
    # GaussianSplats3D / splat-transform: a zero (unset) bound falls back to the default range.
    sh_min = sh_min if np.isfinite(sh_min) and sh_min != 0 else -1.5
    sh_max = sh_max if np.isfinite(sh_max) and sh_max != 0 else 1.5

    buf = np.fromfile(path, dtype=np.uint8)
    if len(buf) != size:
        raise SceneLoadError(path, "the file could not be read completely")
    raw = buf.data
    sections = []
    offset = data_start
    for s in range(max_sections):
        h = bytes(buf[MAIN_HEADER + s * SECTION_HEADER: MAIN_HEADER + (s + 1) * SECTION_HEADER])
        sec = _read_section(path, raw, size, h, s, offset, mode, sh_min, sh_max)
        offset = sec.pop("end")
        if sec["count"]:
            sections.append(sec)
        if sum(x["count"] for x in sections) >= n_total:
            break
    got = sum(x["count"] for x in sections)
    if got != n_total:
        raise SceneLoadError(path, f"the header promises {n_total:,} splats but its sections hold {got:,}")

    degree = max(x["degree"] for x in sections)
    k = (degree + 1) ** 2
    parts = {key: np.concatenate([x[key] for x in sections]) for key in ("means", "scales", "quats", "rgba")}
    sh = np.zeros((got, k, 3), dtype=np.float32)
    start = 0
    for x in sections:
        n = x["count"]
        if x["rest"] is not None:
            kr = x["rest"].shape[1]
            sh[start:start + n, 1:1 + kr] = x["rest"]
        start += n
    rgba = parts["rgba"].astype(np.float32) / 255.0
    sh[:, 0] = rgb_to_dc(rgba[:, :3])
    meta = {"ksplat_version": f"{major}.{minor}", "ksplat_mode": mode, "ksplat_sections": len(sections)}
    return scene_from_arrays(path, parts["means"], parts["quats"], parts["scales"], rgba[:, 3].copy(), sh,
                             check=("means", "scales", "sh"), meta=meta)


def _read_section(path: Path, raw, size: int, h: bytes, s: int, offset: int, mode: int,
                  sh_min: float, sh_max: float) -> dict:
    """Decode section `s` whose data starts at `offset`; returns arrays and the offset after it."""
    count, max_splats = _u32(h, 0), _u32(h, 4)
    capacity, n_buckets = _u32(h, 8), _u32(h, 12)
    block = _f32(h, 16)
    bucket_bytes = _u16(h, 20)
    quant = _u32(h, 24) or _DEFAULT_QUANT[mode]
    full, partial = _u32(h, 32), _u32(h, 36)
    degree = _u16(h, 40)
    where = f"section {s}"
    if degree > 3:
        raise SceneLoadError(path, f"{where} has SH degree {degree}; .ksplat stores degree 0 to 3")
    if count > max_splats:
        raise SceneLoadError(path, f"{where} claims {count:,} splats but room for only {max_splats:,}")
    dtype = _record_dtype(mode, _SH_VALUES[degree])
    meta_bytes = partial * 4
    bucket_area = bucket_bytes * n_buckets + meta_bytes
    splat_start = offset + bucket_area
    end = splat_start + dtype.itemsize * max_splats
    if count == 0:
        return {"count": 0, "end": end}
    if end > size:
        raise SceneLoadError(path, f"{where} needs {end - offset:,} bytes from offset {offset:,} but the "
                                   "file "
                                   f"ends at {size:,} (truncated?)")
    rec = np.frombuffer(raw, dtype=dtype, count=count, offset=splat_start)

    if mode == 0:
        means = rec["pos"].astype(np.float32)
    else:
        if n_buckets == 0 or capacity == 0 or full + partial > n_buckets or bucket_bytes < 12:
            raise SceneLoadError(path, f"{where} has an inconsistent bucket table ({n_buckets:,} buckets, "
                                       f"{full:,} full, {partial:,} partial, capacity {capacity:,})")
        sizes = np.frombuffer(raw, dtype="<u4", count=partial, offset=offset).astype(np.int64)
        centers = np.frombuffer(raw, dtype="<f4", count=n_buckets * 3, offset=offset + meta_bytes)
        centers = centers.reshape(n_buckets, 3)
        if bucket_bytes != 12:  # storage per bucket larger than the 3 floats: take the first 3
            padded = np.dtype([("c", "<f4", (3,)), ("pad", "V", bucket_bytes - 12)])
            centers = np.frombuffer(raw, dtype=padded, count=n_buckets, offset=offset + meta_bytes)["c"]
        full_splats = full * capacity
        if full_splats + int(sizes.sum()) < count:
            raise SceneLoadError(path, f"{where}: its buckets hold fewer splats than its {count:,} splats")
        i = np.arange(count, dtype=np.int64)
        bucket = np.minimum(i, max(full_splats - 1, 0)) // capacity
        if count > full_splats:
            ends = np.cumsum(sizes)
            j = i[full_splats:] - full_splats
            bucket[full_splats:] = full + np.searchsorted(ends, j, side="right")
        step = np.float32(block / 2.0 / quant)
        means = (rec["pos"].astype(np.float32) - np.float32(quant)) * step + centers[bucket]

    rest = None
    if degree:
        vals = rec["sh"].astype(np.float32)
        if mode == 2:
            vals = sh_min + vals / 255.0 * (sh_max - sh_min)
        kr = (degree + 1) ** 2 - 1
        flat = np.empty((count, kr * 3), dtype=np.float32)
        flat[:, _sh_order(degree)] = vals
        rest = flat.reshape(count, kr, 3)
    return {
        "count": count, "end": end, "degree": degree, "rest": rest, "means": means,
        "scales": np.abs(rec["scale"].astype(np.float32)), "quats": rec["rot"].astype(np.float32),
        "rgba": rec["rgba"],
    }


FORMAT = FormatSpec(
    name="ksplat",
    extensions=(".ksplat",),
    sniff=sniff,
    read=read,
    write=None,
    description="mkkellogg GaussianSplats3D .ksplat",
)
