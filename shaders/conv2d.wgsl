// conv2d.wgsl: (to be written)
