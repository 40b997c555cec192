//! Forward and backward schedules of a [`Model`] for one input shape: every activation and
//! gradient buffer allocated once, every [`Dispatch`] built once, so a step is recorded into
//! one compute pass and one submission and can be replayed without rebuilding anything.
//! A ReLU runs inside its neighbour's dispatch where that saves a launch: forward, a conv's;
//! backward, that of the conv or max pool it feeds (see `backward_relu_fusions`).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, GpuContext, Tensor};
use crate::model::graph::{LayerIndex, Model, NodeOp, Src};
use crate::model::weights::ModelError;
use crate::ops::conv2d::{
    conv2d_backward_input_cached, conv2d_backward_input_relu_cached, conv2d_forward_cached,
    conv2d_forward_relu_cached,
};
use crate::ops::elementwise::{
    add_backward, add_forward, batchnorm_affine_backward_input, batchnorm_affine_forward,
};
use crate::ops::linear::{linear_backward_input_blocks_cached, linear_forward_rows_cached};
use crate::ops::pool::{
    adaptive_avgpool2d_backward, adaptive_avgpool2d_forward, avgpool2d_backward, avgpool2d_forward,
    maxpool2d_backward, maxpool2d_backward_relu, maxpool2d_forward,
};
use crate::ops::relu::{relu_backward, relu_backward_redirected, relu_forward, ReluRule};

/// The forward pass of a model for one input shape `[N, C, H, W]`.
#[derive(Debug)]
pub struct ForwardPlan {
    input: Tensor,
    acts: Vec<Tensor>,
    argmax: Vec<Option<Tensor>>,
    dispatches: Vec<Dispatch>,
    output: usize,
    index: Arc<LayerIndex>,
}

