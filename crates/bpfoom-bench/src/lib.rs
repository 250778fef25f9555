//! bpfoom's benchmarks (results in `BENCHMARKS.md`). The VM they boot for
//! the side-by-side comparison, and the cgroup v2 end-to-end suite, are in
//! `bpfoom-vmtest`.
//!
//! - [`compare`]: the side-by-side comparison with oomd, earlyoom, nohang
//!   (the initramfs, the table and the chart; the runs are
//!   `bpfoom_vmtest::compare`, inside the guest);
//! - [`episodes`]: benchmark groups 8 and 9 (back-to-back OOMs in one
//!   memcg, many memcgs OOM'ing at once; cgroup v1);
//! - [`idle`]: benchmark group 3 (idle cost against earlyoom and nohang);
//! - [`idle_v2`]: group 3 on cgroup v2 in the VM (idle cost and reaction
//!   with many watched cgroups; the runs are `bpfoom_vmtest::idle_v2`);
//! - [`policy_cost`]: benchmark group 2 (policy and verification cost);
//! - [`reaction`]: benchmark group 1 (memcg OOM reaction on cgroup v1);
//! - [`soak`]: the soak of issue 13 (OOMs, attaches and detaches for
//!   minutes; RSS and descriptors of the daemon sampled and plotted);
//! - [`stats`]: medians, percentiles and ratios for BENCHMARKS.md.

pub mod compare;
pub mod episodes;
pub mod idle;
pub mod idle_v2;
pub mod policy_cost;
pub mod reaction;
pub mod soak;
pub mod stats;
