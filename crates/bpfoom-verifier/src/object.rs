//! Verifying a loaded policy object: every struct_ops callback's program,
//! typed by the member it implements.

use bpfoom_obj::{Btf, BtfKind, CoreKind, CoreOutcome, Object, Program};

use crate::{
    verify_with_globals, CoreAccess, GlobalArg, GlobalFunc, Hook, MapInfo, Options, ProgramInput,
    Report, SourceLine, VerifyError,
};

/// The verification of one program for one struct_ops callback.
#[derive(Clone, Debug)]
pub struct ProgramReport {
    /// Program (function) name.
    pub program: String,
    /// struct_ops type, e.g. `bpf_oom_ops`.
    pub ops: String,
    /// Callback member, e.g. `handle_out_of_memory`.
    pub member: String,
    /// The struct_ops variable that uses it.
    pub instance: String,
    /// Counters, time and log.
    pub report: Report,
}

/// The object's maps as the verifier sees them.
pub fn maps_of(obj: &Object) -> Vec<MapInfo> {
    obj.maps
        .iter()
        .map(|m| MapInfo {
            name: m.name.clone(),
            kind: m.kind,
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            read_only: m.readonly,
            initial: m.initial.clone(),
            spin_lock_off: m
                .value_type
                .and_then(|t| crate::spin_lock::spin_lock_offset(&obj.btf, t)),
        })
        .collect()
}

/// Verifies every program of every struct_ops instance in `obj`, in
/// instance and member order. Stops at the first rejected program (the
/// error names it); programs no instance uses are not verified (they can
/// never run).
pub fn verify_object(obj: &Object, opts: &Options) -> Result<Vec<ProgramReport>, VerifyError> {
    let maps = maps_of(obj);
    let mut out = Vec::new();
    for inst in &obj.struct_ops {
        for cb in &inst.callbacks {
            let Some(p) = obj.programs.get(cb.program) else {
                continue;
            };
            let lines: Vec<SourceLine> = p
                .line_info
                .iter()
                .map(|l| SourceLine {
                    insn: l.insn,
                    file: l.file.clone(),
                    line: l.line,
                    text: l.source.clone(),
                })
                .collect();
            let core: Vec<CoreAccess> = p
                .core_relocs
                .iter()
                .filter_map(|&(insn, k)| {
                    let c = obj.core_relocs_applied.get(k)?;
                    let resolved = matches!(c.outcome, CoreOutcome::Value { .. });
                    (c.kind == CoreKind::FieldByteOffset && resolved).then(|| CoreAccess {
                        insn,
                        root: c.type_name.clone(),
                        spec: c.spec.clone(),
                    })
                })
                .collect();
            let input = ProgramInput {
                name: &p.name,
                insns: &p.insns,
                hook: Hook {
                    ops: &inst.type_name,
                    member: &cb.member,
                    form: cb.form,
                },
                sleepable: p.sleepable,
                maps: &maps,
                line_info: &lines,
                core_access: &core,
            };
            if let Some((pc, name)) = crate::callbacks::global_callback(obj, p) {
                return Err(VerifyError::Rejected(Box::new(crate::Rejection {
                    program: p.name.clone(),
                    kind: crate::RejectKind::Call,
                    insn: pc,
                    disasm: bpfoom_insn::disasm::insn_text(&p.insns, pc, &()),
                    source: lines.iter().rfind(|l| l.insn <= pc).cloned(),
                    regs: String::new(),
                    reason: format!("callback function {name} not static"),
                    insns_processed: 0,
                    log: String::new(),
                })));
            }
            let globals = globals_of(&obj.btf, p);
            let report = verify_with_globals(&input, &globals, opts)?;
            out.push(ProgramReport {
                program: p.name.clone(),
                ops: inst.type_name.clone(),
                member: cb.member.clone(),
                instance: inst.var.clone(),
                report,
            });
        }
    }
    Ok(out)
}

/// Follows typedefs, modifiers and type tags.
fn resolve(btf: &Btf, mut id: u32) -> u32 {
    for _ in 0..32 {
        match btf.type_by_id(id).map(|t| &t.kind) {
            Some(
                BtfKind::Typedef(t)
                | BtfKind::Const(t)
                | BtfKind::Volatile(t)
                | BtfKind::Restrict(t)
                | BtfKind::TypeTag(t),
            ) => id = *t,
            _ => break,
        }
    }
    id
}

/// The global (BTF linkage global) subprograms of `p` with their
/// parameters classified as Linux's `btf_prepare_func_args()` does.
pub fn globals_of(btf: &Btf, p: &Program) -> Vec<GlobalFunc> {
    let mut out = Vec::new();
    for fi in &p.func_info {
        let Some(fid) = fi.type_id else { continue };
        if fi.insn == 0 {
            continue;
        }
        let Some(BtfKind::Func { linkage: 1, .. }) = btf.type_by_id(fid).map(|t| &t.kind) else {
            continue;
        };
        let Some((ret, params)) = btf.func_proto(fid) else {
            continue;
        };
        let tags = |k: usize| -> Vec<&str> {
            btf.types()
                .iter()
                .filter(|t| {
                    matches!(t.kind, BtfKind::DeclTag { ty, component }
                        if ty == fid && component == k as i32)
                })
                .map(|t| t.name.as_str())
                .collect()
        };
        let params = params
            .iter()
            .enumerate()
            .map(|(k, prm)| {
                let tags = tags(k);
                let has = |t: &str| tags.contains(&t);
                let t = resolve(btf, prm.ty);
                match btf.type_by_id(t).map(|t| &t.kind) {
                    Some(BtfKind::Int { .. } | BtfKind::Enum { .. }) => GlobalArg::Scalar,
                    Some(BtfKind::Ptr(to)) => {
                        let to = resolve(btf, *to);
                        let pointee = btf.type_by_id(to);
                        if has("arg:ctx") {
                            GlobalArg::Ctx
                        } else if has("arg:trusted") {
                            match pointee {
                                Some(pt) if matches!(pt.kind, BtfKind::Struct { .. }) => {
                                    GlobalArg::Trusted {
                                        ty: pt.name.clone(),
                                        nullable: has("arg:nullable"),
                                    }
                                }
                                _ => GlobalArg::Unsupported(format!(
                                    "arg#{k} __arg_trusted needs a pointer to a struct"
                                )),
                            }
                        } else {
                            match btf.size_of(to).filter(|&n| n > 0) {
                                Some(size)
                                    if !matches!(
                                        pointee.map(|p| &p.kind),
                                        Some(BtfKind::Void) | None
                                    ) =>
                                {
                                    GlobalArg::Mem {
                                        size,
                                        nullable: !has("arg:nonnull"),
                                    }
                                }
                                _ => GlobalArg::Unsupported(format!(
                                    "arg#{k} reference type's size cannot be determined"
                                )),
                            }
                        }
                    }
                    _ => GlobalArg::Unsupported(format!("arg#{k} has a type Linux cannot pass")),
                }
            })
            .collect();
        out.push(GlobalFunc {
            insn: fi.insn,
            name: fi.name.clone(),
            params,
            returns_void: ret == 0,
        });
    }
    out
}