impl Model {
    /// Allocates activations for inputs of `input_shape` `[N, C, H, W]` and builds the
    /// forward launches. Fails with a message naming the layer when a shape does not fit (an
    /// image size whose flattened features differ from a dense layer's weight, say).
    pub fn forward_plan(&self, ctx: &GpuContext, input_shape: [usize; 4]) -> Result<ForwardPlan> {
        let c = self.preprocess().channels.count();
        if input_shape[1] != c || input_shape.contains(&0) {
            return Err(Error::shape(
                "model",
                format!(
                    "input shape {input_shape:?} does not fit model {} (expects [N, {c}, H, W] \
                     with N, H, W > 0)",
                    self.arch()
                ),
            ));
        }
        let input = Tensor::zeros(ctx, &input_shape)?;
        let mut acts: Vec<Tensor> = Vec::with_capacity(self.nodes.len());
        let mut argmax = Vec::with_capacity(self.nodes.len());
        let mut dispatches = Vec::with_capacity(self.nodes.len());
        // A conv's ReLU runs in the conv's dispatch (conv2d_forward_relu_cached): its output is
        // allocated with the conv's and its own node launches nothing.
        let fused = self.forward_relu_fusions();
        let mut early: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        for (idx, node) in self.nodes.iter().enumerate() {
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|s| match s {
                    Src::Input => &input,
                    Src::Node(i) => &acts[*i],
                })
                .collect();
            let in_shapes: Vec<&[usize]> = ins.iter().map(|t| t.shape()).collect();
            let wrap = |e: Error| match e {
                Error::Shape { message, .. } => Error::shape(
                    "model",
                    format!(
                        "layer `{}` ({}) with input {input_shape:?}: {message}",
                        node.name, node.kind
                    ),
                ),
                other => other,
            };
            let shape = node.op.output_shape(&in_shapes).map_err(wrap)?;
            let x = ins[0];
            let mut am = None;
            let y = match &node.op {
                NodeOp::Flatten => x.reshape(&shape)?,
                NodeOp::Identity => x.clone(),
                _ if early[idx].is_some() => early[idx].take().expect("checked"),
                _ => {
                    let y = Tensor::empty(ctx, &shape, DType::F32).map_err(wrap)?;
                    match &node.op {
                        NodeOp::Conv { w, b, cfg, packs } => match fused[idx] {
                            Some(j) => {
                                let r = Tensor::empty(ctx, &shape, DType::F32)?;
                                dispatches.push(conv2d_forward_relu_cached(
                                    ctx,
                                    &y,
                                    &r,
                                    x,
                                    w,
                                    b.as_ref(),
                                    cfg,
                                    packs,
                                )?);
                                early[j] = Some(r);
                            }
                            None => dispatches.push(conv2d_forward_cached(
                                ctx,
                                &y,
                                x,
                                w,
                                b.as_ref(),
                                cfg,
                                packs,
                            )?),
                        },
                        NodeOp::Affine { scale, shift } => {
                            dispatches.push(batchnorm_affine_forward(ctx, &y, x, scale, shift)?)
                        }
                        NodeOp::Relu => dispatches.push(relu_forward(ctx, &y, x)?),
                        NodeOp::MaxPool(cfg) => {
                            let a = Tensor::empty(ctx, &shape, DType::U32)?;
                            dispatches.push(maxpool2d_forward(ctx, &y, &a, x, cfg)?);
                            am = Some(a);
                        }
                        NodeOp::AvgPool(cfg) => {
                            dispatches.push(avgpool2d_forward(ctx, &y, x, cfg)?)
                        }
                        NodeOp::AdaptiveAvgPool(_) => {
                            dispatches.push(adaptive_avgpool2d_forward(ctx, &y, x)?)
                        }
                        NodeOp::Linear { blocks, .. } => {
                            for blk in blocks {
                                dispatches.push(linear_forward_rows_cached(
                                    ctx,
                                    &y,
                                    x,
                                    &blk.w,
                                    blk.b.as_ref(),
                                    blk.offset,
                                    &blk.packs,
                                )?);
                            }
                        }
                        NodeOp::Add => dispatches.push(add_forward(ctx, &y, x, ins[1])?),
                        NodeOp::Flatten | NodeOp::Identity => {}
                    }
                    y
                }
            };
            acts.push(y);
            argmax.push(am);
        }
        Ok(ForwardPlan {
            input,
            acts,
            argmax,
            dispatches,
            output: self.output,
            index: self.index.clone(),
        })
    }

    /// Runs the model on a preprocessed batch `[N, C, H, W]` and returns the logits, one row
    /// per image.
    pub fn predict(
        &self,
        ctx: &GpuContext,
        input: &[f32],
        shape: [usize; 4],
    ) -> Result<Vec<Vec<f32>>> {
        let plan = self.forward_plan(ctx, shape)?;
        plan.input().write(ctx, input)?;
        plan.run(ctx)?;
        let logits = plan.output().download(ctx)?;
        let per = logits.len() / shape[0].max(1);
        Ok(logits.chunks(per.max(1)).map(<[f32]>::to_vec).collect())
    }

    /// Builds the backward launches of `forward` from `from`'s output back to `to`'s output
    /// (`None`: the input image), with `rule` at every ReLU. The caller fills
    /// [`BackwardPlan::seed`] (the gradient at `from`) and records `forward` then this plan
    /// into one submission.
    pub fn backward_plan(
        &self,
        ctx: &GpuContext,
        forward: &ForwardPlan,
        from: &str,
        to: Option<&str>,
        rule: ReluRule,
    ) -> Result<BackwardPlan> {
        let from_node = match self.index.find(from)? {
            Src::Node(i) => i,
            Src::Input => {
                return Err(Error::shape(
                    "model",
                    "the backward pass cannot start at the input",
                ))
            }
        };
        let to_src = match to {
            None => Src::Input,
            Some(name) => self.index.find(name)?,
        };
        let n = self.nodes.len();
        // Nodes on some path from `to` to `from`: descendants of `to` that reach `from`.
        let mut reaches = vec![false; n];
        reaches[from_node] = true;
        for i in (0..from_node).rev() {
            reaches[i] = (i + 1..=from_node)
                .any(|j| reaches[j] && self.nodes[j].inputs.contains(&Src::Node(i)));
        }
        let mut below = vec![false; n];
        for (i, node) in self.nodes.iter().enumerate().take(from_node + 1) {
            below[i] = node
                .inputs
                .iter()
                .any(|s| *s == to_src || matches!(s, Src::Node(j) if below[*j]));
        }
        let on_path = |i: usize| reaches[i] && below[i];
        if !on_path(from_node) {
            return Err(Error::shape(
                "model",
                format!(
                    "layer `{}` does not feed layer `{from}`, so no gradient flows between them",
                    to.unwrap_or("input")
                ),
            ));
        }
        // A ReLU under a conv or a max pool runs in that node's backward dispatch
        // (conv2d_backward_input_relu_cached, maxpool2d_backward_relu): its gradient is never
        // materialized.
        let fused = self.backward_relu_fusions(&on_path, to_src, from_node, rule);
        let mut folded = vec![false; n];
        for &(j, _) in fused.iter().flatten() {
            folded[j] = true;
        }
        // A flatten, identity (dropout) or add node that is an input's only consumer passes its
        // gradient on unchanged: the input's gradient is the same buffer, and no copy runs
        // (for ResNet's residual adds, the main branch and a downsampling shortcut: on
        // lavapipe each copy is a pass of per-lane stores).
        let consumers = self.path_consumers(&on_path, from_node);
        let mut shared_with: Vec<Option<usize>> = vec![None; n];
        for (i, node) in self.nodes.iter().enumerate().take(from_node + 1) {
            if !matches!(node.op, NodeOp::Flatten | NodeOp::Identity | NodeOp::Add) || !on_path(i) {
                continue;
            }
            for src in &node.inputs {
                if let Src::Node(j) = *src {
                    if consumers[j] == 1 && (on_path(j) || to_src == Src::Node(j)) {
                        shared_with[j] = Some(i);
                    }
                }
            }
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; n];
        for i in (0..n).rev() {
            if !(on_path(i) || to_src == Src::Node(i)) || folded[i] {
                continue;
            }
            let shape = forward.acts[i].shape();
            grads[i] = Some(match shared_with[i].and_then(|k| grads[k].as_ref()) {
                Some(above) => above.reshape(shape)?,
                None => Tensor::zeros(ctx, shape)?,
            });
        }
        let input_grad = if to_src == Src::Input {
            Some(Tensor::zeros(ctx, forward.input.shape())?)
        } else {
            None
        };
        let mut written = vec![false; n];
        let mut input_written = false;
        let mut dispatches = Vec::new();
        let mut relu_flags: Option<Tensor> = None;
        for i in (0..=from_node).rev() {
            let passes_on = matches!(self.nodes[i].inputs.as_slice(),
                [Src::Node(j)] if shared_with[*j] == Some(i));
            if !on_path(i) || folded[i] || passes_on {
                continue;
            }
            let node = &self.nodes[i];
            let dy = grads[i]
                .as_ref()
                .expect("every node on the path has a gradient");
            for src in &node.inputs {
                if matches!(*src, Src::Node(j) if shared_with[j] == Some(i)) {
                    continue;
                }
                // Through a ReLU folded into this node: on to the ReLU's input.
                let (src, relu_x) = match fused[i] {
                    Some((_, k)) => (k, Some(forward.source(k))),
                    None => (*src, None),
                };
                let (dx, acc) = match src {
                    Src::Input if to_src == Src::Input => {
                        let acc = input_written;
                        input_written = true;
                        (input_grad.as_ref().expect("allocated for Src::Input"), acc)
                    }
                    Src::Node(j) if on_path(j) || to_src == Src::Node(j) => {
                        let acc = written[j];
                        written[j] = true;
                        (grads[j].as_ref().expect("allocated on the path"), acc)
                    }
                    _ => continue,
                };
                let x = forward.source(node.inputs[0]);
                match &node.op {
                    NodeOp::Conv { w, cfg, packs, .. } => dispatches.push(match relu_x {
                        Some(rx) => conv2d_backward_input_relu_cached(
                            ctx, dx, dy, w, cfg, rx, rule, acc, packs,
                        )?,
                        None => conv2d_backward_input_cached(ctx, dx, dy, w, cfg, acc, packs)?,
                    }),
                    NodeOp::Affine { scale, .. } => {
                        dispatches.push(batchnorm_affine_backward_input(ctx, dx, dy, scale, acc)?)
                    }
                    NodeOp::Relu if rule == ReluRule::Redirected => {
                        let flags = match &relu_flags {
                            Some(f) => f,
                            None => relu_flags.insert(Tensor::from_u32(
                                ctx,
                                &[x.shape()[0]],
                                &vec![0; x.shape()[0]],
                            )?),
                        };
                        dispatches.extend(relu_backward_redirected(ctx, dx, dy, x, flags, acc)?)
                    }
                    NodeOp::Relu => dispatches.push(relu_backward(ctx, dx, dy, x, rule, acc)?),
                    NodeOp::MaxPool(cfg) => {
                        let am = forward.argmax[i].as_ref().expect("max pools keep argmax");
                        dispatches.push(match relu_x {
                            Some(rx) => {
                                maxpool2d_backward_relu(ctx, dx, dy, am, cfg, rx, rule, acc)?
                            }
                            None => maxpool2d_backward(ctx, dx, dy, am, cfg, acc)?,
                        })
                    }
                    NodeOp::AvgPool(cfg) => {
                        dispatches.push(avgpool2d_backward(ctx, dx, dy, cfg, acc)?)
                    }
                    NodeOp::AdaptiveAvgPool(_) => {
                        dispatches.push(adaptive_avgpool2d_backward(ctx, dx, dy, acc)?)
                    }
                    NodeOp::Flatten | NodeOp::Identity => {
                        let dy = dy.reshape(dx.shape())?;
                        dispatches.push(add_backward(ctx, dx, &dy, acc)?)
                    }
                    NodeOp::Linear { blocks, .. } => {
                        let blocks: Vec<_> = blocks
                            .iter()
                            .map(|b| (&b.w, b.offset, b.packs.as_ref()))
                            .collect();
                        dispatches.push(linear_backward_input_blocks_cached(
                            ctx, dx, dy, &blocks, acc,
                        )?);
                    }
                    NodeOp::Add => dispatches.push(add_backward(ctx, dx, dy, acc)?),
                }
            }
        }
        let seed = grads[from_node].clone().expect("from is on the path");
        Ok(BackwardPlan {
            seed,
            grads,
            folded,
            input_grad,
            dispatches,
            index: self.index.clone(),
        })
    }
}

