// cam.wgsl: (kernels to come)
