//! Loading trained models: weights from safetensors files, checked against what a network expects.

pub mod weights;
