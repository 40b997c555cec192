// render.wgsl: (kernels to come)
