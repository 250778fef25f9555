//! The semantics of BPF OOM policies, once, over a [`Host`] trait.
//!
//! An [`Engine`] holds `bpf_oom_ops` and `bpf_psi_ops` instances attached to
//! cgroups and runs them as the proposed kernel interface does:
//!
//! - **Instances.** [`Policy::load`] picks a struct_ops instance out of a
//!   loaded object and runs a [`PolicyCheck`] (the verifier) over it; only a
//!   checked policy can be [attached](Engine::attach). At most one instance
//!   of each kind per cgroup; attaching to the root makes it system-wide.
//! - **The chain.** An OOM in memcg M runs the handler attached at M, then
//!   at each ancestor up to the root (a global OOM starts at the root).
//!   Before each handler `oc->bpf_handler_name` is set and
//!   `oc->bpf_memory_freed` cleared; a handler succeeds only when it returns
//!   PROCESSED (1) *and* a memory-releasing kfunc set the flag. If none
//!   succeeds, the host's kernel OOM killer runs ([`Host::kernel_oom`]).
//!   The handler's second argument is the instance's attach cgroup, or, for
//!   a program written for upstream v3's `(oc, struct bpf_struct_ops_link
//!   *link)` (the loader's [`bpfoom_obj::Form::V3Link`]), a read-only link
//!   whose `cgroup` is that attach cgroup.
//! - **BACKOFF (2).** Honoured without cost while an OOM victim in scope is
//!   still exiting (bounded by [`EngineConfig::max_victim_waits`]); otherwise
//!   it spends one unit of the instance's atomic budget
//!   ([`AttachOptions::backoff_budget`], refilled whenever memory is
//!   actually freed). At zero it counts as FAILED and the chain goes on. A
//!   honoured BACKOFF waits up to [`AttachOptions::backoff_timeout`] for
//!   memory to be released, then re-runs the chain unless the OOM is gone.
//! - **Limits.** Every run has an instruction budget and a wall-clock limit;
//!   exceeding either, or faulting, is FAILED with the reason recorded.
//! - **PSI.** A `bpf_psi_ops` instance's `init` runs at attach and creates
//!   triggers; [`Engine::psi_stall`] feeds memory stall time, a trigger that
//!   crosses its threshold runs `handle_psi_event`, whose
//!   `bpf_out_of_memory` raises an OOM through the same chain.
//! - **Records.** Every step yields a [`Record`] (serde, JSON field names
//!   fixed), handed to [`Host::record`] as it happens.

mod chain;
pub mod dump;
mod engine;
pub mod host;
mod kfuncs;
pub mod mapvalue;
mod objects;
pub mod record;
pub mod size;
mod state;
mod verify;

use std::collections::BTreeMap;
use std::time::Duration;

use bpfoom_abi::{kfuncs as abi_kfuncs, struct_ops, Scope};
use bpfoom_obj::{BtfKind, Object, StructOpsInstance};

pub use chain::{OomOutcome, RunFailure};
pub use dump::{DumpEntry, InstanceMaps, MapDump};
pub use engine::Engine;
pub use host::{CgroupId, Host, HostError, KernelOom, MemcgInfo, Pid, TaskInfo};
pub use mapvalue::{CgroupLookupError, CgroupResolver, MapValue, MapValueError};
pub use record::{Constraint, Record, ResolvedBy, Verdict};
pub use size::{parse_size, Size, SizeError};
pub use verify::Verifier;

/// Engine-wide limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Instruction budget of one handler run: the VM stops a run at the
    /// first backward jump or call after it executed more instructions.
    pub insn_budget: u64,
    /// Wall-clock limit of one handler run.
    pub time_limit: Duration,
    /// How many times one OOM event may honour a BACKOFF because a victim is
    /// still exiting, before BACKOFF has to spend budget.
    pub max_victim_waits: u32,
    /// What runs the policies' programs.
    pub vm: VmBackend,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            insn_budget: 1_000_000,
            time_limit: Duration::from_millis(250),
            max_victim_waits: 8,
            vm: VmBackend::default(),
        }
    }
}

