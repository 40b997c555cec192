//! Typed errors: one enum per layer of the crate, gathered in [`Error`].

/// The fix we print when no adapter exists: most often a Linux box with no GPU driver.
pub const NO_ADAPTER_FIX: &str = "on Linux without a GPU, install Mesa's software Vulkan driver \
(lavapipe): `apt-get update && apt-get install -y mesa-vulkan-drivers`";

/// Errors from the GPU runtime: adapter, device, validation, memory, mapping.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter at all: the message names the fix.
    #[error("no GPU adapter found ({detail}); {}", NO_ADAPTER_FIX)]
    NoAdapter {
        /// What wgpu reported.
        detail: String,
    },
    /// `WGPU_ADAPTER_NAME` matched nothing.
    #[error(
        "no adapter name contains WGPU_ADAPTER_NAME={wanted:?}; available adapters: {available}"
    )]
    AdapterNotFound {
        /// The requested name fragment.
        wanted: String,
        /// Names of the adapters that do exist.
        available: String,
    },
    /// `request_device` failed.
    #[error("could not open a device on adapter {adapter:?}: {detail}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// What wgpu reported.
        detail: String,
    },
    /// A wgpu validation error, caught by an error scope.
    #[error("wgpu validation error during {context}: {message}")]
    Validation {
        /// What cnnvis was doing.
        context: String,
        /// wgpu's description.
        message: String,
    },
    /// The device ran out of memory.
    #[error("GPU out of memory during {context}: {message}")]
    OutOfMemory {
        /// What cnnvis was doing.
        context: String,
        /// wgpu's description.
        message: String,
    },
    /// An internal driver error.
    #[error("GPU internal error during {context}: {message}")]
    Internal {
        /// What cnnvis was doing.
        context: String,
        /// wgpu's description.
        message: String,
    },
    /// Mapping a buffer for readback failed.
    #[error("buffer readback failed: {0}")]
    Map(String),
    /// Waiting on the device failed (device lost, timeout).
    #[error("waiting for the GPU failed: {0}")]
    Poll(String),
    /// A WGSL file failed to parse or validate.
    #[error("shader {file}: {message}")]
    Shader {
        /// The file under `shaders/`.
        file: &'static str,
        /// naga's diagnostic, with the offending line.
        message: String,
    },
    /// A buffer larger than the device allows.
    #[error(
        "{what} needs {bytes} bytes but the device allows at most {limit} bytes ({limit_name})"
    )]
    TooLarge {
        /// What was being allocated or bound.
        what: String,
        /// Requested bytes.
        bytes: u64,
        /// The device limit.
        limit: u64,
        /// Which wgpu limit.
        limit_name: &'static str,
    },
}

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// GPU runtime failure.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// An operation got tensors of the wrong shape or parameters out of range.
    #[error("{op}: {message}")]
    Shape {
        /// The operation that refused its inputs.
        op: &'static str,
        /// What is wrong, with the shapes involved.
        message: String,
    },
    /// A weights file could not be read, or does not match the model.
    #[error(transparent)]
    Model(#[from] crate::model::weights::ModelError),
    /// An input image could not be read, decoded or preprocessed.
    #[error(transparent)]
    Input(#[from] crate::model::preprocess::InputError),
    /// A rendered image could not be written.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
}

impl Error {
    /// Shorthand for a shape error.
    pub fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
