//! The kfuncs, implemented over a [`Host`].
//!
//! One [`Kctx`] lives for one program run. It resolves pointer arguments to
//! the host objects they were materialized from, counts acquired references
//! (a program that leaks one is reported, and the count is kept so tests can
//! assert there is none), tracks RCU nesting and open iterators, and turns
//! the memory-releasing calls into host actions that set
//! `oc->bpf_memory_freed`.

mod generic;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bpfoom_abi::kfuncs::{self, KfuncId as K};
use bpfoom_abi::{stats, BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK, BPF_PSI_FULL};
use bpfoom_vm::{CallError, Env, ObjId};

use crate::host::{
    ancestors, is_within, oom_badness, subtree_post, subtree_pre, CgroupId, Host, HostError, Pid,
    EBUSY, EINVAL, ENOENT, ENOSPC, EPERM, ESRCH, OOM_SCORE_ADJ_MIN,
};
use crate::objects::{put, Key, Layout, Objects};
use crate::record::{Constraint, Record};
use crate::state::{OomRequest, State, Trigger};
use crate::EngineConfig;

/// The OOM event a handler runs for.
pub(crate) struct OomRun {
    pub oc: ObjId,
    pub oc_addr: u64,
    pub scope: Option<CgroupId>,
}

/// How `bpf_out_of_memory` raises an OOM event from inside a PSI program:
/// the engine passes the handler chain in as this callback (true when the
/// event made progress), so the kfuncs need not know the chain, which in
/// turn runs its handlers through [`Kctx`].
pub(crate) type Reenter<'a, H> = dyn FnMut(&mut H, &mut State, &OomRequest) -> bool + 'a;

/// What a PSI program may reach.
pub(crate) struct PsiRun<'a, H: ?Sized> {
    pub psi_addr: u64,
    pub triggers: &'a mut Vec<Trigger>,
    pub reenter: &'a mut Reenter<'a, H>,
}

/// State of one program run.
pub(crate) struct Kctx<'a, H: Host + ?Sized> {
    pub host: &'a mut H,
    pub st: &'a mut State,
    pub cfg: &'a EngineConfig,
    pub policy: &'a str,
    pub attach: CgroupId,
    pub reserve: &'a mut u64,
    pub objs: Objects,
    pub oom: Option<OomRun>,
    pub psi: Option<PsiRun<'a, H>>,
    refs: HashMap<Key, i64>,
    rcu: i32,
    iters: HashMap<u64, VecDeque<Key>>,
    next_iter: u64,
    started: Instant,
}

fn errno(e: i32) -> u64 {
    (-i64::from(e)) as u64
}

fn bad(msg: impl Into<String>) -> CallError {
    CallError::BadArgument(msg.into())
}

/// Iterator ids start high so a zeroed slot never looks like a live iterator.
const ITER_BASE: u64 = 0x1_0000;

impl<'a, H: Host + ?Sized> Kctx<'a, H> {
    pub(crate) fn new(
        host: &'a mut H,
        st: &'a mut State,
        cfg: &'a EngineConfig,
        policy: &'a str,
        attach: CgroupId,
        reserve: &'a mut u64,
    ) -> Self {
        Self {
            host,
            st,
            cfg,
            policy,
            attach,
            reserve,
            objs: Objects::default(),
            oom: None,
            psi: None,
            refs: HashMap::new(),
            rcu: 0,
            iters: HashMap::new(),
            next_iter: ITER_BASE,
            started: Instant::now(),
        }
    }

    /// Stops a run at its first kfunc call past the wall-clock limit (the
    /// VM's instruction budget bounds a loop without calls; a loop of calls
    /// that read cgroupfs can cost microseconds per instruction, so without
    /// this a run could outlast its limit by seconds while an OOM waits).
    /// Calls that only give back what the run holds stay allowed, so the
    /// program can still release its references on the way out.
    fn check_time_limit(&self, name: &str) -> Result<(), CallError> {
        let releases = name.ends_with("_release")
            || name.ends_with("_destroy")
            || name == "bpf_put_mem_cgroup"
            || name == "bpf_rcu_read_unlock";
        let elapsed = self.started.elapsed();
        if releases || elapsed <= self.cfg.time_limit {
            return Ok(());
        }
        Err(bad(format!(
            "wall-clock limit of {:?} exceeded ({elapsed:?}) at a call to {name}",
            self.cfg.time_limit
        )))
    }

    fn by(&self) -> String {
        format!("policy:{}", self.policy)
    }

