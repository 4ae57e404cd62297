// colormap.glsl: Turbo colour map (polynomial fit), twin of renderer/colormap.py::turbo.
// Bindings: none (include-only snippet).
// Reference: Google AI blog "Turbo, an improved rainbow colormap" (A. Mikhailov), polynomial fit by R. Du.
vec3 turbo(float x) {
    x = clamp(x, 0.0, 1.0);
    vec4 v4 = vec4(1.0, x, x * x, x * x * x);
    vec2 v2 = v4.zw * v4.z;
    vec3 c = vec3(
        dot(v4, vec4(0.13572138, 4.61539260, -42.66032258, 132.13108234)) + dot(v2, vec2(-152.94239396, 59.28637943)),
        dot(v4, vec4(0.09140261, 2.19418839, 4.84296658, -14.18503333)) + dot(v2, vec2(4.27729857, 2.82956604)),
        dot(v4, vec4(0.10667330, 12.64194608, -60.58204836, 110.36276771)) + dot(v2, vec2(-89.90310912, 27.34824973)));
    return clamp(c, 0.0, 1.0);
}