impl Model {
    /// For each conv node, the ReLU node the forward plan runs in its dispatch: the first
    /// ReLU whose only input is the conv.
    fn forward_relu_fusions(&self) -> Vec<Option<usize>> {
        let mut taken = vec![false; self.nodes.len()];
        (0..self.nodes.len())
            .map(|i| {
                if !matches!(self.nodes[i].op, NodeOp::Conv { .. }) {
                    return None;
                }
                let j = (i + 1..self.nodes.len()).find(|&j| {
                    !taken[j]
                        && matches!(self.nodes[j].op, NodeOp::Relu)
                        && self.nodes[j].inputs == [Src::Node(i)]
                })?;
                taken[j] = true;
                Some(j)
            })
            .collect()
    }

    /// For each node, how many inputs of nodes on a backward path (up to `from_node`) it is.
    fn path_consumers(&self, on_path: &dyn Fn(usize) -> bool, from_node: usize) -> Vec<usize> {
        let mut consumers = vec![0usize; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate().take(from_node + 1) {
            if on_path(i) {
                for src in &node.inputs {
                    if let Src::Node(j) = *src {
                        consumers[j] += 1;
                    }
                }
            }
        }
        consumers
    }

    /// For each conv or max-pool node on a backward path, the ReLU below it that its backward
    /// dispatch applies, and that ReLU's input: where its input is a ReLU's output that feeds
    /// nothing else on the path (so its gradient is this node's alone), the ReLU is not the
    /// pass's lower end, its input has a gradient to receive, and the rule needs no per-image
    /// flags.
    fn backward_relu_fusions(
        &self,
        on_path: &dyn Fn(usize) -> bool,
        to_src: Src,
        from_node: usize,
        rule: ReluRule,
    ) -> Vec<Option<(usize, Src)>> {
        let n = self.nodes.len();
        let consumers = self.path_consumers(on_path, from_node);
        (0..n)
            .map(|i| {
                if rule == ReluRule::Redirected
                    || i > from_node
                    || !on_path(i)
                    || !matches!(self.nodes[i].op, NodeOp::Conv { .. } | NodeOp::MaxPool(_))
                {
                    return None;
                }
                let Src::Node(j) = *self.nodes[i].inputs.first()? else {
                    return None;
                };
                let relu = &self.nodes[j];
                let k = *relu.inputs.first()?;
                let receives = match k {
                    Src::Input => to_src == Src::Input,
                    Src::Node(kk) => on_path(kk) || to_src == k,
                };
                (matches!(relu.op, NodeOp::Relu)
                    && on_path(j)
                    && to_src != Src::Node(j)
                    && consumers[j] == 1
                    && receives)
                    .then_some((j, k))
            })
            .collect()
    }
}

impl ForwardPlan {
    /// The tensor `src` names: the input or a node's activation.
    fn source(&self, src: Src) -> &Tensor {
        match src {
            Src::Input => &self.input,
            Src::Node(i) => &self.acts[i],
        }
    }