    fn emit(&mut self, r: Record) {
        self.st.emit(&mut *self.host, r);
    }

    /// Materializes a host object in this VM and returns its address.
    pub(crate) fn addr_of(&mut self, key: Key, env: &mut Env) -> u64 {
        self.objs.ensure(key, &*self.host, env.memory())
    }

    fn key(&self, addr: u64) -> Result<Key, CallError> {
        self.objs
            .key_at(addr)
            .ok_or_else(|| bad(format!("{addr:#x} is not a kernel object")))
    }

    fn css_arg(&self, addr: u64) -> Result<CgroupId, CallError> {
        match self.key(addr)? {
            Key::Cgroup(c) | Key::Memcg(c) => Ok(c),
            k => Err(bad(format!("{k:?} is not a cgroup_subsys_state"))),
        }
    }

    fn memcg_arg(&self, addr: u64) -> Result<CgroupId, CallError> {
        match self.key(addr)? {
            Key::Memcg(c) => Ok(c),
            k => Err(bad(format!("{k:?} is not a mem_cgroup"))),
        }
    }

    fn cgroup_arg(&self, addr: u64) -> Result<CgroupId, CallError> {
        match self.key(addr)? {
            Key::Cgroup(c) => Ok(c),
            k => Err(bad(format!("{k:?} is not a cgroup"))),
        }
    }

    fn task_arg(&self, addr: u64) -> Result<Pid, CallError> {
        match self.key(addr)? {
            Key::Task(p) => Ok(p),
            k => Err(bad(format!("{k:?} is not a task_struct"))),
        }
    }

    fn oc_arg(&self, addr: u64) -> Result<&OomRun, CallError> {
        self.oom
            .as_ref()
            .filter(|o| o.oc_addr == addr)
            .ok_or_else(|| bad("not this handler's oom_control"))
    }

    fn acquire(&mut self, key: Key, env: &mut Env) -> u64 {
        *self.refs.entry(key).or_default() += 1;
        self.addr_of(key, env)
    }

    fn release(&mut self, addr: u64) -> Result<u64, CallError> {
        let key = self.key(addr)?;
        match self.refs.get_mut(&key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Ok(0)
            }
            _ => Err(bad(format!("release of {key:?}, which holds no reference"))),
        }
    }

    /// Turns what the program wrote since the last call (`bpf_printk`
    /// text, submitted ring-buffer records) into records. Called before
    /// every helper that writes either and every kfunc (kfuncs emit records
    /// of their own), and after the run, so at most one kind is pending at
    /// each call and the records keep the program's order.
    pub(crate) fn flush_output(&mut self, env: &mut Env) {
        self.flush_trace(env);
        for idx in 0..env.maps().len() {
            if env.maps()[idx].ringbuf_len() == 0 {
                continue;
            }
            let Some(map) = env.map_mut(idx) else {
                continue;
            };
            let name = map.spec().name.clone();
            while let Some(rec) = map.ringbuf_pop() {
                let data = rec.iter().map(|b| format!("{b:02x}")).collect();
                let policy = self.policy.to_string();
                self.emit(Record::Ringbuf {
                    policy,
                    map: name.clone(),
                    data,
                });
            }
        }
    }

    /// Turns pending `bpf_printk` output into a record.
    pub(crate) fn flush_trace(&mut self, env: &mut Env) {
        let text = env.take_trace();
        let message = text.trim_end_matches('\n');
        if !message.is_empty() {
            let policy = self.policy.to_string();
            self.emit(Record::Printk {
                policy,
                message: message.to_string(),
            });
        }
    }

    /// Marks `oc->bpf_memory_freed` in the handler's oom_control.
    fn set_freed(&mut self, env: &mut Env) {
        if let Some(o) = &self.oom {
            let off = Layout::get().off("oom_control", "bpf_memory_freed");
            if let Some(b) = env.memory().object_mut(o.oc) {
                put(b, off, 1, 1);
            }
        }
    }

    /// Kills one process on behalf of the policy (or the kernel model).
    fn kill_one(&mut self, pid: Pid, message: &str) -> Result<(), HostError> {
        let by = self.by();
        kill_task(&mut *self.host, self.st, pid, &by, message)
    }

    /// The end of a run: drops objects, reports leaks. Returns a problem to
    /// report, if any.
    pub(crate) fn finish(&mut self, env: &mut Env) -> Option<String> {
        self.objs.clear(env.memory());
        let leaked: i64 = self.refs.values().sum();
        let mut problems = Vec::new();
        if leaked > 0 {
            self.st.leaked_refs += leaked as u64;
            problems.push(format!("{leaked} acquired reference(s) not released"));
        }
        if self.rcu != 0 {
            problems.push(format!("RCU read lock depth {} at exit", self.rcu));
        }
        if !self.iters.is_empty() {
            self.st.leaked_refs += self.iters.len() as u64;
            problems.push(format!("{} iterator(s) not destroyed", self.iters.len()));
        }
        self.refs.clear();
        self.iters.clear();
        self.rcu = 0;
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    fn stat(
        &mut self,
        table: &'static [stats::StatIndex],
        memcg: u64,
        idx: u64,
        get: fn(&H, CgroupId, &stats::StatIndex) -> Option<u64>,
    ) -> Result<u64, CallError> {
        let cg = self.memcg_arg(memcg)?;
        // The index is a C int: only the low 32 bits are meaningful.
        let Some(item) = stats::by_value(table, idx as u32) else {
            return Ok(u64::MAX);
        };
        Ok(get(&*self.host, cg, item).unwrap_or(0))
    }

    fn iter_slot(&self, it: u64, env: &mut Env) -> Result<u64, CallError> {
        Ok(env.memory().read_u64(it)?)
    }

    fn iter_new(
        &mut self,
        it: u64,
        items: Option<Vec<Key>>,
        env: &mut Env,
    ) -> Result<u64, CallError> {
        // A failed constructor still leaves a slot the program must destroy;
        // an empty iterator gives it the kernel's "next returns NULL".
        let id = self.next_iter;
        self.next_iter += 1;
        env.memory().write_u64(it, id)?;
        let ok = items.is_some();
        self.iters.insert(id, items.unwrap_or_default().into());
        Ok(if ok { 0 } else { errno(EINVAL) })
    }

    fn iter_next(&mut self, it: u64, env: &mut Env) -> Result<u64, CallError> {
        let id = self.iter_slot(it, env)?;
        let next = self
            .iters
            .get_mut(&id)
            .ok_or_else(|| bad("iterator used after destroy"))?
            .pop_front();
        Ok(match next {
            Some(k) => self.addr_of(k, env),
            None => 0,
        })
    }

    fn iter_destroy(&mut self, it: u64, env: &mut Env) -> Result<u64, CallError> {
        let id = self.iter_slot(it, env)?;
        self.iters.remove(&id);
        Ok(0)
    }
}

