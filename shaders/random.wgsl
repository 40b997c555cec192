// random.wgsl: (to be written)
