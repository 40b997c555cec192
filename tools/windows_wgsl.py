"""The uniform-window declarations shared by the windows generators (gen_conv2d_windows.py,
gen_conv1x1_windows.py, gen_linear_windows.py)."""

WINDOW_U64 = """\
// A window's vec4<f32> are read as vec2<u64>: lavapipe gathers a uniform load lane by lane
// and component by component, and two 64-bit components cost about 0.7 of four 32-bit ones
// (a probe on Mesa 22.3). Needs SHADER_INT64; win4 puts the floats back, bit for bit.
struct Window {
    v: array<vec2<u64>, 4096>,
}

fn win4(x: vec2<u64>) -> vec4<f32> {
    return vec4<f32>(bitcast<f32>(u32(x.x & 0xfffffffflu)), bitcast<f32>(u32(x.x >> 32u)),
                     bitcast<f32>(u32(x.y & 0xfffffffflu)), bitcast<f32>(u32(x.y >> 32u)));
}
"""