/// What executes a policy's programs.
///
/// The default is the Cranelift JIT when this crate is built with the `jit`
/// feature (the `bpfoom` binary is), the interpreter otherwise. A program the
/// JIT refuses (it has no `bpf_loop` callbacks, for one) runs on the
/// interpreter instead: the two have the same semantics, budget and
/// instruction counts, so the choice changes speed only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmBackend {
    /// Native code from Cranelift; the interpreter where the JIT is not
    /// built in or refuses a program.
    Jit,
    /// bpfoom-vm's threaded interpreter for every program.
    Interpreter,
}

impl VmBackend {
    /// Both backends, for tests that must hold on each.
    pub const ALL: [VmBackend; 2] = [VmBackend::Jit, VmBackend::Interpreter];

    /// Whether this build has the JIT (cargo feature `jit`).
    pub const fn jit_built() -> bool {
        cfg!(feature = "jit")
    }

    /// The name used in configs and records (`"jit"`, `"interpreter"`).
    pub const fn name(self) -> &'static str {
        match self {
            VmBackend::Jit => "jit",
            VmBackend::Interpreter => "interpreter",
        }
    }
}

impl Default for VmBackend {
    fn default() -> Self {
        if Self::jit_built() {
            VmBackend::Jit
        } else {
            VmBackend::Interpreter
        }
    }
}

/// A [`VmBackend`] name that is neither `jit` nor `interpreter`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine {0:?} (expected \"jit\" or \"interpreter\")")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for VmBackend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, UnknownBackend> {
        match s {
            "jit" => Ok(VmBackend::Jit),
            "interpreter" => Ok(VmBackend::Interpreter),
            other => Err(UnknownBackend(other.into())),
        }
    }
}

/// How a PSI policy's `init` failed ([`EngineError::InitFailed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitFailure {
    /// It returned this non-zero value (a negative errno, usually).
    #[error("init returned {0}")]
    Returned(i32),
    /// It did not finish: a fault, the instruction budget or the time
    /// limit, as the run's record says.
    #[error(transparent)]
    Stopped(RunFailure),
}

/// Per-instance options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachOptions {
    /// BACKOFF returns honoured without an exiting victim, before BACKOFF
    /// counts as FAILED.
    pub backoff_budget: u32,
    /// How long a honoured BACKOFF waits for memory to be released.
    pub backoff_timeout: Duration,
    /// Bytes `bpf_mem_cgroup_raise_limit` may hand out in total.
    pub limit_reserve: u64,
}

impl Default for AttachOptions {
    fn default() -> Self {
        Self {
            backoff_budget: 3,
            backoff_timeout: Duration::from_millis(100),
            limit_reserve: 0,
        }
    }
}

/// The two struct_ops kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpsKind {
    /// `struct bpf_oom_ops`.
    Oom,
    /// `struct bpf_psi_ops`.
    Psi,
}

impl OpsKind {
    /// The C struct name.
    pub fn struct_name(self) -> &'static str {
        match self {
            OpsKind::Oom => "bpf_oom_ops",
            OpsKind::Psi => "bpf_psi_ops",
        }
    }
}

/// An attached instance, for status displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Instance name.
    pub name: String,
    /// Kind.
    pub kind: OpsKind,
    /// Attach point.
    pub cgroup: CgroupId,
    /// BACKOFF budget left.
    pub backoff_budget_left: u32,
    /// Limit reserve left, bytes.
    pub limit_reserve_left: u64,
}

