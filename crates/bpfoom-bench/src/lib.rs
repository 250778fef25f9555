//! bpfoom's benchmarks (results in `BENCHMARKS.md`) and its cgroup v2 VM
//! harness (qemu TCG, used by `tests/vm_v2.rs`).
//!
//! - [`compare`]: the side-by-side comparison with oomd, earlyoom, nohang;
//! - [`cpio`]: a newc writer for the initramfs;
//! - [`vm`]: the host side: fetch Debian's kernel, assemble the initramfs
//!   (busybox-static, `bpfoom-vmguest` and its libraries, the policies),
//!   boot qemu with TCG, read the results from the serial console;
//! - [`episodes`]: benchmark groups 8 and 9 (back-to-back OOMs in one
//!   memcg, many memcgs OOM'ing at once; cgroup v1);
//! - [`guest`]: what runs inside the VM (the v2 end-to-end suite);
//! - [`idle`]: benchmark group 3 (idle cost against earlyoom and nohang);
//! - [`policy_cost`]: benchmark group 2 (policy and verification cost);
//! - [`reaction`]: benchmark group 1 (memcg OOM reaction on cgroup v1);
//! - [`soak`]: the soak of issue 13 (OOMs, attaches and detaches for
//!   minutes; RSS and descriptors of the daemon sampled and plotted);
//! - [`stats`]: medians, percentiles and ratios for BENCHMARKS.md.

pub mod compare;
pub mod cpio;
pub mod episodes;
pub mod guest;
pub mod idle;
pub mod policy_cost;
pub mod reaction;
pub mod soak;
pub mod stats;
pub mod vm;
