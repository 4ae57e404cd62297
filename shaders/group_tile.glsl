// group_tile.glsl: which tile of an image a work group of a 2D (tiles_x, tiles_y) dispatch takes
// (include-only). Bindings: none. Used by the per-tile software passes (gs_blend.comp,
// cvx_blend.comp, voxels_march.comp).
// llvmpipe hands each of its threads one contiguous run of a dispatch's work groups: the top half
// of the image to one thread, the bottom half to the other. Where the content sits in one half
// (sky above, ground below) one thread did most of the work. Blocks of 4 tile rows are dealt out
// alternately instead (rows 0-3, 8-11, ... to the first half of the work groups), which keeps
// neighbouring tiles together: the Gaussian blend took 0.72x as long with the bench cloud in
// the lower half of the view, and the same with it centred (0.99x); the voxel march 0.65x with a
// shell in the lower half, 1.0x centred.
uvec2 group_tile() {
    uint wy = gl_WorkGroupID.y, nb = gl_NumWorkGroups.y / 4u, half_ = (nb + 1u) / 2u;
    uint b = wy / 4u;
    uint ty = wy < 4u * nb ? (b < half_ ? 2u * b : 2u * (b - half_) + 1u) * 4u + (wy & 3u) : wy;
    return uvec2(gl_WorkGroupID.x, ty);
}