    /// The input and every activation tensor the plan allocated (for memory accounting).
    pub(crate) fn tensors(&self) -> Vec<&Tensor> {
        let argmax = self.argmax.iter().flatten();
        std::iter::once(&self.input)
            .chain(&self.acts)
            .chain(argmax)
            .collect()
    }

    /// The input buffer `[N, C, H, W]`; write a preprocessed batch into it before running.
    pub fn input(&self) -> &Tensor {
        &self.input
    }

    /// The model's output (logits) `[N, classes]`.
    pub fn output(&self) -> &Tensor {
        &self.acts[self.output]
    }

    /// The output of layer `name` (valid after the plan ran).
    pub fn activation(&self, name: &str) -> Result<&Tensor> {
        Ok(match self.index.find(name)? {
            Src::Input => &self.input,
            Src::Node(i) => &self.acts[i],
        })
    }

    /// The launches, in order, for recording into a larger pass.
    pub fn dispatches(&self) -> Vec<&Dispatch> {
        self.dispatches.iter().collect()
    }

    /// Records the forward pass into one pass and submits it (no wait).
    pub fn run(&self, ctx: &GpuContext) -> Result<()> {
        ctx.run(&self.dispatches())
    }
}

/// The backward pass of a model from one layer to an earlier one (or the input), built on a
/// [`ForwardPlan`]'s buffers.
#[derive(Debug)]
pub struct BackwardPlan {
    seed: Tensor,
    grads: Vec<Option<Tensor>>,
    /// ReLU nodes whose gradient the conv or max pool above applies (never materialized).
    folded: Vec<bool>,
    input_grad: Option<Tensor>,
    dispatches: Vec<Dispatch>,
    index: Arc<LayerIndex>,
}

impl BackwardPlan {
    /// Every gradient tensor the plan allocated (for memory accounting).
    pub(crate) fn tensors(&self) -> Vec<&Tensor> {
        let grads = self.grads.iter().flatten();
        std::iter::once(&self.seed)
            .chain(grads)
            .chain(self.input_grad.as_ref())
            .collect()
    }

