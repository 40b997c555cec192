// fma_peak.wgsl: (to be written)
