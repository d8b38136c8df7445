//! The checked-in C header must be exactly what cbindgen makes of src/ffi today.

use std::path::Path;

include!("../tools/header.rs");

#[test]
fn checked_in_header_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = render_header(root).expect("rendering the header");
    let current = std::fs::read(root.join("include/kahadb.h")).expect("reading include/kahadb.h");
    assert!(
        current == fresh,
        "include/kahadb.h is stale: run `cargo build` and commit the regenerated header"
    );
}