/// Kills a process for `by`, honouring the exemptions, and records it.
/// Killing a victim that is still exiting only lets the reaper free it.
pub(crate) fn kill_task<H: Host + ?Sized>(
    host: &mut H,
    st: &mut State,
    pid: Pid,
    by: &str,
    message: &str,
) -> Result<(), HostError> {
    let task = host
        .task(pid)
        .ok_or_else(|| HostError::new(ESRCH, format!("no process {pid}")))?;
    if let Err(e) = crate::host::killable(&task, host.self_pid()) {
        st.emit(
            host,
            Record::KillRefused {
                pid,
                by: by.into(),
                reason: e.reason.clone(),
            },
        );
        return Err(e);
    }
    if st.victims.contains_key(&pid) {
        // A victim that holds nothing any more (its memory reaped, as the
        // kernel's MMF_OOM_SKIP marks it) cannot free anything by being
        // killed again: not a success, or a policy that keeps choosing a
        // victim that cannot exit would hold the OOM paused for as long as
        // that victim lives (issue 13, fault 3).
        if task.rss_pages + task.swap_pages == 0 {
            return Err(HostError::new(
                ESRCH,
                format!("pid {pid} is an OOM victim with nothing left to free"),
            ));
        }
        host.reap(pid);
        return Ok(());
    }
    host.kill(pid)?;
    st.victims.insert(pid, task.cgroup);
    let cgroup = host.path(task.cgroup).unwrap_or_default();
    st.emit(
        host,
        Record::Kill {
            pid,
            comm: task.comm,
            cgroup,
            by: by.into(),
            message: message.into(),
        },
    );
    Ok(())
}

