// pixel_out.glsl: where the software blends (gs_blend.comp, cvx_blend.comp) write their pixels
// (include-only, after `uniform ivec2 image_size`).
// Bindings: images 0 out_rgba (rgba32f: colour after the mode's mapping, alpha) and 1 out_depth
//   (r32f: expected depth normalised by alpha); or, with OUT_BUFFERS, std430 buffers 2
//   vec4[H * W] and 3 float[H * W] in row-major order: on llvmpipe an imageStore costs several
//   times a storage-buffer store (the images' stores took ~20% of gs_blend.comp at 100k
//   Gaussians), and the host copies the buffers into the textures or reads them back
//   (pipeline.py PixelBuffers).
// Defines: OUT_BUFFERS (optional). STORE_RGBA(px, py, rgba) stores the colour alone.
// group_tile(): the tile a work group of a (tiles_x, tiles_y) dispatch blends (see below).
#ifdef OUT_BUFFERS
layout(std430, binding = 2) writeonly buffer OutRGBA { vec4 out_rgba[]; };
layout(std430, binding = 3) writeonly buffer OutDepth { float out_depth[]; };
#define STORE_PIXEL(px, py, rgba, depth) { \
    out_rgba[(py) * image_size.x + (px)] = (rgba); out_depth[(py) * image_size.x + (px)] = (depth); }
#define STORE_RGBA(px, py, rgba) { out_rgba[(py) * image_size.x + (px)] = (rgba); }
#else
layout(rgba32f, binding = 0) writeonly uniform image2D out_rgba;
layout(r32f, binding = 1) writeonly uniform image2D out_depth;
#define STORE_PIXEL(px, py, rgba, depth) { \
    imageStore(out_rgba, ivec2(px, py), (rgba)); imageStore(out_depth, ivec2(px, py), vec4(depth)); }
#define STORE_RGBA(px, py, rgba) { imageStore(out_rgba, ivec2(px, py), (rgba)); }
#endif

// llvmpipe hands each of its threads one contiguous run of a dispatch's work groups: the top half
// of the image to one thread, the bottom half to the other. Where the content sits in one half
// (sky above, ground below) one thread did most of the work. Blocks of 4 tile rows are dealt out
// alternately instead (rows 0-3, 8-11, ... to the first half of the work groups), which keeps
// neighbouring tiles together: the blend took 0.72x as long with the bench cloud in the lower
// half of the view, and the same with it centred (0.99x).
uvec2 group_tile() {
    uint wy = gl_WorkGroupID.y, nb = gl_NumWorkGroups.y / 4u, half_ = (nb + 1u) / 2u;
    uint b = wy / 4u;
    uint ty = wy < 4u * nb ? (b < half_ ? 2u * b : 2u * (b - half_) + 1u) * 4u + (wy & 3u) : wy;
    return uvec2(gl_WorkGroupID.x, ty);
}
