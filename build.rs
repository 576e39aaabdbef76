//! Lets the binaries and tests find libtorch without LD_LIBRARY_PATH: torch-sys tells us
//! (through its `links = "tch"` key) where it found the libraries, and we bake that into an rpath.
//! `[env] LD_LIBRARY_PATH` in .cargo/config.toml would not reach test processes.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib) => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
            // The CUDA half of libtorch is loaded at run time, only when a model asks for a GPU.
            println!("cargo:rustc-env=PIPELINE_LIBTORCH_LIB={lib}");
        }
        // Without the `lstm` feature there is no libtorch to find.
        Err(_) if std::env::var_os("CARGO_FEATURE_LSTM").is_none() => {}
        Err(_) => println!("cargo:warning=torch-sys did not report its libtorch folder; run scripts/setup.sh"),
    }
}
