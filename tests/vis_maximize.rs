//! Activation maximization end to end: reproducibility of the same seed on the digits demo
//! model (the class-image quality check is still to come).

mod common;

use std::path::PathBuf;

use cnnvis::vis::maximize::Maximize;
use cnnvis::vis::Target;
use cnnvis::Model;

fn digits() -> Model {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/digits.safetensors");
    Model::open(common::ctx(), p).expect("digits")
}

#[test]
fn the_same_seed_gives_the_same_bits() {
    let ctx = common::ctx();
    let model = digits();
    let run = |seed| {
        Maximize::new()
            .iterations(10)
            .jitter(2)
            .seed(seed)
            .compute(ctx, &model, &[Target::Class(4), Target::Class(7)])
            .expect("maximize")
            .images
            .download(ctx)
            .expect("download")
    };
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}
