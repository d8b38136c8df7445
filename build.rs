//! Generates `include/kahadb.h` from the C ABI in `src/ffi` with cbindgen.
//!
//! The header is checked in. `KAHADB_CHECK_HEADER=1` makes the build fail instead of rewriting
//! a stale header (the `make test` freshness check uses it).

use std::path::PathBuf;

fn main() {
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=KAHADB_CHECK_HEADER");
    let config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("reading cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("generating the C header from src/ffi");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = root.join("include/kahadb.h");
    let current = std::fs::read(&path).unwrap_or_default();
    if current != fresh {
        if std::env::var("KAHADB_CHECK_HEADER").is_ok_and(|v| v == "1") {
            panic!(
                "include/kahadb.h is stale: run `cargo build` and commit the regenerated header"
            );
        }
        std::fs::create_dir_all(root.join("include")).expect("creating include/");
        std::fs::write(&path, &fresh).expect("writing include/kahadb.h");
    }
}
