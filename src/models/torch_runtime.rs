//! libtorch's process-wide state, owned in one place: the device, the thread count, the seed.
//!
//! libtorch keeps one global random generator and one intra-op thread pool, so two trainings
//! at once would interleave each other's random draws (no longer deterministic) and fight over
//! threads. [`exclusive`] serialises them.

#[cfg(feature = "lstm")]
use std::sync::OnceLock;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
#[cfg(feature = "lstm")]
use {
    anyhow::{Result, bail},
    tch::Device,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when a GPU and the CUDA build of libtorch are present, else CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

static TORCH: Mutex<()> = Mutex::new(());

/// Holds libtorch for one training or one batch of inference.
pub fn exclusive() -> MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(feature = "lstm")]
/// Loads libtorch's CUDA half once. The binary links only the CPU libraries (so a machine
/// without the 3.5 GB of CUDA wheels can run it); the CUDA ones come in only when asked for.
fn cuda_loaded() -> Result<(), CudaUnavailable> {
    static LOADED: OnceLock<Result<(), CudaUnavailable>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let dir = option_env!("PIPELINE_LIBTORCH_LIB").unwrap_or("");
            let path = std::ffi::CString::new(format!("{dir}/libtorch_cuda.so")).map_err(|e| CudaUnavailable(e.to_string()))?;
            // SAFETY: dlopen with a valid C string; the handle is kept for the life of the process.
            let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns a thread-local C string or null.
                let msg = unsafe { libc::dlerror() };
                let msg = if msg.is_null() { "unknown error".into() } else { unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy().into_owned() };
                return Err(CudaUnavailable(msg));
            }
            Ok(())
        })
        .clone()
}

#[cfg(feature = "lstm")]
/// Why libtorch's CUDA libraries could not be loaded (the loader's own words).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
struct CudaUnavailable(String);

#[cfg(feature = "lstm")]
/// The device a `device:` setting means on this machine.
pub fn resolve(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(match cuda_loaded() {
            Ok(()) if tch::Cuda::is_available() => Device::Cuda(0),
            _ => Device::Cpu,
        }),
        DeviceChoice::Cuda => match cuda_loaded() {
            Err(e) => bail!("device: cuda needs libtorch's CUDA libraries ({e}); on a GPU machine run `scripts/libtorch.sh --cuda`, or set device: cpu"),
            Ok(()) if !tch::Cuda::is_available() => bail!("device: cuda, but no CUDA GPU is visible to libtorch; set device: auto or cpu"),
            Ok(()) => Ok(Device::Cuda(0)),
        },
    }
}

#[cfg(feature = "lstm")]
/// Intra-op threads for what follows; one inter-op thread (our models are single graphs).
pub fn set_threads(n: usize) {
    static INTEROP: OnceLock<()> = OnceLock::new();
    // Inter-op threads can only be set before the first parallel work, and only once.
    INTEROP.get_or_init(|| tch::set_num_interop_threads(1));
    let n = n.max(1) as i32;
    if tch::get_num_threads() != n {
        tch::set_num_threads(n);
    }
}

#[cfg(feature = "lstm")]
pub fn device_name(d: Device) -> &'static str {
    match d {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        _ => "other",
    }
}

/// Without libtorch there are no threads of its to set.
#[cfg(not(feature = "lstm"))]
pub fn set_threads(_n: usize) {}
