//! Loading trained models: weights from safetensors files, checked against what a network
//! expects; batch-norm folding; image preprocessing.

pub mod fold;
pub mod preprocess;
pub mod weights;