/// Kills every process of a cgroup subtree, as `memory.oom.group` does:
/// tasks with oom_score_adj -1000 and unkillable ones are spared. Returns
/// how many died.
pub(crate) fn kill_group<H: Host + ?Sized>(
    host: &mut H,
    st: &mut State,
    cg: CgroupId,
    by: &str,
    message: &str,
) -> usize {
    let mut members = Vec::new();
    let mut all_killable = true;
    for c in subtree_pre(&*host, cg) {
        for pid in host.tasks(c) {
            let Some(t) = host.task(pid) else { continue };
            // As memory.oom.group: OOM-protected tasks are spared.
            if t.oom_score_adj == OOM_SCORE_ADJ_MIN
                || crate::host::killable(&t, host.self_pid()).is_err()
            {
                all_killable = false;
                continue;
            }
            members.push((pid, t));
        }
    }
    // Nobody to spare: one atomic whole-cgroup kill where the host has one,
    // then the same victim records as process by process.
    let pids: Vec<Pid> = members.iter().map(|(p, _)| *p).collect();
    if all_killable && !pids.is_empty() && host.kill_cgroup(cg, &pids).is_ok() {
        for (pid, t) in &members {
            if st.victims.insert(*pid, t.cgroup).is_some() {
                continue;
            }
            let cgroup = host.path(t.cgroup).unwrap_or_default();
            st.emit(
                host,
                Record::Kill {
                    pid: *pid,
                    comm: t.comm.clone(),
                    cgroup,
                    by: by.into(),
                    message: message.into(),
                },
            );
        }
        return members.len();
    }
    members
        .into_iter()
        .filter(|(pid, _)| kill_task(host, st, *pid, by, message).is_ok())
        .count()
}

