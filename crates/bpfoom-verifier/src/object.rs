//! Verifying a loaded policy object: every struct_ops callback's program,
//! typed by the member it implements.

use bpfoom_obj::{MapKind as ObjMapKind, Object};

use crate::{
    verify, Hook, MapInfo, MapKind, Options, ProgramInput, Report, SourceLine, VerifyError,
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
            kind: match m.kind {
                ObjMapKind::Array => MapKind::Array,
                ObjMapKind::PercpuArray => MapKind::PercpuArray,
                ObjMapKind::Hash => MapKind::Hash,
                ObjMapKind::LruHash => MapKind::LruHash,
                ObjMapKind::Ringbuf => MapKind::Ringbuf,
            },
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
            let input = ProgramInput {
                name: &p.name,
                insns: &p.insns,
                hook: Hook {
                    ops: &inst.type_name,
                    member: &cb.member,
                },
                sleepable: p.sleepable,
                maps: &maps,
                line_info: &lines,
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
            let report = verify(&input, opts)?;
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
