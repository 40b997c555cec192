//! The `cnnvis` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// CNN visualizations computed on the GPU.
#[derive(Parser)]
#[command(name = "cnnvis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapter cnnvis would use (honours WGPU_BACKEND and WGPU_ADAPTER_NAME) and
    /// its limits.
    Adapter,
    /// Parse and validate every embedded WGSL kernel with naga (needs no GPU).
    CheckShaders,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Adapter => adapter(),
        Command::CheckShaders => check_shaders(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn adapter() -> cnnvis::Result<()> {
    let ctx = cnnvis::GpuContext::new()?;
    let l = ctx.limits();
    println!("adapter: {}", ctx.adapter());
    println!("max_buffer_size: {} bytes", l.max_buffer_size);
    println!(
        "max_storage_buffer_binding_size: {} bytes",
        l.max_storage_buffer_binding_size
    );
    println!(
        "max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "max_compute_workgroup_storage_size: {} bytes",
        l.max_compute_workgroup_storage_size
    );
    Ok(())
}

fn check_shaders() -> cnnvis::Result<()> {
    for shader in cnnvis::gpu::Shader::ALL {
        cnnvis::gpu::validate_shader(shader)?;
        println!("ok  shaders/{}", shader.file());
    }
    Ok(())
}
