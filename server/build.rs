//! Builds the browser client so that `cargo run --release` serves it with no manual step:
//! compiles `wasm-client` for `wasm32-unknown-unknown` (profile `wasm`, in its own target
//! directory so it never waits on the outer build's lock), generates the JS glue with
//! `wasm-bindgen-cli-support` (the same exact version as the crate's `wasm-bindgen`),
//! shrinks the module with `wasm-opt` when it is installed, and leaves
//! `$OUT_DIR/client/shoal_client.js` and `shoal_client_bg.wasm` for `include_bytes!`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("client");
    for path in [
        "wasm-client/src",
        "wasm-client/Cargo.toml",
        "swarm/src",
        "swarm/Cargo.toml",
        "signaling/src",
        "signaling/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=SHOAL_WASM_OPT");
    if let Err(e) = build(&root, &out) {
        panic!("\n\nbuilding the browser client failed: {e}\n\n");
    }
}

fn build(root: &Path, out: &Path) -> Result<(), String> {
    ensure_target()?;
    let target_dir = root.join("target").join("wasm");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--package",
            "shoal-wasm-client",
            "--target",
            TARGET,
        ])
        .args(["--profile", "wasm", "--target-dir"])
        .arg(&target_dir);
    // The outer build's settings are not the client's: no clippy wrapper, no fuzzing or
    // host-only flags, no forced target or target directory.
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    // Share the outer build's job slots rather than starting as many jobs again.
    if let Some(flags) = env::var_os("CARGO_MAKEFLAGS") {
        cmd.env("MAKEFLAGS", flags);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build of shoal-wasm-client for {TARGET}: {status}"
        ));
    }
    let wasm = target_dir
        .join(TARGET)
        .join("wasm")
        .join("shoal_wasm_client.wasm");
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut bindgen = wasm_bindgen_cli_support::Bindgen::new();
    bindgen
        .input_path(&wasm)
        .web(true)
        .map_err(|e| format!("wasm-bindgen: {e}"))?
        .typescript(false)
        .out_name("shoal_client")
        .omit_default_module_path(false)
        .generate(out)
        .map_err(|e| format!("wasm-bindgen on {}: {e}", wasm.display()))?;
    optimize(&out.join("shoal_client_bg.wasm"));
    Ok(())
}

/// A fresh machine has no wasm32 standard library; add it (as scripts/setup does) or say how.
fn ensure_target() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc --print sysroot: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return Ok(());
    }
    println!("cargo:warning=adding the {TARGET} target with rustup");
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; \
             run scripts/setup"
        ))
    }
}

/// Oldest binaryen whose `wasm-opt` keeps wasm-bindgen's externref table intact (Debian 12's
/// version 108 breaks it: the module then fails to instantiate).
const MIN_WASM_OPT: u32 = 116;

/// Runs `wasm-opt -Os` in place when a recent enough binaryen is installed
/// (`SHOAL_WASM_OPT=0` skips it). Without it the module is about 10 % larger but the same.
fn optimize(wasm: &Path) {
    if env::var("SHOAL_WASM_OPT").is_ok_and(|v| v == "0") {
        return;
    }
    let version = Command::new("wasm-opt")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            // "wasm-opt version 116 (version_116)"
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)
                .and_then(|v| v.parse::<u32>().ok())
        });
    match version {
        Some(v) if v >= MIN_WASM_OPT => {}
        Some(v) => {
            println!("cargo:warning=wasm-opt {v} is older than {MIN_WASM_OPT}: not used");
            return;
        }
        None => return,
    }
    let tmp = wasm.with_extension("opt.wasm");
    let result = Command::new("wasm-opt")
        .arg("-Os")
        .args([
            "--enable-bulk-memory",
            "--enable-sign-ext",
            "--enable-nontrapping-float-to-int",
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
        ])
        .arg(wasm)
        .arg("-o")
        .arg(&tmp)
        .output();
    match result {
        Ok(o) if o.status.success() => {
            if let Err(e) = std::fs::rename(&tmp, wasm) {
                println!("cargo:warning=wasm-opt output not used: {e}");
            }
        }
        Ok(o) => println!(
            "cargo:warning=wasm-opt failed, serving the unoptimised client: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ),
        Err(_) => {} // not installed: fine
    }
}
