//! Compiles the BPF C programs in src/bpf and generates their Rust skeletons.
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: &[&str] = &["contention", "acquire", "probe"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR set by cargo"));
    let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    for name in PROGRAMS {
        let src = format!("src/bpf/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&src)
            // -mcpu=v3: atomics that return the old value (the stack store's slot counter).
            .clang_args(["-Wall", "-Wno-unused-function", "-mcpu=v3", multiarch.as_str()])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src}: {e:#}"));
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/bpf/lockscope.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/workloads.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/lifetimes.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/primitives.h");
    println!("cargo:rerun-if-changed=src/bpf/places.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/waits.bpf.h");
}
