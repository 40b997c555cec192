// pool.wgsl: (to be written)
