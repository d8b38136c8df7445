// Shared by build.rs and tests/header.rs (pulled in with `include!`): renders the C header
// from the C ABI in src/ffi with cbindgen, configured by cbindgen.toml.

/// The header `include/kahadb.h` should contain, generated from the sources under `root`.
pub fn render_header(root: &std::path::Path) -> Result<Vec<u8>, String> {
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
        .map_err(|e| format!("reading cbindgen.toml: {e}"))?;
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .map_err(|e| format!("generating the C header from src/ffi: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    Ok(out)
}