/// Everything that can stop a policy from loading or attaching.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The object holds no `bpf_oom_ops` or `bpf_psi_ops` instance.
    #[error("the object has no bpf_oom_ops or bpf_psi_ops instance")]
    NoInstance,
    /// No instance has the name asked for.
    #[error("no struct_ops instance named {name}")]
    NoInstanceNamed {
        /// The name asked for.
        name: String,
    },
    /// Several instances and none named.
    #[error("the object has {count} struct_ops instances; name one")]
    ManyInstances {
        /// How many there are.
        count: usize,
    },
    /// A mandatory callback is missing.
    #[error("policy {policy}: mandatory callback {callback} is not set")]
    MissingCallback {
        /// Instance name.
        policy: String,
        /// Member name.
        callback: &'static str,
    },
    /// The policy check (verifier) rejected a program.
    #[error("policy {policy} rejected: {source}")]
    Rejected {
        /// Instance name.
        policy: String,
        /// The checker's explanation.
        #[source]
        source: CheckError,
    },
    /// The VM could not create the policy's maps or fill them.
    #[error("policy {policy}: {source}")]
    Maps {
        /// Instance name.
        policy: String,
        /// What failed.
        #[source]
        source: bpfoom_vm::MapError,
    },
    /// The VM could not load one of the policy's programs.
    #[error("policy {policy}: {program}: {source}")]
    Load {
        /// Instance name.
        policy: String,
        /// Program name.
        program: String,
        /// What failed.
        #[source]
        source: bpfoom_vm::LoadError,
    },
    /// A map the policy was given entries for does not exist.
    #[error("policy {policy}: no map {map}")]
    NoMap {
        /// Instance name.
        policy: String,
        /// The map's name or index.
        map: String,
    },
    /// Another instance already holds this cgroup.
    #[error("cannot attach {policy} to {cgroup}: {holder} is already attached there")]
    AlreadyAttached {
        /// The cgroup.
        cgroup: String,
        /// The instance holding it.
        holder: String,
        /// The instance that was refused.
        policy: String,
    },
    /// The policy has not passed its check (or changed since).
    #[error("policy {0} has not passed the verifier; it cannot attach")]
    NotChecked(String),
    /// No such cgroup.
    #[error("no cgroup {0}")]
    NoSuchCgroup(String),
    /// Nothing is attached there.
    #[error("nothing attached to {0}")]
    NotAttached(String),
    /// Instances are attached there, but none of the name asked for.
    #[error("no instance named {instance} at {cgroup} (attached there: {})", attached.join(", "))]
    NoInstanceAt {
        /// The instance name asked for.
        instance: String,
        /// The cgroup's path.
        cgroup: String,
        /// The names of the instances attached there.
        attached: Vec<String>,
    },
    /// A PSI policy's `init` failed.
    #[error("policy {policy}: init failed: {why}")]
    InitFailed {
        /// Instance name.
        policy: String,
        /// What `init` did.
        #[source]
        why: InitFailure,
    },
    /// A global variable to set does not exist.
    #[error("policy {policy}: no global variable {var} in .rodata/.data/.bss")]
    NoGlobal {
        /// Instance name.
        policy: String,
        /// Variable name.
        var: String,
    },
    /// A map entry or global value does not fit its BTF type.
    #[error("policy {policy}: {target} {source}")]
    Value {
        /// Instance name.
        policy: String,
        /// `map NAME` or `global` (the source's path names the variable).
        target: String,
        /// What does not fit, naming the field.
        #[source]
        source: Box<MapValueError>,
    },
}

/// What a passed check learned about the programs that the VM needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Per program (index into the object's programs): slot indexes of the
    /// loads through kernel-object pointers (the kernel's `BPF_PROBE_MEM`),
    /// which read 0 instead of faulting (see `bpfoom_vm::LoadOptions`).
    pub probe_mem: BTreeMap<usize, Vec<usize>>,
}

/// Why a [`PolicyCheck`] rejected a policy. The messages are the ones users
/// see after `policy NAME rejected: `.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// The instance's struct_ops type is not one bpfoom implements.
    #[error("unknown struct_ops type {type_name}")]
    UnknownOps {
        /// The type the object names.
        type_name: String,
    },
    /// A mandatory callback is not set.
    #[error("mandatory callback {callback} is not set")]
    MissingCallback {
        /// Member name.
        callback: &'static str,
    },
    /// A callback names a program the object does not have.
    #[error("{member}: no program {program}")]
    NoProgram {
        /// Member name.
        member: String,
        /// The program index it names.
        program: usize,
    },
    /// A program calls a kfunc the ABI table does not have.
    #[error("{program}: unknown kfunc {kfunc}")]
    UnknownKfunc {
        /// Program name.
        program: String,
        /// Kfunc name.
        kfunc: String,
    },
    /// A program calls a kfunc of the other struct_ops kind.
    #[error("{program}: {kfunc} is not allowed in {ops} programs")]
    WrongScope {
        /// Program name.
        program: String,
        /// Kfunc name.
        kfunc: &'static str,
        /// The struct_ops type of the program.
        ops: &'static str,
    },
    /// A non-sleepable program calls a sleepable kfunc.
    #[error("{program}: sleepable kfunc {kfunc} in a non-sleepable program")]
    Sleepable {
        /// Program name.
        program: String,
        /// Kfunc name.
        kfunc: &'static str,
    },
    /// The verifier rejected a program (its message: file, line, instruction).
    #[error(transparent)]
    Verifier(#[from] bpfoom_verifier::VerifyError),
    /// A check written by an embedder rejected the policy for its own reason.
    #[error("{0}")]
    Custom(String),
}

