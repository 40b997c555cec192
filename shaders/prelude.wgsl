// prelude.wgsl: prepended to every kernel file by the registry (src/gpu/kernels.rs).
// Conventions for all kernels:
//   * tensors are flat f32 arrays in NCHW order (last index fastest);
//   * binding 0 is the file's uniform parameter struct, storage buffers follow; each global
//     has its own binding number within a file, so an entry point binds only what it uses;
//   * backward kernels take `accumulate`: 0 writes the gradient, 1 adds to it (llm.c's
//     "+= after an explicit zero", needed where a tensor feeds several consumers).

// Threads per workgroup of the 1-D kernels (must match gpu::dispatch::WG).
const WG: u32 = 256u;

// Flat thread index of a 1-D kernel launched on a 2-D grid: x folds at the per-dimension
// workgroup limit, so tensors beyond 65535 * WG elements still get one thread each.
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}