impl<H: Host + ?Sized> bpfoom_vm::CallHandler for Kctx<'_, H> {
    fn helper(&mut self, id: u32, _a: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        // Each bpf_trace_printk call is one trace event, as in the kernel:
        // flush the previous one before the VM formats the next; a ring
        // buffer submit likewise, so printk lines and ring records
        // interleave as the program wrote them.
        {
            use bpfoom_vm::helpers::ids::{RINGBUF_OUTPUT, RINGBUF_SUBMIT, TRACE_PRINTK};
            if matches!(id, TRACE_PRINTK | RINGBUF_SUBMIT | RINGBUF_OUTPUT) {
                self.flush_output(env);
            }
        }
        use bpfoom_vm::helpers::ids::{GET_CURRENT_TASK_BTF, KTIME_GET_BOOT_NS, KTIME_GET_NS};
        match id {
            GET_CURRENT_TASK_BTF => Ok(self.current_task(env)),
            // The host's clock, not the VM's: simulated time in the simulator.
            KTIME_GET_NS | KTIME_GET_BOOT_NS => Ok(self.host.ktime_ns()),
            _ => Err(CallError::Unsupported),
        }
    }

    fn kfunc(&mut self, id: u32, a: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        let k = kfuncs::by_id(id).ok_or(CallError::Unsupported)?;
        // The kfunc may emit records (a kill, a raised limit): what the
        // program wrote before it comes first.
        self.flush_output(env);
        self.check_time_limit(k.name)?;
        // Exhaustive on purpose: a kfunc added to the ABI table does not
        // compile until it is implemented here.
        match k.kind {
            K::bpf_oom_kill_process => {
                let scope = self.oc_arg(a[0])?.scope;
                let pid = self.task_arg(a[1])?;
                let msg = env.memory().read_cstr(a[2], 256)?;
                let Some(task) = self.host.task(pid) else {
                    return Ok(errno(ESRCH));
                };
                let group = crate::host::oom_group_of(&*self.host, task.cgroup, scope);
                let res = match group {
                    Some(g)
                        if !self.st.victims.contains_key(&pid)
                            && crate::host::killable(&task, self.host.self_pid()).is_ok() =>
                    {
                        let by = self.by();
                        match kill_group(&mut *self.host, self.st, g, &by, &msg) {
                            0 => Err(HostError::new(ESRCH, "nothing killable in the OOM group")),
                            _ => Ok(()),
                        }
                    }
                    _ => self.kill_one(pid, &msg),
                };
                match res {
                    Ok(()) => {
                        self.set_freed(env);
                        Ok(0)
                    }
                    Err(e) => Ok(errno(e.errno)),
                }
            }
            K::bpf_task_is_oom_victim => {
                let pid = self.task_arg(a[0])?;
                Ok(u64::from(
                    self.st.victims.contains_key(&pid) && self.host.task(pid).is_some(),
                ))
            }
            K::bpf_oom_kill_cgroup => {
                self.oc_arg(a[0])?;
                let cg = self.cgroup_arg(a[1])?;
                let msg = env.memory().read_cstr(a[2], 256)?;
                let by = self.by();
                if kill_group(&mut *self.host, self.st, cg, &by, &msg) == 0 {
                    return Ok(errno(ESRCH));
                }
                self.set_freed(env);
                Ok(0)
            }
            K::bpf_mem_cgroup_raise_limit => {
                self.oc_arg(a[0])?;
                let cg = self.memcg_arg(a[1])?;
                let bytes = a[2];
                if !is_within(&*self.host, cg, self.attach) {
                    return Ok(errno(EPERM));
                }
                let Some(limit) = self.host.memcg(cg).and_then(|m| m.limit) else {
                    return Ok(errno(EINVAL));
                };
                if bytes == 0 {
                    return Ok(errno(EINVAL));
                }
                if bytes > *self.reserve {
                    return Ok(errno(ENOSPC));
                }
                let new = limit.saturating_add(bytes);
                if let Err(e) = self.host.set_limit(cg, new) {
                    return Ok(errno(e.errno));
                }
                *self.reserve -= bytes;
                let cgroup = self.host.path(cg).unwrap_or_default();
                let by = self.by();
                self.emit(Record::LimitRaised {
                    cgroup,
                    bytes,
                    limit: new,
                    by,
                });
                self.set_freed(env);
                Ok(0)
            }
            K::bpf_oom_badness => {
                let pid = self.task_arg(a[0])?;
                Ok(self
                    .host
                    .task(pid)
                    .and_then(|t| oom_badness(&t, a[1]))
                    .unwrap_or(i64::MIN) as u64)
            }
            K::bpf_get_root_mem_cgroup => {
                let root = self.host.root();
                Ok(self.acquire(Key::Memcg(root), env))
            }
            K::bpf_get_mem_cgroup => {
                let cg = self.css_arg(a[0])?;
                if self.host.memcg(cg).is_none() {
                    return Ok(0);
                }
                Ok(self.acquire(Key::Memcg(cg), env))
            }
            K::bpf_put_mem_cgroup | K::bpf_cgroup_release | K::bpf_task_release => {
                self.release(a[0])
            }
            K::bpf_mem_cgroup_usage => {
                let cg = self.memcg_arg(a[0])?;
                Ok(self.host.memcg(cg).map_or(0, |m| m.usage))
            }
            K::bpf_mem_cgroup_page_state => {
                self.stat(stats::PAGE_STATE, a[0], a[1], |h, c, i| h.page_state(c, i))
            }
            K::bpf_mem_cgroup_vm_events => {
                self.stat(stats::VM_EVENTS, a[0], a[1], |h, c, i| h.vm_event(c, i))
            }
            K::bpf_mem_cgroup_memory_events => {
                self.stat(stats::MEMORY_EVENTS, a[0], a[1], |h, c, i| {
                    h.memory_event(c, i)
                })
            }
            K::bpf_mem_cgroup_flush_stats => {
                let cg = self.memcg_arg(a[0])?;
                self.host.flush_stats(cg);
                Ok(0)
            }
            K::bpf_cgroup_from_id => {
                let cg = a[0];
                if self.host.path(cg).is_none() {
                    return Ok(0);
                }
                Ok(self.acquire(Key::Cgroup(cg), env))
            }
            K::bpf_task_acquire => {
                let pid = self.task_arg(a[0])?;
                if self.host.task(pid).is_none() {
                    return Ok(0);
                }
                Ok(self.acquire(Key::Task(pid), env))
            }
            K::bpf_task_from_pid => {
                let pid = a[0] as u32 as i32;
                if self.host.task(pid).is_none() {
                    return Ok(0);
                }
                Ok(self.acquire(Key::Task(pid), env))
            }
            K::bpf_rcu_read_lock => {
                self.rcu += 1;
                Ok(0)
            }
            K::bpf_rcu_read_unlock => {
                if self.rcu == 0 {
                    return Err(bad("bpf_rcu_read_unlock without a lock"));
                }
                self.rcu -= 1;
                Ok(0)
            }
            K::bpf_iter_css_new => {
                let start = self.key(a[1])?;
                let (cg, memcg) = match start {
                    Key::Cgroup(c) => (c, false),
                    Key::Memcg(c) => (c, true),
                    k => return Err(bad(format!("{k:?} is not a css"))),
                };
                let order = match a[2] as u32 {
                    1 => Some(vec![cg]),
                    2 => Some(subtree_pre(&*self.host, cg)),
                    3 => Some(subtree_post(&*self.host, cg)),
                    4 => Some(ancestors(&*self.host, cg)),
                    _ => None,
                };
                let items = order.map(|v| {
                    v.into_iter()
                        .map(|c| if memcg { Key::Memcg(c) } else { Key::Cgroup(c) })
                        .collect()
                });
                self.iter_new(a[0], items, env)
            }
            K::bpf_iter_css_task_new => {
                let cg = self.css_arg(a[1])?;
                // CSS_TASK_ITER_PROCS | CSS_TASK_ITER_THREADED; bpfoom lists processes.
                let items = (a[2] as u32 & !3 == 0)
                    .then(|| self.host.tasks(cg).into_iter().map(Key::Task).collect());
                self.iter_new(a[0], items, env)
            }
            K::bpf_iter_css_next | K::bpf_iter_css_task_next | K::bpf_iter_task_next => {
                self.iter_next(a[0], env)
            }
            K::bpf_iter_css_destroy | K::bpf_iter_css_task_destroy | K::bpf_iter_task_destroy => {
                self.iter_destroy(a[0], env)
            }
            K::bpf_psi_create_trigger => self.psi_create_trigger(a),
            K::bpf_out_of_memory => self.out_of_memory(a, env),
            // The generic kfuncs (kfuncs/generic.rs).
            K::bpf_iter_num_new => Self::iter_num_new(a, env),
            K::bpf_iter_num_next => Self::iter_num_next(a[0], env),
            K::bpf_iter_num_destroy => Self::iter_num_destroy(a[0], env),
            K::bpf_iter_task_new => self.iter_task_new(a, env),
            K::bpf_task_under_cgroup => self.task_under_cgroup(a),
            K::bpf_cgroup_ancestor => self.cgroup_ancestor(a, env),
        }
    }
}

