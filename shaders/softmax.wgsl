// softmax.wgsl: (to be written)
