// linear.wgsl: (to be written)
