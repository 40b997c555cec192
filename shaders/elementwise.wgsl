// elementwise.wgsl: (to be written)
