"""PlayCanvas SOG: `meta.json` + lossless WebP textures, as a folder or a `.sog` ZIP bundle.

Layout (FORMATS.md section 2; playcanvas/splat-transform > src/lib/readers/read-sog.ts (v2),
read-sog-v1.ts (v1), src/lib/writers/write-sog.ts > writeSog):

* every per-splat texture is W x H RGBA, splat i = pixel i in row-major order;
  the writer uses W = ceil(sqrt(N)/4)*4, H = ceil(N/W/4)*4.
* means_l / means_u: low / high byte of a 16-bit q per axis; v = mins + (maxs-mins)*q/65535,
  x = sign(v)*(exp|v| - 1).
* quats: RGB = the three smaller components c as (c/sqrt2 + 1)/2 * 255, A = 252 + index (w,x,y,z)
  of the omitted largest one.
* v2 (`version: 2`): scales / sh0 RGB index 256-entry codebooks (log scale, f_dc); sh0 A =
  sigmoid(opacity)*255; shN_labels (R | G<<8) index a palette stored in shN_centroids
  (64 entries per row, K texels each, K = 3/8/15), whose RGB index shN.codebook.
* v1 (no `version`, `means.shape`): scales / sh0 per-channel mins/maxs lerp, sh0 A = opacity logit;
  shN with scalar mins/maxs and the band count given by the centroid width (192/512/960).

Streamed LOD sets (`lod-meta.json`) are not read: they raise a SceneLoadError saying so.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SceneLoadError
from ..gaussians import GaussianScene
from ..load import FormatSpec
from ._quant import scene_from_arrays
from .compressed_ply import (
    morton_order,
    pack_smallest_three,
    quat_angle_error,
    scene_arrays,
    unpack_smallest_three,
)

_K_FOR_BANDS = {1: 3, 2: 8, 3: 15}  # SH coefficients per channel beyond DC, by band count
_V1_BANDS_BY_WIDTH = {192: 1, 512: 2, 960: 3}  # splat-transform > read-sog-v1.ts > v1ShBandsWidths
MAX_META_BYTES = 64 << 20
MAX_SPLATS = 1 << 28  # a count above this is a corrupt header, not a scene


# ----------------------------------------------------------------------------- file access

class _Source:
    """Files next to a meta.json, in a folder or inside a ZIP. `read(name) -> bytes`."""

    def __init__(self, path: Path):
        self.path = path  # what the user opened (for error messages)
        self.zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if path.is_dir():
            if not (path / "meta.json").is_file():
                if (path / "lod-meta.json").is_file():
                    raise SceneLoadError(path, _LOD_MESSAGE)
                raise SceneLoadError(path, "the folder has no meta.json (not a SOG folder)")
            self.folder, self.meta_name = path, "meta.json"
        elif path.name.lower().endswith(".json"):
            if path.name.lower() == "lod-meta.json":
                raise SceneLoadError(path, _LOD_MESSAGE)
            self.folder, self.meta_name = path.parent, path.name
        else:
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, EOFError) as e:
                raise SceneLoadError(path, f"not a valid .sog bundle (the ZIP cannot be read: {e})") from e
            names = self.zip.namelist()
            metas = [n for n in names if n == "meta.json" or n.endswith("/meta.json")]
            if not metas:
                if any(n.endswith("lod-meta.json") for n in names):
                    raise SceneLoadError(path, _LOD_MESSAGE)
                raise SceneLoadError(path, "the .sog bundle (ZIP) has no meta.json")
            meta = min(metas, key=len)  # the top-most one
            self.prefix, self.meta_name = meta[: -len("meta.json")], "meta.json"

    def read(self, name: str, what: str) -> bytes:
        if not isinstance(name, str) or not name or ".." in Path(name).parts or name.startswith("/"):
            raise SceneLoadError(self.path, f"meta.json names an invalid file for {what}: {name!r}")
        if self.zip is not None:
            try:
                info = self.zip.getinfo(self.prefix + name)
            except KeyError:
                raise SceneLoadError(self.path, f"the bundle has no {name} ({what})") from None
            if info.file_size > (1 << 31):
                raise SceneLoadError(self.path, f"{name} in the bundle is implausibly large")
            try:
                return self.zip.read(info)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
                raise SceneLoadError(self.path, f"cannot read {name} from the bundle ({e})") from e
        f = self.folder / name
        if not f.is_file():
            raise SceneLoadError(self.path, f"missing texture {name} ({what}) next to {self.meta_name}")
        return f.read_bytes()

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


_LOD_MESSAGE = ("this is a streamed SOG LOD set (lod-meta.json), which Radview does not read; "
                "export a single SOG (.sog or meta.json folder) instead")


def _decode_webp(src: _Source, name: str, what: str, min_pixels: int) -> np.ndarray:
    """Decode one texture to uint8 [H, W, 4]; the size is checked before pixels are decoded."""
    data = src.read(name, what)
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        if im.format != "WEBP":
            raise SceneLoadError(src.path, f"{name} is not a WebP image ({im.format})")
        if w * h < min_pixels:
            raise SceneLoadError(src.path, f"{name} is {w}x{h} = {w * h:,} pixels, too small for "
                                           f"{min_pixels:,} {what} entries")
        im.load()
    except SceneLoadError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise SceneLoadError(src.path, f"cannot decode {name} ({what}): {e}") from e
    if im.mode != "RGBA":
        im = im.convert("RGBA")
    return np.asarray(im)


def _texels(img: np.ndarray, count: int) -> np.ndarray:
    """The first `count` pixels of an [H, W, 4] image in row-major order: [count, 4] uint8."""
    return img.reshape(-1, 4)[:count]


# ----------------------------------------------------------------------------- reading

def _sniff(path: Path, head: bytes) -> bool:
    if path.is_dir():
        return (path / "meta.json").is_file() or (path / "lod-meta.json").is_file()
    name = path.name.lower()
    if name.endswith(".json"):
        return head.lstrip().startswith(b"{") and (b'"means"' in head or b'"lodLevels"' in head
                                                   or name == "lod-meta.json")
    if head.startswith(b"PK\x03\x04"):
        if name.endswith(".sog"):
            return True
        try:
            with zipfile.ZipFile(path) as z:
                return any(n == "meta.json" or n.endswith("/meta.json") for n in z.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    return False


def _num_list(path: Path, meta: dict, key: str, sub: str, n: int | None = None) -> np.ndarray:
    try:
        v = np.asarray(meta[key][sub], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise SceneLoadError(path, f"meta.json lacks a numeric {key}.{sub}") from e
    if v.ndim != 1 or (n is not None and len(v) != n) or not np.isfinite(v).all():
        raise SceneLoadError(path, f"meta.json {key}.{sub} must be a list of {n or 'some'} finite numbers")
    return v


def _files(path: Path, meta: dict, key: str, n: int) -> list[str]:
    try:
        files = meta[key]["files"]
    except (KeyError, TypeError) as e:
        raise SceneLoadError(path, f"meta.json lacks {key}.files") from e
    if not isinstance(files, list) or len(files) < n:
        raise SceneLoadError(path, f"meta.json {key}.files must list {n} file(s)")
    return files


def _decode_means(src: _Source, meta: dict, count: int) -> np.ndarray:
    mins = _num_list(src.path, meta, "means", "mins", 3)
    maxs = _num_list(src.path, meta, "means", "maxs", 3)
    lo_name, hi_name = _files(src.path, meta, "means", 2)[:2]
    lo_img = _decode_webp(src, lo_name, "means (low bytes)", count)
    hi_img = _decode_webp(src, hi_name, "means (high bytes)", count)
    if lo_img.shape != hi_img.shape:
        raise SceneLoadError(src.path, f"{lo_name} and {hi_name} differ in size ({lo_img.shape[1]}x"
                                       f"{lo_img.shape[0]} vs {hi_img.shape[1]}x{hi_img.shape[0]})")
    lo = _texels(lo_img, count)[:, :3].astype(np.uint32)
    q = lo | (_texels(hi_img, count)[:, :3].astype(np.uint32) << 8)
    span = np.where(maxs - mins != 0, maxs - mins, 1.0)  # read-sog.ts: (maxs - mins) || 1
    v = mins + span * (q / 65535.0)
    return np.sign(v) * np.expm1(np.abs(v))


def _decode_quats(src: _Source, meta: dict, count: int) -> tuple[np.ndarray, int]:
    name = _files(src.path, meta, "quats", 1)[0]
    t = _texels(_decode_webp(src, name, "quats", count), count)
    tag = t[:, 3].astype(np.int64)
    bad = (tag < 252) | (tag > 255)
    largest = np.where(bad, 0, tag - 252)
    q = unpack_smallest_three(largest, (t[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / math.sqrt(2))
    q[bad] = (1.0, 0.0, 0.0, 0.0)  # read-sog.ts: an invalid tag decodes as identity
    return q, int(bad.sum())


def _codebook(path: Path, meta: dict, key: str) -> np.ndarray:
    cb = _num_list(path, meta, key, "codebook")
    if len(cb) == 0 or len(cb) > 256:
        raise SceneLoadError(path, f"meta.json {key}.codebook has {len(cb)} entries, expected 1..256")
    return np.concatenate([cb, np.full(256 - len(cb), np.nan)])  # an index past the end -> NaN row, dropped


def _read_v2(src: _Source, meta: dict) -> dict:
    path = src.path
    count = meta.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0 or count > MAX_SPLATS:
        raise SceneLoadError(path, f"meta.json count must be a splat count (got {count!r})")
    means = _decode_means(src, meta, count)
    quats, bad_tags = _decode_quats(src, meta, count)
    scb = _codebook(path, meta, "scales")
    sc = _texels(_decode_webp(src, _files(path, meta, "scales", 1)[0], "scales", count), count)
    log_scales = scb[sc[:, :3]]
    ccb = _codebook(path, meta, "sh0")
    c0 = _texels(_decode_webp(src, _files(path, meta, "sh0", 1)[0], "sh0", count), count)
    f_dc = ccb[c0[:, :3]]
    opac = c0[:, 3].astype(np.float64) / 255.0
    f_rest = None
    shn = meta.get("shN")
    if shn is not None:
        bands = shn.get("bands") if isinstance(shn, dict) else None
        if bands not in (0, 1, 2, 3):
            raise SceneLoadError(path, f"meta.json shN.bands must be 1, 2 or 3 (got {bands!r})")
        if bands:
            k = _K_FOR_BANDS[bands]
            pal_count = shn.get("count")
            if not isinstance(pal_count, int) or not 0 < pal_count <= 65536:
                raise SceneLoadError(path, f"meta.json shN.count must be 1..65536 (got {pal_count!r})")
            cb = _codebook(path, meta, "shN")
            cent_name, lab_name = _files(path, meta, "shN", 2)[:2]
            cent = _decode_webp(src, cent_name, "SH palette texels", pal_count * k)
            if cent.shape[1] != 64 * k:
                raise SceneLoadError(path, f"{cent_name} is {cent.shape[1]} pixels wide, expected "
                                           f"{64 * k} for {bands} SH band(s)")
            labels_t = _texels(_decode_webp(src, lab_name, "SH labels", count), count)
            f_rest = _decode_palette(cent, k, labels_t, pal_count, lambda b: cb[b])
    return {"count": count, "means": means, "quats": quats, "log_scales": log_scales, "f_dc": f_dc,
            "opacities": opac, "f_rest": f_rest, "bad_quat_tags": bad_tags}


def _decode_palette(cent: np.ndarray, k: int, labels_t: np.ndarray, pal_count: int, dequant) -> np.ndarray:
    """Per-splat SH rest [N, k, 3] from the centroid texture [H, 64*k, 4] and label texels [N, 4]."""
    palette = cent.reshape(-1, k, 4)[:pal_count, :, :3]  # entry e: row e//64, columns (e%64)*k + j
    values = dequant(palette)  # [P, k, 3]
    labels = labels_t[:, 0].astype(np.int64) | (labels_t[:, 1].astype(np.int64) << 8)
    out = np.zeros((len(labels), k, 3))
    ok = labels < len(values)  # read-sog.ts: a label past the palette leaves zeros
    out[ok] = values[labels[ok]]
    return out


def _read_v1(src: _Source, meta: dict) -> dict:
    path = src.path
    try:
        shape = meta["means"]["shape"]
        count = int(shape[0])
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise SceneLoadError(path, "meta.json has no version and no means.shape "
                                   "(neither SOG v1 nor v2)") from e
    if count < 0 or count > MAX_SPLATS:
        raise SceneLoadError(path, f"meta.json means.shape gives an implausible count {count!r}")
    means = _decode_means(src, meta, count)
    quats, bad_tags = _decode_quats(src, meta, count)
    smin = _num_list(path, meta, "scales", "mins", 3)
    smax = _num_list(path, meta, "scales", "maxs", 3)
    sc = _texels(_decode_webp(src, _files(path, meta, "scales", 1)[0], "scales", count), count)
    log_scales = smin + (smax - smin) * (sc[:, :3] / 255.0)
    cmin = _num_list(path, meta, "sh0", "mins", 4)
    cmax = _num_list(path, meta, "sh0", "maxs", 4)
    c0 = _texels(_decode_webp(src, _files(path, meta, "sh0", 1)[0], "sh0", count), count)
    lerp = cmin + (cmax - cmin) * (c0 / 255.0)
    f_dc = lerp[:, :3]
    opac = 1.0 / (1.0 + np.exp(-lerp[:, 3]))  # v1 stores the opacity logit
    f_rest = None
    shn = meta.get("shN")
    if shn is not None:
        try:
            lo, hi = float(shn["mins"]), float(shn["maxs"])
        except (KeyError, TypeError, ValueError) as e:
            raise SceneLoadError(path, "meta.json shN needs scalar mins and maxs (SOG v1)") from e
        cent_name, lab_name = _files(path, meta, "shN", 2)[:2]
        cent = _decode_webp(src, cent_name, "SH palette texels", 1)
        bands = _V1_BANDS_BY_WIDTH.get(cent.shape[1])
        if bands is None:
            raise SceneLoadError(path, f"{cent_name} is {cent.shape[1]} pixels wide; SOG v1 expects "
                                       "192, 512 or 960 (1, 2 or 3 SH bands)")
        k = _K_FOR_BANDS[bands]
        labels_t = _texels(_decode_webp(src, lab_name, "SH labels", count), count)
        f_rest = _decode_palette(cent, k, labels_t, (cent.shape[1] // k) * cent.shape[0],
                                 lambda b: lo + (hi - lo) * (b / 255.0))
    return {"count": count, "means": means, "quats": quats, "log_scales": log_scales, "f_dc": f_dc,
            "opacities": opac, "f_rest": f_rest, "bad_quat_tags": bad_tags}


def decode_arrays(path: Path) -> dict:
    """Decode a SOG (folder, meta.json or .sog) into float64 arrays plus `version` and `generator`."""
    path = Path(path)
    src = _Source(path)
    try:
        raw = src.read(src.meta_name, "metadata")
        if len(raw) > MAX_META_BYTES:
            raise SceneLoadError(path, f"{src.meta_name} is implausibly large ({len(raw):,} bytes)")
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SceneLoadError(path, f"{src.meta_name} is not valid JSON ({e})") from e
        if not isinstance(meta, dict):
            raise SceneLoadError(path, f"{src.meta_name} is not a JSON object")
        if "lodLevels" in meta or "tree" in meta:
            raise SceneLoadError(path, _LOD_MESSAGE)
        version = meta.get("version")
        if version is None:
            d = _read_v1(src, meta)
            d["version"] = 1
        elif version == 2:
            d = _read_v2(src, meta)
            d["version"] = 2
        else:
            raise SceneLoadError(path, f"unsupported SOG version {version!r} (Radview reads v1 and v2)")
        asset = meta.get("asset")
        d["generator"] = asset.get("generator") if isinstance(asset, dict) else None
        return d
    finally:
        src.close()


def read(path: Path) -> GaussianScene:
    """Read a SOG folder, meta.json or .sog bundle into activated Gaussians."""
    path = Path(path)
    d = decode_arrays(path)
    n = d["count"]
    k_rest = 0 if d["f_rest"] is None else d["f_rest"].shape[1]
    sh = np.zeros((n, 1 + k_rest, 3))
    sh[:, 0] = d["f_dc"]
    if k_rest:
        sh[:, 1:] = d["f_rest"]
    meta = {"sog_version": d["version"], "generator": d["generator"]}
    if d["bad_quat_tags"]:
        meta["bad_quat_tags"] = d["bad_quat_tags"]
    with np.errstate(over="ignore"):
        scales = np.exp(d["log_scales"])
    return scene_from_arrays(path, d["means"], d["quats"], scales, d["opacities"], sh, meta=meta)


# ----------------------------------------------------------------------------- quantizers

def kmeans_1d(values: np.ndarray, k: int = 256, iters: int = 30, bins: int = 4096,
              alpha: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Codebook of k values for 1-D data, and each value's nearest entry.

    Lloyd iterations over a histogram (cheap for millions of values). Bins are weighted by
    count**alpha rather than count so sparse tails keep some entries (the idea of
    playcanvas/splat-transform > src/lib/spatial/quantize-1d.ts > quantize1d, which uses 0.5;
    0.25 gave a lower RMS error on biker's log scales and colours here),
    and the first and last entries stay at the data's min and max, which bounds the worst error.

    Returns (codebook [k] float64 ascending, labels uint8/int64 with the shape of `values`).
    """
    v = np.asarray(values, dtype=np.float64)
    flat = v.reshape(-1)
    if flat.size == 0:
        return np.zeros(k), np.zeros(v.shape, dtype=np.int64)
    uniq = np.unique(flat)
    if len(uniq) <= k:
        cb = np.concatenate([uniq, np.full(k - len(uniq), uniq[-1])])
    else:
        lo, hi = uniq[0], uniq[-1]
        idx = np.minimum(((flat - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
        counts = np.bincount(idx, minlength=bins).astype(np.float64)
        sums = np.bincount(idx, weights=flat, minlength=bins)
        nz = counts > 0
        centers, w = sums[nz] / counts[nz], counts[nz] ** alpha
        if len(centers) <= k:
            cb = np.concatenate([centers, np.full(k - len(centers), centers[-1])])
        else:
            cw = np.cumsum(w)  # init at weighted quantiles
            cb = centers[np.minimum(np.searchsorted(cw, (np.arange(k) + 0.5) / k * cw[-1]), len(centers) - 1)]
            cb[0], cb[-1] = lo, hi
            for _ in range(iters):
                cb = np.unique(cb)
                lab = np.searchsorted((cb[1:] + cb[:-1]) * 0.5, centers)
                sw = np.bincount(lab, weights=w, minlength=len(cb))
                swx = np.bincount(lab, weights=w * centers, minlength=len(cb))
                new = np.where(sw > 0, swx / np.where(sw > 0, sw, 1), cb)
                new[0], new[-1] = lo, hi  # pinned ends bound the error of the tails
                if np.allclose(new, cb, rtol=0, atol=1e-12):
                    break
                cb = new
            cb = np.sort(cb)
            cb = np.concatenate([cb, np.full(k - len(cb), cb[-1])])  # merged duplicates -> pad
    labels = np.searchsorted((cb[1:] + cb[:-1]) * 0.5, flat)
    return cb, labels.reshape(v.shape)


def _assign(x: np.ndarray, c: np.ndarray, block: int = 8192) -> np.ndarray:
    """Index [N] of the nearest row of c [K, D] for each row of x [N, D] (squared L2), float32."""
    cn = (c * c).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), block):
        out[s:s + block] = (cn[None, :] - 2.0 * (x[s:s + block] @ c.T)).argmin(1)
    return out


def kmeans(x: np.ndarray, k: int, iters: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Plain Lloyd k-means on rows of x [N, D] -> (centroids [k', D], labels [N]); k' = min(k, N)."""
    n = len(x)
    if n <= k:
        return x.copy(), np.arange(n)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    c = x32[rng.choice(n, k, replace=False)].copy()
    for _ in range(iters):
        lab = _assign(x32, c)
        # Cluster sums by sorting rows by label and summing runs (index_add_ is slow on CPU).
        order = np.argsort(lab, kind="stable")
        used, starts, cnt = np.unique(lab[order], return_index=True, return_counts=True)
        new = c.copy()
        new[used] = np.add.reduceat(x32[order], starts, axis=0) / cnt[:, None]
        empty = np.setdiff1d(np.arange(k), used)
        if len(empty):  # re-seed empty clusters at random points
            new[empty] = x32[rng.choice(n, len(empty), replace=False)]
        c = new
    lab = _assign(x32, c)
    return c.astype(np.float64), lab


def palette_kmeans(x: np.ndarray, k: int, iters: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means palette of rows x [N, D], two-level when N*k is large so CPU time stays linear in N.

    Coarse clusters (about sqrt(k)) first, then each is split into a share of the k entries
    proportional to its size. Returns (palette [k', D], labels [N]), k' <= k.
    """
    n = len(x)
    if n <= k or n * k <= 50_000_000:
        return kmeans(x, k, iters, seed)
    kc = max(2, int(math.sqrt(k)))
    _, coarse = kmeans(x, kc, iters, seed)
    sizes = np.bincount(coarse, minlength=kc)
    share = np.maximum(1, np.floor(sizes / n * k)).astype(np.int64)
    share = np.minimum(share, sizes)
    palette, labels, base = [], np.empty(n, dtype=np.int64), 0
    for j in range(kc):
        rows = np.nonzero(coarse == j)[0]
        if len(rows) == 0:
            continue
        c, lab = kmeans(x[rows], int(share[j]), iters, seed + 1 + j)
        palette.append(c)
        labels[rows] = lab + base
        base += len(c)
    return np.concatenate(palette), labels


def default_palette_size(n: int) -> int:
    """SH palette entries for n splats: about n/8 as a power of two, 256..65536 (at most n).

    splat-transform > write-sog.ts > writeSH uses up to 64 Ki entries (min(64, 2^floor(log2(n/1024)))
    * 1024), which gives nearly one entry per splat for small scenes and costs minutes on a CPU.
    """
    if n <= 256:
        return max(1, n)
    return int(min(n, 65536, max(256, 2 ** round(math.log2(n / 8)))))


# ----------------------------------------------------------------------------- writing

def _webp_bytes(rgba: np.ndarray) -> bytes:
    """Lossless WebP of uint8 [H, W, 4]; `exact` keeps RGB under alpha 0 (sh0 stores opacity in A)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(buf, format="WEBP", lossless=True, exact=True,
                                                             quality=50, method=4)
    return buf.getvalue()


def _texture(cols: np.ndarray, w: int, h: int, alpha: int | np.ndarray = 255) -> np.ndarray:
    """[N, 3 or 4] uint8 per-splat values -> [H, W, 4] image, the rest zero with alpha 255."""
    img = np.zeros((w * h, 4), dtype=np.uint8)
    img[:, 3] = 255
    n = len(cols)
    img[:n, :cols.shape[1]] = cols
    if cols.shape[1] == 3:
        img[:n, 3] = alpha
    return img.reshape(h, w, 4)


def _output_layout(path: Path) -> tuple[str, Path, str]:
    """('zip', file, 'meta.json') for .sog; ('dir', folder, meta name) otherwise."""
    name = path.name.lower()
    if name.endswith(".sog"):
        return "zip", path, "meta.json"
    if name.endswith(".json"):
        return "dir", path.parent, path.name
    return "dir", path, "meta.json"


def write(scene: GaussianScene, path: Path, sh_palette_size: int | None = None, kmeans_iters: int = 10,
          **opts) -> dict:
    """Write SOG v2 (a `.sog` ZIP if the path ends in .sog, else a folder with meta.json).

    Splats are Morton-sorted. Codebooks: 1-D k-means (256) for log scales and f_dc, a k-means
    palette (default_palette_size) plus a 256-entry codebook for SH bands > 0.
    Returns the errors measured by decoding the written files: max_position_error,
    max_scale_log_error, max_rotation_error_deg, max_color_error (C0*f_dc units),
    max_opacity_error, max_sh_error.
    """
    path = Path(path)
    a, dropped = scene_arrays(scene)
    n = len(a["means"])
    if n == 0:
        raise ValueError("cannot write a SOG with no finite splats")
    order = morton_order(a["means"])
    means = a["means"][order]
    log_scales = np.maximum(a["log_scales"][order], -30.0)  # scale 0 -> a tiny finite scale
    quats = a["quats"][order]
    opac = a["opacities"][order]
    sh = a["sh"][order]
    k_rest = sh.shape[1] - 1
    w = int(math.ceil(math.sqrt(n) / 4) * 4)
    h = int(math.ceil(n / w / 4) * 4)
    files: dict[str, bytes] = {}

    # means: 16 bits per axis of sign(x)*log(|x|+1) between per-axis bounds
    lt = np.sign(means) * np.log1p(np.abs(means))
    mins, maxs = lt.min(0), lt.max(0)
    span = np.where(maxs > mins, maxs - mins, 1.0)
    q = np.clip(np.round((lt - mins) / span * 65535.0), 0, 65535).astype(np.uint32)
    files["means_l.webp"] = _webp_bytes(_texture((q & 0xFF).astype(np.uint8), w, h))
    files["means_u.webp"] = _webp_bytes(_texture((q >> 8).astype(np.uint8), w, h))

    largest, others = pack_smallest_three(quats)
    qt = np.concatenate([np.clip(np.round(others * 255.0), 0, 255), 252 + largest[:, None]], 1)
    files["quats.webp"] = _webp_bytes(_texture(qt.astype(np.uint8), w, h))

    scb, slab = kmeans_1d(log_scales)
    files["scales.webp"] = _webp_bytes(_texture(slab.astype(np.uint8), w, h))

    ccb, clab = kmeans_1d(sh[:, 0])
    alpha = np.clip(np.round(opac * 255.0), 0, 255).astype(np.uint8)
    sh0 = np.concatenate([clab, alpha[:, None]], 1).astype(np.uint8)
    files["sh0.webp"] = _webp_bytes(_texture(sh0, w, h))

    meta = {"version": 2, "asset": {"generator": "radview"}, "count": n,
            "means": {"mins": mins.tolist(), "maxs": maxs.tolist(),
                      "files": ["means_l.webp", "means_u.webp"]},
            "scales": {"codebook": scb.tolist(), "files": ["scales.webp"]},
            "quats": {"files": ["quats.webp"]},
            "sh0": {"codebook": ccb.tolist(), "files": ["sh0.webp"]}}
    if k_rest:
        bands = {3: 1, 8: 2, 15: 3}[k_rest]
        rest = sh[:, 1:].reshape(n, k_rest * 3)  # [N, k, 3] flattened: texel j holds coeff j's RGB
        pal, labels = palette_kmeans(rest, sh_palette_size or default_palette_size(n), kmeans_iters)
        pcb, plab = kmeans_1d(pal)
        p = len(pal)
        rows = -(-p // 64)
        cent = np.zeros((rows * 64, k_rest, 4), dtype=np.uint8)
        cent[:, :, 3] = 255
        cent[:p, :, :3] = plab.reshape(p, k_rest, 3)
        files["shN_centroids.webp"] = _webp_bytes(cent.reshape(rows, 64 * k_rest, 4))
        lab = np.stack([labels & 0xFF, labels >> 8, np.zeros_like(labels)], 1).astype(np.uint8)
        files["shN_labels.webp"] = _webp_bytes(_texture(lab, w, h))
        meta["shN"] = {"count": p, "bands": bands, "codebook": pcb.tolist(),
                       "files": ["shN_centroids.webp", "shN_labels.webp"]}

    kind, target, meta_name = _output_layout(path)
    meta_bytes = json.dumps(meta).encode("utf-8")
    if kind == "zip":
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as z:  # WebP is compressed already
            z.writestr("meta.json", meta_bytes)
            for name, data in files.items():
                z.writestr(name, data)
    else:
        target.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (target / name).write_bytes(data)
        (target / meta_name).write_bytes(meta_bytes)

    d = decode_arrays(target if kind == "zip" else target / meta_name)
    report = {"format": "sog", "count": n, "order": "morton (splats were reordered)", "sog_version": 2,
              "dropped_nonfinite": dropped, "warnings": [],
              "max_position_error": float(np.abs(d["means"] - means).max()),
              "max_scale_log_error": float(np.abs(d["log_scales"] - log_scales).max()),
              "max_rotation_error_deg": float(quat_angle_error(
                  d["quats"] / np.linalg.norm(d["quats"], axis=1, keepdims=True), quats).max()),
              "max_color_error": float(np.abs(d["f_dc"] - sh[:, 0]).max() * 0.28209479177387814),
              "max_opacity_error": float(np.abs(d["opacities"] - opac).max())}
    if k_rest:
        report["max_sh_error"] = float(np.abs(d["f_rest"] - sh[:, 1:]).max())
        report["rms_sh_error"] = float(np.sqrt(((d["f_rest"] - sh[:, 1:]) ** 2).mean()))
        report["sh_palette_size"] = int(len(pal))
    if dropped:
        report["warnings"].append(f"{dropped} non-finite splats were not written")
    if (a["log_scales"] < -30.0).any():
        report["warnings"].append("log scales below -30 were raised to -30")
    return report


FORMAT = FormatSpec(
    name="sog",
    extensions=(".sog", ".json", ""),
    sniff=_sniff,
    read=read,
    write=write,
    description="PlayCanvas SOG",
)
