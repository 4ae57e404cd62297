// group_tile.glsl: which tile of an image a work group takes (include-only): group_tile() for a 2D
// (tiles_x, tiles_y) dispatch, or with DYNAMIC_TILES, tiles taken in turn from a counter
// (FOR_EACH_TILE). Bindings: none (the includer's counter). Used by the per-tile software passes
// (gs_blend.comp, cvx_blend.comp, voxels_march.comp).
// llvmpipe hands each of its threads one contiguous run of a dispatch's work groups: the top half
// of the image to one thread, the bottom half to the other. Where the content sits in one half
// (sky above, ground below) one thread did most of the work. Blocks of 4 tile rows are dealt out
// alternately instead (rows 0-3, 8-11, ... to the first half of the work groups), which keeps
// neighbouring tiles together: the Gaussian blend took 0.72x as long with the bench cloud in
// the lower half of the view, and the same with it centred (0.99x); the voxel march 0.65x with a
// shell in the lower half, 1.0x centred.
uniform uint num_tiles;   // tiles_x * tiles_y (TILE_FN clamps to it; FOR_EACH_TILE)

uvec2 group_tile() {
    uint wy = gl_WorkGroupID.y, nb = gl_NumWorkGroups.y / 4u, half_ = (nb + 1u) / 2u;
    uint b = wy / 4u;
    uint ty = wy < 4u * nb ? (b < half_ ? 2u * b : 2u * (b - half_) + 1u) * 4u + (wy & 3u) : wy;
    return uvec2(gl_WorkGroupID.x, ty);
}

#ifdef DYNAMIC_TILES
// Dynamic tiles: llvmpipe also runs a thread's run of work groups one after another, so when one
// thread is slower (its core busier: the VM's cores vary) the other idles at the end: measured per
// thread, 37 and 26 ms of CPU in one Gaussian blend. FOR_EACH_TILE(counter, TILE_FN) has the work
// group take tiles in row-major order from `counter` (zeroed by the host) and run TILE_FN(uvec2
// tile), which returns the loop iterations the tile took at most (the same in every invocation),
// until no tile is left or GRAB_BUDGET iterations are spent: a tile taken then still has
// LOOP_CAP - GRAB_BUDGET - 1 of llvmpipe's loop iterations (pipeline.py LOOP_CAP). The host
// dispatches pipeline.dynamic_groups work groups: more than could all spend their budget. The
// last grab runs TILE_FN once more under an all-false mask, past the grid (TILE_FN must clamp).
// Defines: GRAB_BUDGET; LOCKSTEP where a work group is one subgroup run as one SIMD vector
// (llvmpipe), which needs no barrier to see s_tile. Uniforms: num_tiles (above), tiles_x.
shared uint s_tile;       // the tile just taken (by invocation 0)
#ifdef LOCKSTEP
#define GRAB_SYNC()
#else
#define GRAB_SYNC() barrier()
#endif
#define FOR_EACH_TILE(counter, TILE_FN) { \
        uint used_ = 0u; \
        do { \
            if (gl_LocalInvocationIndex == 0u) s_tile = atomicAdd(counter, 1u); \
            GRAB_SYNC(); \
            uint t_ = s_tile; \
            GRAB_SYNC(); \
            if (t_ >= num_tiles) break; \
            used_ += TILE_FN(uvec2(t_ % tiles_x, t_ / tiles_x)) + 1u; \
        } while (used_ < uint(GRAB_BUDGET)); }
#endif