/// The gate a policy passes before it can attach: the verifier.
pub trait PolicyCheck {
    /// Checks every program `instance` uses; `Err` explains the rejection.
    fn check(&self, object: &Object, instance: &StructOpsInstance) -> Result<(), CheckError>;

    /// [`PolicyCheck::check`], plus what the check learned. The default
    /// reports nothing (every load keeps the strict check).
    fn check_report(
        &self,
        object: &Object,
        instance: &StructOpsInstance,
    ) -> Result<CheckReport, CheckError> {
        self.check(object, instance)
            .map(|()| CheckReport::default())
    }
}

impl<F: Fn(&Object, &StructOpsInstance) -> Result<(), CheckError>> PolicyCheck for F {
    fn check(&self, object: &Object, instance: &StructOpsInstance) -> Result<(), CheckError> {
        self(object, instance)
    }
}

/// The checks the loader's output alone allows, without a verifier: the
/// struct_ops type is known, mandatory callbacks are set, and each program
/// calls only kfuncs of its kind (no PSI-only kfunc in an OOM handler) and
/// no sleepable kfunc from a non-sleepable program. This is NOT memory
/// safety: use it together with the verifier.
pub struct ContractCheck;

impl PolicyCheck for ContractCheck {
    fn check(&self, object: &Object, instance: &StructOpsInstance) -> Result<(), CheckError> {
        let ops =
            struct_ops::by_name(&instance.type_name).ok_or_else(|| CheckError::UnknownOps {
                type_name: instance.type_name.clone(),
            })?;
        for cb in ops.callbacks.iter().filter(|c| c.mandatory) {
            if !instance.callbacks.iter().any(|c| c.member == cb.name) {
                return Err(CheckError::MissingCallback { callback: cb.name });
            }
        }
        for c in &instance.callbacks {
            let prog = object
                .programs
                .get(c.program)
                .ok_or_else(|| CheckError::NoProgram {
                    member: c.member.clone(),
                    program: c.program,
                })?;
            for kf in &prog.kfuncs_used {
                let k = abi_kfuncs::by_id(kf.id).ok_or_else(|| CheckError::UnknownKfunc {
                    program: prog.name.clone(),
                    kfunc: kf.name.clone(),
                })?;
                if k.scope != Scope::Any && k.scope != ops.scope {
                    return Err(CheckError::WrongScope {
                        program: prog.name.clone(),
                        kfunc: k.name,
                        ops: ops.name,
                    });
                }
                if k.has(abi_kfuncs::KF_SLEEPABLE) && !prog.sleepable {
                    return Err(CheckError::Sleepable {
                        program: prog.name.clone(),
                        kfunc: k.name,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A struct_ops instance taken out of a loaded object. It can attach only
/// once [`Policy::check`] passed (after any [`Policy::set_global`]: the
/// verifier reads `.rodata` as constants).
#[derive(Clone, Debug)]
pub struct Policy {
    name: String,
    kind: OpsKind,
    object: Object,
    instance: usize,
    callbacks: Vec<(String, usize)>,
    checked: bool,
    /// What the last passed check reported.
    report: CheckReport,
    /// Map entries to insert at attach: (map index, key, value).
    preload: Vec<(usize, Vec<u8>, Vec<u8>)>,
}

impl Policy {
    /// [`Policy::open`], then [`Policy::check`].
    pub fn load(
        object: Object,
        instance: Option<&str>,
        check: &dyn PolicyCheck,
    ) -> Result<Policy, EngineError> {
        let mut p = Policy::open(object, instance)?;
        p.check(check)?;
        Ok(p)
    }

    /// Picks the struct_ops instance named `instance` (or the object's only
    /// one), not yet checked.
    pub fn open(object: Object, instance: Option<&str>) -> Result<Policy, EngineError> {
        let known: Vec<usize> = (0..object.struct_ops.len())
            .filter(|&i| struct_ops::by_name(&object.struct_ops[i].type_name).is_some())
            .collect();
        let idx = match instance {
            Some(n) => known
                .iter()
                .copied()
                .find(|&i| {
                    let s = &object.struct_ops[i];
                    s.var == n || s.name.as_deref() == Some(n)
                })
                .ok_or_else(|| EngineError::NoInstanceNamed {
                    name: n.to_string(),
                })?,
            None => match known.as_slice() {
                [one] => *one,
                [] => return Err(EngineError::NoInstance),
                _ => return Err(EngineError::ManyInstances { count: known.len() }),
            },
        };
        let inst = &object.struct_ops[idx];
        let kind = if inst.type_name == "bpf_oom_ops" {
            OpsKind::Oom
        } else {
            OpsKind::Psi
        };
        let name = inst
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| struct_ops::by_name(&inst.type_name).map(|s| s.default_name.to_string()))
            .unwrap_or_else(|| inst.var.clone());
        let callbacks = inst
            .callbacks
            .iter()
            .map(|c| (c.member.clone(), c.program))
            .collect();
        Ok(Policy {
            name,
            kind,
            object,
            instance: idx,
            callbacks,
            checked: false,
            report: CheckReport::default(),
            preload: Vec::new(),
        })
    }

    /// Runs the gate (the verifier) over the programs the instance uses.
    pub fn check(&mut self, check: &dyn PolicyCheck) -> Result<(), EngineError> {
        let inst = &self.object.struct_ops[self.instance];
        self.report =
            check
                .check_report(&self.object, inst)
                .map_err(|source| EngineError::Rejected {
                    policy: self.name.clone(),
                    source,
                })?;
        self.checked = true;
        Ok(())
    }

    /// Whether [`Policy::check`] passed since the policy last changed.
    pub fn is_checked(&self) -> bool {
        self.checked
    }

    /// The instance name (`oc->bpf_handler_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The struct_ops kind.
    pub fn kind(&self) -> OpsKind {
        self.kind
    }

    /// The upstream revision of `member`'s prototype the program was
    /// written for (which arguments it gets).
    pub(crate) fn callback_form(&self, member: &str) -> bpfoom_abi::struct_ops::Form {
        self.object.struct_ops[self.instance]
            .callbacks
            .iter()
            .find(|c| c.member == member)
            .map(|c| c.form)
            .unwrap_or_default()
    }

    /// The program index implementing `member`.
    fn callback(&self, member: &str) -> Option<usize> {
        self.callbacks.iter().find(|c| c.0 == member).map(|c| c.1)
    }

    /// Adds an entry to map `map` at attach time (how a daemon hands a
    /// policy its configuration, e.g. per-cgroup preferences). Key and value
    /// are integers stored little endian in the map's key and value sizes;
    /// [`Policy::set_map_entry`] with [`MapValue::Int`], so they are checked
    /// against the map's BTF types the same way.
    pub fn map_entry(&mut self, map: &str, key: u64, value: u64) -> Result<(), EngineError> {
        self.set_map_entry(
            map,
            &MapValue::from(key),
            &MapValue::from(value),
            &mut mapvalue::no_cgroups,
        )
    }

    /// Adds an entry to map `map` at attach time, key and value laid out
    /// from the map's own BTF key and value types ([`mapvalue`]); a string
    /// for an integer is a cgroup path, turned into its id by `resolve`.
    /// Errors name the map and the field.
    pub fn set_map_entry(
        &mut self,
        map: &str,
        key: &MapValue,
        value: &MapValue,
        resolve: &mut CgroupResolver<'_>,
    ) -> Result<(), EngineError> {
        let Some((idx, def)) = self.object.map(map) else {
            return Err(EngineError::NoMap {
                policy: self.name.clone(),
                map: map.to_string(),
            });
        };
        let btf = &self.object.btf;
        let one = |ty: Option<u32>,
                   size: u32,
                   v: &MapValue,
                   role: mapvalue::Role,
                   what: &str,
                   resolve: &mut CgroupResolver<'_>| {
            let bytes = match ty {
                Some(ty) => mapvalue::encode(btf, ty, v, role, what, resolve)?,
                None => mapvalue::encode_untyped(size, v, what, resolve)?,
            };
            if bytes.len() != size as usize {
                return Err(MapValueError::Layout {
                    path: what.into(),
                    reason: format!(
                        "its BTF type is {} bytes, the map's {what} size {size}",
                        bytes.len()
                    ),
                });
            }
            Ok(bytes)
        };
        let encoded = one(
            def.key_type,
            def.key_size,
            key,
            mapvalue::Role::Key,
            "key",
            resolve,
        )
        .and_then(|k| {
            one(
                def.value_type,
                def.value_size,
                value,
                mapvalue::Role::Value,
                "value",
                resolve,
            )
            .map(|v| (k, v))
        });
        match encoded {
            Ok((k, v)) => {
                self.preload.push((idx, k, v));
                Ok(())
            }
            Err(source) => Err(EngineError::Value {
                policy: self.name.clone(),
                target: format!("map {map}"),
                source: Box::new(source),
            }),
        }
    }

    /// Sets a global variable (`const volatile` tunables in `.rodata`,
    /// or `.data`/`.bss`) before attach, as libbpf's skeletons do:
    /// [`Policy::set_global_value`] with [`MapValue::Int`] (range-checked
    /// against the variable's type).
    pub fn set_global(&mut self, var: &str, value: u64) -> Result<(), EngineError> {
        self.set_global_value(var, &MapValue::from(value), &mut mapvalue::no_cgroups)
    }

    /// Sets a global variable from a typed value laid out from the
    /// variable's BTF type (integers, cgroup paths, structs by field,
    /// arrays, `char[N]` text; see [`mapvalue`]). The policy must pass its
    /// check again afterwards (the verifier reads `.rodata` as constants).
    pub fn set_global_value(
        &mut self,
        var: &str,
        value: &MapValue,
        resolve: &mut CgroupResolver<'_>,
    ) -> Result<(), EngineError> {
        let btf = &self.object.btf;
        for map in self.object.maps.iter_mut().filter(|m| m.initial.is_some()) {
            let Some(sec) = btf.datasec(&map.section).and_then(|id| btf.type_by_id(id)) else {
                continue;
            };
            let BtfKind::Datasec { vars, .. } = &sec.kind else {
                continue;
            };
            let Some((v, ty)) = vars.iter().find_map(|v| match btf.type_by_id(v.ty) {
                Some(t) if t.name == var => match t.kind {
                    BtfKind::Var { ty, .. } => Some((v, ty)),
                    _ => None,
                },
                _ => None,
            }) else {
                continue;
            };
            let err = |source| EngineError::Value {
                policy: self.name.clone(),
                target: "global".into(),
                source: Box::new(source),
            };
            let bytes = mapvalue::encode(btf, ty, value, mapvalue::Role::Value, var, resolve)
                .map_err(err)?;
            let (off, size) = (v.offset as usize, v.size as usize);
            let dst = map
                .initial
                .as_mut()
                .and_then(|b| b.get_mut(off..off + size))
                .filter(|d| d.len() == bytes.len())
                .ok_or_else(|| {
                    err(MapValueError::Layout {
                        path: var.into(),
                        reason: format!(
                            "the variable's type is {} bytes, its place in {} is {size}",
                            bytes.len(),
                            map.section
                        ),
                    })
                })?;
            dst.copy_from_slice(&bytes);
            self.checked = false;
            return Ok(());
        }
        Err(EngineError::NoGlobal {
            policy: self.name.clone(),
            var: var.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!("jit".parse(), Ok(VmBackend::Jit));
        assert_eq!("interpreter".parse(), Ok(VmBackend::Interpreter));
        let e = "fast".parse::<VmBackend>().unwrap_err();
        assert_eq!(e, UnknownBackend("fast".into()));
        assert_eq!(
            e.to_string(),
            "unknown engine \"fast\" (expected \"jit\" or \"interpreter\")"
        );
    }

    #[test]
    fn init_failure_keeps_the_run_message() {
        use std::error::Error as _;
        let why = InitFailure::Stopped(RunFailure::Budget { budget: 10, pc: 3 });
        assert_eq!(
            why.to_string(),
            "instruction budget of 10 exhausted at instruction 3"
        );
        let e = EngineError::InitFailed {
            policy: "p".into(),
            why,
        };
        assert_eq!(
            e.to_string(),
            "policy p: init failed: instruction budget of 10 exhausted at instruction 3"
        );
        let fault = RunFailure::Fault(bpfoom_vm::VmError::NoProgram(4));
        assert_eq!(fault.to_string(), "program fault: no program with id 4");
        assert!(fault.source().is_some());
    }
}