impl<H: Host + ?Sized> Kctx<'_, H> {
    fn psi_create_trigger(&mut self, a: [u64; 5]) -> Result<u64, CallError> {
        let psi_addr = self.psi.as_ref().map(|p| p.psi_addr);
        if psi_addr != Some(a[0]) {
            return Err(bad("not this program's bpf_psi"));
        }
        let cg = if a[1] == 0 { self.host.root() } else { a[1] };
        if self.host.path(cg).is_none() {
            return Ok(errno(ENOENT));
        }
        let res = a[2] as u32;
        let full = res & BPF_PSI_FULL != 0;
        let resource = res & !BPF_PSI_FULL;
        let (threshold_us, window_us) = (a[3] as u32 as u64, a[4] as u32 as u64);
        // The kernel's limits for unprivileged-style triggers: 500ms..10s
        // windows, a threshold within the window.
        if resource > 2
            || !(500_000..=10_000_000).contains(&window_us)
            || threshold_us == 0
            || threshold_us > window_us
        {
            return Ok(errno(EINVAL));
        }
        let cgroup = self.host.path(cg).unwrap_or_default();
        let policy = self.policy.to_string();
        self.emit(Record::PsiTrigger {
            policy,
            cgroup,
            kind: if full { "full" } else { "some" }.into(),
            threshold_us,
            window_us,
        });
        if let Some(p) = self.psi.as_mut() {
            p.triggers.push(Trigger::new(
                cg,
                a[1],
                resource,
                full,
                threshold_us,
                window_us,
            ));
        }
        Ok(0)
    }

    fn out_of_memory(&mut self, a: [u64; 5], env: &mut Env) -> Result<u64, CallError> {
        if self.psi.is_none() {
            return Err(bad("bpf_out_of_memory outside a bpf_psi_ops program"));
        }
        let memcg = if a[0] == 0 {
            None
        } else {
            Some(self.memcg_arg(a[0])?)
        };
        let order = a[1] as u32 as i32;
        if !(0..=10).contains(&order) || a[2] & !BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK != 0 {
            return Ok(errno(EINVAL));
        }
        // A handler past its time limit may not start another OOM event:
        // each one runs the whole chain.
        if self.started.elapsed() > self.cfg.time_limit {
            return Ok(errno(EBUSY));
        }
        let text = if a[3] == 0 {
            None
        } else {
            Some(env.memory().read_cstr(a[3], 256)?)
        };
        let req = OomRequest {
            memcg,
            constraint: Constraint::Psi,
            text,
            order,
        };
        // Keep the policy's log lines ahead of the OOM they lead to.
        self.flush_output(env);
        let Some(psi) = self.psi.as_mut() else {
            return Ok(0);
        };
        let progress = (psi.reenter)(&mut *self.host, self.st, &req);
        Ok(u64::from(progress))
    }
}
