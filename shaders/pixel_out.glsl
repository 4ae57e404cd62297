// pixel_out.glsl: where the blends (gs_blend.comp, cvx_blend.comp, gs_blend_hw.comp) write pixels
// (include-only, after `uniform ivec2 image_size`).
// Bindings: images 0 out_rgba (rgba32f: colour after the mode's mapping, alpha) and 1 out_depth
//   (r32f: expected depth normalised by alpha); or, with OUT_BUFFERS, std430 buffers 2
//   vec4[H * W] and 3 float[H * W] in row-major order: on llvmpipe an imageStore costs several
//   times a storage-buffer store (the images' stores took ~20% of gs_blend.comp at 100k
//   Gaussians), and the host copies the buffers into the textures or reads them back
//   (pipeline.py PixelBuffers).
// Defines: OUT_BUFFERS (optional); OUT_DISPLAY (optional, with OUT_BUFFERS): std430 buffer 2
//   uint[H * W] of RGBA8 (the colour as Frame.to_uint8 rounds it, alpha 1; no depth) bottom row first,
//   ready for a display: the host copies it into an RGBA8 texture that a viewer copies into its
//   framebuffer without a draw (the float texture's draw took ~4 ms of an 800x600 viewer frame on
//   llvmpipe; pipeline.py PixelBuffers.bind_display).
// STORE_RGBA(px, py, rgba) stores the colour alone.
#if defined(OUT_DISPLAY)
layout(std430, binding = 2) writeonly buffer OutDisplay { uint out_display[]; };
// Rounded half up, as Frame.to_uint8 does (packUnorm4x8 rounds half to even: 0.3 gave 76, not 77).
uint display_word(vec3 rgb) {
    uvec3 q = uvec3(clamp(rgb, 0.0, 1.0) * 255.0 + 0.5);
    return q.x | (q.y << 8) | (q.z << 16) | 0xFF000000u;
}
#define STORE_RGBA(px, py, rgba) { \
    out_display[(image_size.y - 1 - (py)) * image_size.x + (px)] = display_word((rgba).rgb); }
#define STORE_PIXEL(px, py, rgba, depth) STORE_RGBA(px, py, rgba)
#elif defined(OUT_BUFFERS)
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
