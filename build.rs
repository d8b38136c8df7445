//! Generates `include/kahadb.h` from the C ABI in `src/ffi` with cbindgen.
//!
//! The header is checked in. With `KAHADB_CHECK_HEADER=1` (set by `make test`) a stale header
//! fails the build instead of being rewritten; `tests/header.rs` checks it too.

use std::path::PathBuf;

include!("tools/header.rs");

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=tools/header.rs");
    println!("cargo:rerun-if-changed=include/kahadb.h");
    println!("cargo:rerun-if-env-changed=KAHADB_CHECK_HEADER");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let fresh = match render_header(&root) {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    };
    let path = root.join("include/kahadb.h");
    let current = std::fs::read(&path).unwrap_or_default();
    if current == fresh {
        return;
    }
    if std::env::var("KAHADB_CHECK_HEADER").is_ok_and(|v| v == "1") {
        panic!(
            "include/kahadb.h is stale: run `cargo build` (without KAHADB_CHECK_HEADER) and commit the regenerated header"
        );
    }
    if let Err(e) =
        std::fs::create_dir_all(root.join("include")).and_then(|_| std::fs::write(&path, &fresh))
    {
        panic!("writing {}: {e}", path.display());
    }
}
