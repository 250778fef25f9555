//! The cgroup v2 end-to-end suite in a qemu VM (`tests/vm_v2.rs`), and the
//! VM harness the side-by-side benchmark of `bpfoom-bench` boots too.
//!
//! - [`vm`]: the host side: fetch Debian's kernel, assemble the initramfs
//!   (busybox-static, `bpfoom-vmguest` and its libraries, the policies),
//!   boot qemu with TCG, read the results from the serial console;
//! - [`cpio`]: a newc writer for the initramfs;
//! - [`guest`]: what runs inside the VM: cgroup, allocator and daemon
//!   helpers and the v2 end-to-end suite (`bpfoom-vmguest suite`);
//! - [`compare`]: the in-guest half of `bpfoom-bench compare`
//!   (`bpfoom-vmguest compare`);
//! - [`idle_v2`]: the in-guest half of `bpfoom-bench idle-v2`
//!   (`bpfoom-vmguest idle-v2`): idle cost and reaction with many watched
//!   cgroup v2 leaves;
//! - [`proc`]: a process tree's CPU time and RSS from /proc.
//!
//! The `bpfoom-vmguest` binary is the one program the initramfs carries
//! besides busybox: the daemon, the allocator and both drivers.

pub mod compare;
pub mod cpio;
pub mod guest;
pub mod idle_v2;
pub mod proc;
pub mod vm;
