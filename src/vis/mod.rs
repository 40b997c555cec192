//! Visualizations: what to explain ([`Target`]) and the gradient pass every gradient-based
//! method shares. Method families live in their own modules.

pub mod cam;
pub mod eval;
pub mod maximize;
pub mod optim;
pub mod saliency;
pub mod spectral;
pub mod target;

pub use target::{Objective, RegressionGoal, Target};

use crate::error::Result;
use crate::gpu::{GpuContext, Kernel, Tensor};
use crate::model::{BackwardPlan, ForwardPlan, Model};
use crate::ops::relu::ReluRule;

/// The kernel lists of the visualization methods, for the registry's validation.
pub(crate) const KERNEL_LISTS: &[&[Kernel]] = &[
    saliency::KERNELS,
    cam::KERNELS,
    optim::KERNELS,
    spectral::KERNELS,
];

/// A forward pass and the backward pass of an [`Objective`] for one batch shape: buffers and
/// launches built once, rerun for every new input (noise samples, path steps, iterations).
#[derive(Debug)]
pub struct GradientPass {
    /// The forward schedule; its input buffer receives the batch.
    pub forward: ForwardPlan,
    /// The backward schedule from the objective's layer to `to` (or the input).
    pub backward: BackwardPlan,
    objective: Objective,
    n: usize,
    /// Per-image shape of the objective's layer at this input size.
    row_shape: Vec<usize>,
}

/// What must match for a kept pass to serve a new call; the targets need not (the seed is
/// rewritten).
#[derive(Debug, Clone, PartialEq)]
struct PassKey {
    shape: [usize; 4],
    layer: String,
    to: Option<String>,
    rule: ReluRule,
}

/// A pass kept by a model between calls, with what it was built for.
struct KeptPass {
    key: PassKey,
    pass: GradientPass,
}

/// Passes whose activations and gradients take more than this are not kept: the memory would
/// outlive the call, and at large batches building the pass is a small part of a call.
const KEEP_MAX_BYTES: usize = 256 << 20;

impl GradientPass {
    /// The pass [`GradientPass::new`] would build, taken from `model` when its last call kept
    /// one of the same shape, layers and rule (retargeted to `objective`), else built. While
    /// a caller holds it, no other call can take it (a concurrent call builds its own). Hand it
    /// back with [`GradientPass::keep`]; anything returned to users must be copied out of its
    /// buffers first, since the next call overwrites them.
    pub fn reuse_or_new(
        ctx: &GpuContext,
        model: &Model,
        shape: [usize; 4],
        objective: Objective,
        to: Option<&str>,
        rule: ReluRule,
    ) -> Result<GradientPass> {
        let key = PassKey {
            shape,
            layer: objective.layer.clone(),
            to: to.map(str::to_string),
            rule,
        };
        let kept = model
            .kept_pass
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .and_then(|b| b.downcast::<KeptPass>().ok())
            .filter(|k| k.key == key);
        match kept {
            Some(k) => {
                let mut pass = k.pass;
                pass.retarget(ctx, objective)?;
                Ok(pass)
            }
            None => GradientPass::new(ctx, model, shape, objective, to, rule),
        }
    }

    /// Gives the pass to `model` for its next call of the same shapes (see
    /// [`GradientPass::reuse_or_new`]), unless its tensors are too large to keep.
    pub fn keep(self, model: &Model, to: Option<&str>, rule: ReluRule) {
        if self.bytes() > KEEP_MAX_BYTES {
            return;
        }
        let key = PassKey {
            shape: self.forward.input().shape().try_into().unwrap_or([0; 4]),
            layer: self.objective.layer.clone(),
            to: to.map(str::to_string),
            rule,
        };
        let kept: Box<dyn std::any::Any + Send> = Box::new(KeptPass { key, pass: self });
        *model.kept_pass.lock().unwrap_or_else(|p| p.into_inner()) = Some(kept);
    }

    /// Bytes of the activations and gradients the pass holds.
    fn bytes(&self) -> usize {
        let sum = |ts: Vec<&Tensor>| ts.iter().map(|t| t.numel() * 4).sum::<usize>();
        sum(self.forward.tensors()) + sum(self.backward.tensors())
    }

    /// Points the pass at new targets of the same layer: rewrites the seed where it does not
    /// depend on the output.
    fn retarget(&mut self, ctx: &GpuContext, objective: Objective) -> Result<()> {
        self.objective = objective;
        if !self.objective.needs_output() {
            let seed = self.objective.seed(self.n, &self.row_shape, None)?;
            self.backward.seed().write(ctx, &seed)?;
        }
        Ok(())
    }

    /// Plans the pass for inputs of `shape` `[N, C, H, W]`, from `objective`'s layer down to
    /// layer `to` (`None`: the input), with `rule` at every ReLU.
    pub fn new(
        ctx: &GpuContext,
        model: &Model,
        shape: [usize; 4],
        objective: Objective,
        to: Option<&str>,
        rule: ReluRule,
    ) -> Result<GradientPass> {
        let forward = model.forward_plan(ctx, shape)?;
        let backward = model.backward_plan(ctx, &forward, &objective.layer, to, rule)?;
        let row_shape = forward.activation(&objective.layer)?.shape()[1..].to_vec();
        let pass = GradientPass {
            forward,
            backward,
            objective,
            n: shape[0],
            row_shape,
        };
        if !pass.objective.needs_output() {
            let seed = pass.objective.seed(pass.n, &pass.row_shape, None)?;
            pass.backward.seed().write(ctx, &seed)?;
        }
        Ok(pass)
    }

    /// The resolved targets.
    pub fn objective(&self) -> &Objective {
        &self.objective
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.n
    }

    /// Runs forward and backward on whatever the forward input buffer holds: one submission
    /// when the seed is fixed; otherwise the forward pass, a read of the objective layer (the
    /// logits, for top-class and probability targets), then the backward pass.
    pub fn run(&self, ctx: &GpuContext) -> Result<()> {
        if self.objective.needs_output() {
            self.forward.run(ctx)?;
            let values = self
                .forward
                .activation(&self.objective.layer)?
                .download(ctx)?;
            let seed = self
                .objective
                .seed(self.n, &self.row_shape, Some(&values))?;
            self.backward.seed().write(ctx, &seed)?;
            ctx.run(&self.backward.dispatches())
        } else {
            let mut all = self.forward.dispatches();
            all.extend(self.backward.dispatches());
            ctx.run(&all)
        }
    }

    /// Writes `input` `[N, C, H, W]` and runs.
    pub fn run_on(&self, ctx: &GpuContext, input: &[f32]) -> Result<()> {
        self.forward.input().write(ctx, input)?;
        self.run(ctx)
    }

    /// Each image's score (downloads the objective layer).
    pub fn scores(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let values = self
            .forward
            .activation(&self.objective.layer)?
            .download(ctx)?;
        self.objective.scores(self.n, &self.row_shape, &values)
    }

    /// The target class index per image (`-1` where the target names none); reads the logits
    /// for top-class targets.
    pub fn target_indices(&self, ctx: &GpuContext) -> Result<Vec<i64>> {
        let values = if self.objective.needs_output() {
            Some(
                self.forward
                    .activation(&self.objective.layer)?
                    .download(ctx)?,
            )
        } else {
            None
        };
        Ok(self.objective.class_indices(self.n, values.as_deref()))
    }
}
