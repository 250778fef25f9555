//! The generic kfuncs and helpers real policies use beside the OOM ones:
//! the numbers iterator (`bpf_for`, `bpf_repeat`), the task iterator,
//! `bpf_task_under_cgroup`, `bpf_cgroup_ancestor` and
//! `bpf_get_current_task_btf`, each with the kernel's results
//! (`kernel/bpf/helpers.c`, `kernel/bpf/task_iter.c`).

use bpfoom_abi::helpers::BPF_MAX_LOOPS;
use bpfoom_abi::kfuncs::{
    BPF_TASK_ITER_ALL_PROCS, BPF_TASK_ITER_ALL_THREADS, BPF_TASK_ITER_PROC_THREADS,
};
use bpfoom_vm::{CallError, Env};

use super::{errno, Kctx};
use crate::host::{ancestors, is_within, subtree_pre, Host, Pid, EINVAL};
use crate::objects::Key;

/// `E2BIG`: a numbers range longer than `BPF_MAX_LOOPS`.
const E2BIG: i32 = 7;

/// The kernel's `struct bpf_iter_num_kern { int cur; int end; }`, kept in
/// the program's own 8-byte iterator slot as Linux keeps it.
fn num_state(env: &mut Env, it: u64) -> Result<(i32, i32), CallError> {
    let v = env.memory().read_u64(it)?;
    Ok((v as u32 as i32, (v >> 32) as u32 as i32))
}

fn set_num_state(env: &mut Env, it: u64, cur: i32, end: i32) -> Result<(), CallError> {
    let v = u64::from(cur as u32) | (u64::from(end as u32) << 32);
    Ok(env.memory().write_u64(it, v)?)
}

impl<H: Host + ?Sized> Kctx<'_, H> {
    /// `bpf_iter_num_new(it, start, end)`: `start..end`; an empty iterator
    /// and -EINVAL when start > end, -E2BIG when longer than 8M.
    pub(super) fn iter_num_new(a: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        let (start, end) = (a[1] as u32 as i32, a[2] as u32 as i32);
        if start > end {
            set_num_state(env, a[0], 0, 0)?;
            return Ok(errno(EINVAL));
        }
        if i64::from(end) - i64::from(start) > BPF_MAX_LOOPS as i64 {
            set_num_state(env, a[0], 0, 0)?;
            return Ok(errno(E2BIG));
        }
        // next() is called before the first value is read.
        set_num_state(env, a[0], start.wrapping_sub(1), end)?;
        Ok(0)
    }

    /// `bpf_iter_num_next(it)`: a pointer to the next number (inside the
    /// iterator itself), or NULL once drained (and from then on).
    pub(super) fn iter_num_next(it: u64, env: &mut Env) -> Result<u64, CallError> {
        let (cur, end) = num_state(env, it)?;
        if i64::from(cur) + 1 >= i64::from(end) {
            set_num_state(env, it, 0, 0)?;
            return Ok(0);
        }
        set_num_state(env, it, cur + 1, end)?;
        Ok(it)
    }

    /// `bpf_iter_task_new(it, task__nullable, flags)`: every process
    /// (ALL_PROCS), every thread (ALL_THREADS; the host lists one thread per
    /// process), or the threads of `task`'s process (PROC_THREADS, which needs
    /// the task). In pid order, as Linux walks its task list in creation
    /// order. Linux also yields the idle task (pid 0) first; no host lists
    /// it, so neither does bpfoom.
    pub(super) fn iter_task_new(&mut self, a: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        let flags = a[2] as u32;
        let items = match flags {
            BPF_TASK_ITER_ALL_PROCS | BPF_TASK_ITER_ALL_THREADS => {
                let mut pids: Vec<Pid> = subtree_pre(&*self.host, self.host.root())
                    .into_iter()
                    .flat_map(|cg| self.host.tasks(cg))
                    .collect();
                pids.sort_unstable();
                pids.dedup();
                Some(pids.into_iter().map(Key::Task).collect())
            }
            BPF_TASK_ITER_PROC_THREADS if a[1] != 0 => Some(vec![Key::Task(self.task_arg(a[1])?)]),
            _ => None,
        };
        self.iter_new(a[0], items, env)
    }

    /// `bpf_task_under_cgroup(task, ancestor)`: 1 when the task's cgroup is
    /// `ancestor` or one of its descendants.
    pub(super) fn task_under_cgroup(&mut self, a: [u64; 5]) -> Result<u64, CallError> {
        let pid = self.task_arg(a[0])?;
        let anc = self.cgroup_arg(a[1])?;
        let Some(t) = self.host.task(pid) else {
            return Ok(0);
        };
        Ok(u64::from(is_within(&*self.host, t.cgroup, anc)))
    }

    /// `bpf_iter_num_destroy(it)`: zeroes the slot.
    pub(super) fn iter_num_destroy(it: u64, env: &mut Env) -> Result<u64, CallError> {
        set_num_state(env, it, 0, 0).map(|()| 0)
    }

    /// `bpf_cgroup_ancestor(cgrp, level)`: the acquired ancestor at `level`
    /// (0 = root, `cgrp->level` = cgrp itself), NULL for other levels.
    pub(super) fn cgroup_ancestor(&mut self, a: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        let cg = self.cgroup_arg(a[0])?;
        let level = a[1] as u32 as i32;
        let chain = ancestors(&*self.host, cg);
        let own = chain.len() as i32 - 1;
        if level < 0 || level > own {
            return Ok(0);
        }
        let anc = chain[(own - level) as usize];
        if self.host.path(anc).is_none() {
            return Ok(0);
        }
        Ok(self.acquire(Key::Cgroup(anc), env))
    }

    /// `bpf_get_current_task_btf()`: in an OOM handler the allocating task
    /// when the host knows it; otherwise (and in PSI callbacks, which Linux
    /// runs from a kworker) the task running the handler, bpfoomd itself,
    /// or a zeroed pid-0 task where there is no such process (the simulator).
    pub(crate) fn current_task(&mut self, env: &mut Env) -> u64 {
        let allocating = if self.oom.is_some() {
            self.host.allocating_task()
        } else {
            None
        };
        let pid = allocating.or_else(|| self.host.self_pid()).unwrap_or(0);
        self.addr_of(Key::Task(pid), env)
    }
}
