"""GPU primitives shared by the splat pipelines: exclusive scan and a stable radix sort of uint pairs.

Both work on chunks that one invocation walks serially (see shaders/radix.comp, scan.comp): few,
long invocations suit CPU rasterizers (llvmpipe) and still run on real GPUs; on GPUs the scan's
block sums are scanned by one work group (scan_par.comp) instead of one invocation.
"""

from __future__ import annotations

import numpy as np

from .context import is_software
from .shaders import compute_shader

GROUP = 64  # local_size_x of radix.comp, scan.comp, bin.comp
SCAN_BLOCK = 256
RADIX_BITS = 8


def set_uniforms(prog, **values) -> None:
    """Set the uniforms a program actually uses (the compiler drops unused ones)."""
    for k, v in values.items():
        try:
            prog[k].value = v
        except KeyError:
            pass


def groups(n: int, size: int = GROUP) -> int:
    return max(1, (n + size - 1) // size)


class Scratch:
    """Growable GL buffers by name; `nbytes` and `count` describe what is held (for hygiene checks)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.buffers: dict[str, object] = {}

    def get(self, name: str, nbytes: int):
        """A buffer of at least nbytes (grown by 1.5x to avoid reallocating every frame)."""
        nbytes = max(int(nbytes), 16)
        buf = self.buffers.get(name)
        if buf is None or buf.size < nbytes:
            size = nbytes if buf is None else max(nbytes, int(buf.size * 1.5))
            if buf is not None:
                buf.release()
            buf = self.buffers[name] = self.ctx.buffer(reserve=(size + 15) // 16 * 16)
        return buf

    # Host access without mapping the buffers the shaders work on. moderngl's Buffer.read and
    # Buffer.clear map the buffer, and on NVIDIA the atomics on buffers mapped every frame ran at
    # bus speed (the driver seems to keep such buffers in host memory). Measured on an H200 (1M
    # Gaussians, 1920x1080): the projection's 31k counter atomics took 32 ms (0.1 ms without them),
    # each binning pass's 13M tile atomics 16.5 ms; through copies on the GPU, 0.11 and 0.55 ms.
    def read(self, buf, nbytes: int, offset: int = 0) -> bytes:
        """buf[offset:offset + nbytes], copied on the GPU into a staging buffer that the host maps."""
        staging = self.get("_staging", nbytes)
        self.ctx.copy_buffer(staging, buf, nbytes, read_offset=offset)
        return staging.read(nbytes)

    def read_texture(self, tex, out: np.ndarray) -> np.ndarray:
        """out[...] = tex's level 0 (out sized and typed as the texture's pixels), on GPUs packed
        into a staging buffer first. H200, 1920x1080 RGBA32F + R32F: read from the textures
        10.7 ms, packed on the GPU (0.8 ms) then read from the buffer 5.5 ms. llvmpipe reads the
        texture (its memory is the host's: packing only adds a copy)."""
        if is_software(self.ctx):
            tex.read_into(out)
            return out
        staging = self.get("_pack", out.nbytes)
        tex.read_into(staging)
        staging.read_into(out, size=out.nbytes)
        return out

    def zero(self, buf, nbytes: int) -> None:
        """Zero buf[0:nbytes] by a copy on the GPU from a buffer of zeros."""
        nbytes = int(nbytes)
        if nbytes <= 0:
            return
        zeros = self.buffers.get("_zeros")
        if zeros is None or zeros.size < nbytes:
            zeros = self.get("_zeros", nbytes)
            zeros.write(bytes(zeros.size))
        self.ctx.copy_buffer(buf, zeros, nbytes)

    def upload(self, buf, data: bytes) -> None:
        """buf[0:len(data)] = data by a copy on the GPU from a buffer holding those bytes (a few
        bytes that every frame starts from, such as the counters' initial values)."""
        name = "_const_" + data.hex()
        src = self.buffers.get(name)
        if src is None:
            src = self.buffers[name] = self.ctx.buffer(data)
        self.ctx.copy_buffer(buf, src, len(data))

    @property
    def nbytes(self) -> int:
        return sum(b.size for b in self.buffers.values())

    @property
    def count(self) -> int:
        return len(self.buffers)

    def release(self) -> None:
        for b in self.buffers.values():
            b.release()
        self.buffers.clear()


def exclusive_scan(ctx, scratch: Scratch, data, m: int, transposed: tuple[int, int] | None = None) -> None:
    """Exclusive prefix sum of uint data[0:m] in place; scratch 'scan_partial'[num_blocks] = total.

    transposed: (rows, cols) with m = rows * cols: scan in the order of a rows x cols matrix whose
    columns lie in memory one after another (scan.comp TRANSPOSED: a block per matrix row).
    """
    nb, block = (groups(m, SCAN_BLOCK), SCAN_BLOCK) if transposed is None else transposed
    partial = scratch.get("scan_partial", 4 * (nb + 1))
    data.bind_to_storage_buffer(0)
    partial.bind_to_storage_buffer(1)
    for mode in (0, 1, 2):
        if mode == 1 and (nb > 64 and not is_software(ctx) or nb > 16384):
            # GPUs: one work group scans the block sums (scan.comp's MODE 1 is one invocation,
            # milliseconds for the radix sort's ~n/256 blocks); llvmpipe keeps the serial walk, but
            # for one within its 65535-iteration loop cap (a transposed scan has a block per tile:
            # 130k at 4K on 8 px tiles).
            cs = compute_shader(ctx, "scan_par.comp", {"GROUP": 1024})
            set_uniforms(cs, num_blocks=nb)
            cs.run(1)
        else:
            cs = compute_shader(ctx, "scan.comp", {"MODE": mode, **({"TRANSPOSED": 1} if transposed else {})})
            set_uniforms(cs, m=m, block_size=block, num_blocks=nb)
            cs.run(1 if mode == 1 else groups(nb))
        ctx.memory_barrier()


def scan_total(scratch: Scratch, m: int, transposed: tuple[int, int] | None = None) -> int:
    """The total of the last exclusive_scan over m elements (reads 4 bytes back)."""
    total = scratch.read(scratch.buffers["scan_partial"], 4, offset=4 * _total_index(m, transposed))
    return int(np.frombuffer(total, dtype=np.uint32)[0])


def copy_scan_total(scratch: Scratch, m: int, dst, offset: int) -> None:
    """Copy the total of the last exclusive_scan over m elements to dst at byte offset, on the GPU
    (for a check once the frame is read back, without stalling the GPU for it now)."""
    scratch.ctx.copy_buffer(dst, scratch.buffers["scan_partial"], 4, read_offset=4 * _total_index(m, None),
                            write_offset=offset)


def _total_index(m: int, transposed: tuple[int, int] | None) -> int:
    return groups(m, SCAN_BLOCK) if transposed is None else transposed[0]


def radix_sort(ctx, scratch: Scratch, keys, vals, n: int, key_bits: int = 32, chunk: int = 256,
               key_offset: int = 0, iota: bool = False, max_digit_bits: int = RADIX_BITS, local: int = GROUP):
    """Stable ascending sort of n (uint key, uint value) pairs on the GPU.

    keys, vals: buffers of >= 4n bytes, overwritten. The order is that of key - key_offset over its
    low key_bits bits, with INVALID_KEY (0xFFFFFFFF) taken as all ones (last); the keys themselves
    are moved unchanged. Returns the (keys, vals) buffers holding the result (the inputs
    themselves after an even number of passes). iota: sort the indices 0..n-1, vals' contents unread.
    max_digit_bits: the fewest passes of digits up to this wide, as even as they come (25 key bits
    and 9: three passes of 9 bits, where 8-bit digits take four). local: invocations (chunks) per
    work group.
    """
    passes = max(1, -(-key_bits // max_digit_bits))
    digit_bits = -(-key_bits // passes)
    num_chunks = max(1, (n + chunk - 1) // chunk)
    # (sized for the widest digits, as is the scan's block sums below, so that frames whose key
    # range changes allocate nothing)
    hist = scratch.get("radix_hist", 4 * (1 << max(digit_bits, max_digit_bits)) * num_chunks)
    scratch.get("scan_partial", 4 * ((1 << max(digit_bits, max_digit_bits)) + 1))
    k_alt = scratch.get("radix_keys", 4 * n)
    v_alt = scratch.get("radix_vals", 4 * n)
    src, dst = (keys, vals), (k_alt, v_alt)
    # CPU rasterizers: a row of digit counters per chunk, scanned digit by digit (radix.comp SLOT);
    # GPUs: digit-major counters, whose scan has a block per 256 counters to spread over threads.
    digit_major = {} if is_software(ctx) else {"DIGIT_MAJOR": 1}
    transposed = None if digit_major else (1 << digit_bits, num_chunks)
    defs = {"RADIX_BITS": digit_bits, "LOCAL": local, **digit_major}
    count = compute_shader(ctx, "radix.comp", {"PASS": 0, **defs})
    scatter = compute_shader(ctx, "radix.comp", {"PASS": 1, **defs})
    first = compute_shader(ctx, "radix.comp", {"PASS": 1, "IOTA": 1, **defs}) if iota else scatter
    for p in range(passes):
        src[0].bind_to_storage_buffer(0)
        src[1].bind_to_storage_buffer(1)
        dst[0].bind_to_storage_buffer(2)
        dst[1].bind_to_storage_buffer(3)
        hist.bind_to_storage_buffer(4)
        scat = first if p == 0 else scatter
        for cs in (count, scat):
            set_uniforms(cs, n=n, chunk=chunk, num_chunks=num_chunks, shift=p * digit_bits,
                         key_offset=key_offset)
        count.run(groups(num_chunks, local))
        ctx.memory_barrier()
        exclusive_scan(ctx, scratch, hist, num_chunks << digit_bits, transposed=transposed)
        src[0].bind_to_storage_buffer(0)
        src[1].bind_to_storage_buffer(1)
        dst[0].bind_to_storage_buffer(2)
        dst[1].bind_to_storage_buffer(3)
        hist.bind_to_storage_buffer(4)
        scat.run(groups(num_chunks, local))
        ctx.memory_barrier()
        src, dst = dst, src
    return src


_SUBGROUP_SRC = """#version 430
#extension GL_ARB_gpu_shader_int64 : require
#extension GL_ARB_shader_ballot : require
layout(local_size_x = 1) in;
layout(std430, binding = 0) writeonly buffer Out { uint size; };
void main() { size = gl_SubGroupSizeARB; }
"""


def subgroup_size(ctx) -> int:
    """gl_SubGroupSizeARB of this context (ARB_shader_ballot), or 0 when the extension is missing.

    llvmpipe reports its SIMD width (8 with AVX2, 4 with SSE only); the software blend's staged
    batches need it as a compile-time constant. Cached on the context object.
    """
    cached = getattr(ctx, "_radview_subgroup", None)
    if cached is not None:
        return cached
    size = 0
    if {"GL_ARB_shader_ballot", "GL_ARB_gpu_shader_int64"} <= set(ctx.extensions):
        try:
            prog = ctx.compute_shader(_SUBGROUP_SRC)
            buf = ctx.buffer(reserve=16)
            buf.bind_to_storage_buffer(0)
            prog.run(1)
            size = int(np.frombuffer(buf.read(4), dtype=np.uint32)[0])
            buf.release()
            prog.release()
        except Exception:  # noqa: BLE001 - no usable extension: callers fall back
            size = 0
    try:
        ctx._radview_subgroup = size
    except AttributeError:
        pass
    return size
