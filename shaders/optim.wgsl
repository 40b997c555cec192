// optim.wgsl: (kernels to come)
