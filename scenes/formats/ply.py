"""Generic PLY reading and writing (header, binary little/big endian and ASCII bodies).

Format-specific modules (INRIA 3DGS, compressed, 4D, convex) build on `read_ply`/`write_ply`.
The header is parsed and every element's byte size checked against the file size before any
array is allocated, so a header that promises a billion vertices fails fast.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SceneLoadError

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NP_TO_PLY = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int",
              "u4": "uint", "f4": "float", "f8": "double"}
MAX_HEADER = 1 << 20


@dataclass
class PlyElement:
    name: str
    count: int
    properties: list[tuple[str, str]]  # (name, numpy type code like "f4"); list properties unsupported
    data: np.ndarray | None = None  # structured array [count] once read

    def names(self) -> list[str]:
        return [p for p, _ in self.properties]


@dataclass
class PlyHeader:
    format: str  # "binary_little_endian" | "binary_big_endian" | "ascii"
    elements: list[PlyElement]
    comments: list[str] = field(default_factory=list)
    header_size: int = 0  # bytes up to and including "end_header\n"

    def element(self, name: str) -> PlyElement | None:
        return next((e for e in self.elements if e.name == name), None)


def is_ply(head: bytes) -> bool:
    return head.startswith(b"ply\n") or head.startswith(b"ply\r\n")


def parse_header(path: str | os.PathLike, head: bytes | None = None) -> PlyHeader:
    """Parse the PLY header of `path`. Raises SceneLoadError with the problem."""
    path = Path(path)
    if head is None or b"end_header" not in head:
        with open(path, "rb") as f:
            head = f.read(MAX_HEADER)
    if not is_ply(head):
        raise SceneLoadError(path, "not a PLY file (it does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise SceneLoadError(path, "the PLY header has no 'end_header' line (truncated or not a PLY)")
    nl = head.find(b"\n", end)
    if nl < 0:
        raise SceneLoadError(path, "the PLY header is truncated after 'end_header'")
    try:
        lines = head[:end].decode("ascii").replace("\r", "").split("\n")
    except UnicodeDecodeError as e:
        raise SceneLoadError(path, "the PLY header contains non-ASCII bytes") from e
    fmt = None
    elements: list[PlyElement] = []
    comments = []
    for i, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key in ("comment", "obj_info"):
            comments.append(line[len(key):].strip())
        elif key == "format":
            if len(parts) < 2 or parts[1] not in ("binary_little_endian", "binary_big_endian", "ascii"):
                raise SceneLoadError(path, f"unsupported PLY format on header line {i}: {line!r}")
            fmt = parts[1]
        elif key == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise SceneLoadError(path, f"bad element line {i} in the PLY header: {line!r}")
            elements.append(PlyElement(parts[1], int(parts[2]), []))
        elif key == "property":
            if not elements:
                raise SceneLoadError(path, f"property before any element on PLY header line {i}")
            if len(parts) >= 2 and parts[1] == "list":
                raise SceneLoadError(path, f"list property {parts[-1]!r} in element "
                                           f"{elements[-1].name!r} is not supported for splat files")
            if len(parts) != 3 or parts[1] not in PLY_TYPES:
                raise SceneLoadError(path, f"bad property line {i} in the PLY header: {line!r}")
            elements[-1].properties.append((parts[2], PLY_TYPES[parts[1]]))
        else:
            raise SceneLoadError(path, f"unknown keyword {key!r} on PLY header line {i}")
    if fmt is None:
        raise SceneLoadError(path, "the PLY header has no 'format' line")
    return PlyHeader(fmt, elements, comments, nl + 1)


def read_ply(path: str | os.PathLike, header: PlyHeader | None = None) -> PlyHeader:
    """Read every element of a PLY file into structured arrays (`element.data`)."""
    path = Path(path)
    header = header or parse_header(path)
    size = path.stat().st_size
    body = size - header.header_size
    if header.format == "ascii":
        return _read_ascii(path, header)
    order = "<" if header.format == "binary_little_endian" else ">"
    need = 0
    for el in header.elements:
        el_dtype = np.dtype([(n, order + t) for n, t in el.properties])
        need += el.count * el_dtype.itemsize
    if need > body:
        first = header.elements[0] if header.elements else None
        what = f"{first.count:,} {first.name} rows" if first else "its elements"
        raise SceneLoadError(path, f"the header promises {what} ({need:,} bytes of data) but the file "
                                   f"holds only {max(body, 0):,} bytes after the header (truncated?)")
    offset = header.header_size
    with open(path, "rb") as f:
        for el in header.elements:
            el_dtype = np.dtype([(n, order + t) for n, t in el.properties])
            f.seek(offset)
            el.data = np.fromfile(f, dtype=el_dtype, count=el.count)
            if order == ">":
                el.data = el.data.astype(el_dtype.newbyteorder("<"))
            offset += el.count * el_dtype.itemsize
    return header


def _read_ascii(path: Path, header: PlyHeader) -> PlyHeader:
    with open(path, "rb") as f:
        f.seek(header.header_size)
        text = f.read().split()
    pos = 0
    for el in header.elements:
        n_props = len(el.properties)
        need = el.count * n_props
        if pos + need > len(text):
            raise SceneLoadError(path, f"the header promises {el.count:,} {el.name} rows but the ASCII "
                                       f"body ends early (truncated?)")
        try:
            vals = np.array(text[pos:pos + need], dtype=np.float64).reshape(el.count, n_props)
        except ValueError as e:
            raise SceneLoadError(path, f"non-numeric value in the {el.name} rows") from e
        pos += need
        dtype = np.dtype([(n, "<" + t) for n, t in el.properties])
        data = np.empty(el.count, dtype=dtype)
        for j, (n, _) in enumerate(el.properties):
            data[n] = vals[:, j]
        el.data = data
    return header


def write_ply(path: str | os.PathLike, elements: list[tuple[str, dict[str, np.ndarray]]],
              comments: list[str] = ()) -> None:
    """Write a binary little-endian PLY. `elements`: [(name, {prop: array [count]}), ...] in order."""
    path = Path(path)
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comments]
    blocks = []
    for name, props in elements:
        cols = {k: np.asarray(v) for k, v in props.items()}
        counts = {len(v) for v in cols.values()}
        if len(counts) > 1:
            raise ValueError(f"element {name}: properties have different lengths {counts}")
        count = counts.pop() if counts else 0
        dtype = np.dtype([(k, "<" + v.dtype.str[1:]) for k, v in cols.items()])
        lines.append(f"element {name} {count}")
        for k, v in cols.items():
            lines.append(f"property {_NP_TO_PLY[v.dtype.str[1:]]} {k}")
        arr = np.empty(count, dtype=dtype)
        for k, v in cols.items():
            arr[k] = v
        blocks.append(arr)
    lines.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode("ascii"))
        for arr in blocks:
            f.write(arr.tobytes())


# ---- conventions shared by the splat PLY flavours (INRIA 3DGS, Radview 4D and convex) ------------

def numbered(names: list[str], prefix: str) -> list[str]:
    """Properties `prefix<k>` sorted by k (INRIA's load_ply sorts f_rest_*, scale_*, rot_* so too)."""
    pat = re.compile(re.escape(prefix) + r"(\d+)$")
    found = [(int(m.group(1)), n) for n in names if (m := pat.match(n))]
    return [n for _, n in sorted(found)]


def sh_from_columns(data: np.ndarray, rest: list[str]) -> np.ndarray:
    """[N, 1 + len(rest)/3, 3] float32 SH from f_dc_0..2 and channel-major f_rest columns.

    INRIA writes f_rest channel-major: all red coefficients 1..K-1, then green, then blue.
    """
    n = len(data)
    k = 1 + len(rest) // 3
    sh = np.empty((n, k, 3), dtype=np.float32)
    sh[:, 0] = np.stack([np.asarray(data[f"f_dc_{i}"], dtype=np.float32) for i in range(3)], axis=1)
    if k > 1:
        cols = np.stack([np.asarray(data[c], dtype=np.float32) for c in rest], axis=1)
        sh[:, 1:] = cols.reshape(n, 3, k - 1).transpose(0, 2, 1)
    return sh


def sh_to_columns(sh: np.ndarray) -> dict[str, np.ndarray]:
    """{f_dc_0..2, f_rest_*} columns (channel-major rest) of SH [N, K, 3]: the inverse of sh_from_columns."""
    n = sh.shape[0]
    out = {f"f_dc_{i}": sh[:, 0, i] for i in range(3)}
    rest = sh[:, 1:].transpose(0, 2, 1).reshape(n, -1)
    out.update({f"f_rest_{i}": rest[:, i] for i in range(rest.shape[1])})
    return out


def up_from_comments(comments: list[str]) -> tuple[float, float, float] | None:
    """The `comment radview up=x,y,z` Radview writes; other tools' files have no up hint."""
    for c in comments:
        if c.startswith("radview up="):
            try:
                up = tuple(float(x) for x in c.split("=", 1)[1].split(","))
            except ValueError:
                return None
            return up if len(up) == 3 and all(np.isfinite(up)) else None
    return None


def up_comments(up) -> list[str]:
    """[] or ["radview up=x,y,z"] for write_ply."""
    return [] if up is None else ["radview up=" + ",".join(f"{float(v):g}" for v in up)]
