// Shared build-script logic for the crates that link libtorch (included by their build.rs).
//
// torch-sys (links = "tch") reports where libtorch lives as DEP_TCH_LIBTORCH_LIB to crates that
// depend on it directly. From it we
// - set an rpath, so binaries and tests run without LD_LIBRARY_PATH (a RUNPATH: an
//   LD_LIBRARY_PATH set on another machine, e.g. a GPU box with its own torch, still wins);
// - link libtorch_cuda when the libtorch has it, with --no-as-needed: nothing references it by
//   symbol, so the linker would drop it and tch::Cuda::is_available() would stay false.

fn torch_link() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
