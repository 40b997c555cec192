// reduce.wgsl: (to be written)