    /// The gradient at the starting layer's output; the caller fills it (a one-hot row for a
    /// class score, say) before running.
    pub fn seed(&self) -> &Tensor {
        &self.seed
    }

    /// The gradient with respect to the input image, when the plan goes down to it.
    pub fn input_grad(&self) -> Option<&Tensor> {
        self.input_grad.as_ref()
    }

    /// The gradient at layer `name`'s output (a layer between the plan's ends).
    pub fn grad(&self, name: &str) -> Result<&Tensor> {
        let src = self.index.find(name)?;
        if let Src::Node(i) = src {
            if self.folded[i] {
                return Err(Error::shape(
                    "model",
                    format!(
                        "the gradient at ReLU `{name}` is not kept: the layer above it applies \
                         the ReLU in its own launches; end the backward pass at `{name}` to \
                         read it"
                    ),
                ));
            }
        }
        let t = match src {
            Src::Input => self.input_grad.as_ref(),
            Src::Node(i) => self.grads[i].as_ref(),
        };
        t.ok_or_else(|| {
            ModelError::UnknownLayer {
                model: self.index.arch.clone(),
                name: name.to_string(),
                known: "layers between the backward pass's ends".into(),
            }
            .into()
        })
    }

    /// The launches, in order, for recording after the forward pass's.
    pub fn dispatches(&self) -> Vec<&Dispatch> {
        self.dispatches.iter().collect()
    }
}
