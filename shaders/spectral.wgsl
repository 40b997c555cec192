// spectral.wgsl: (kernels to come)
