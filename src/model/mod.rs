//! Loading trained models: weights from safetensors files, network descriptions (built-in
//! torchvision architectures or `cnnvis.graph` JSON), batch-norm folding, the layer graph on
//! the GPU with its forward and backward schedules, and image preprocessing.

pub mod arch;
pub mod fold;
pub mod graph;
pub mod plan;
pub mod preprocess;
pub mod spec;
pub mod weights;

pub use graph::{LayerInfo, LoadOptions, Model};
pub use plan::{BackwardPlan, ForwardPlan};
pub use spec::GraphSpec;
