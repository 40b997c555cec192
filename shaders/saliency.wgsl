// saliency.wgsl: (kernels to come)
