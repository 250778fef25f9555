//! `bpfoom inspect`: what a compiled policy contains, after relocation.

use crate::CliError;
use bpfoom_engine::mapvalue;
use bpfoom_insn::disasm::{disassemble_with, Names};
use bpfoom_obj::{BtfKind, CoreOutcome, Object};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `bpfoom inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Compiled policy object (clang -target bpf output).
    pub object: PathBuf,
    /// Also print each program's relocated instructions.
    #[arg(long)]
    pub disasm: bool,
}

/// Names for the disassembler: helpers, kfuncs and maps of this object.
struct ObjNames<'a>(&'a Object);

impl Names for ObjNames<'_> {
    fn helper(&self, id: i32) -> Option<String> {
        let h = bpfoom_abi::helpers::by_id(u32::try_from(id).ok()?)?;
        Some(format!("bpf_{}", h.name))
    }
    fn kfunc(&self, id: i32) -> Option<String> {
        Some(
            bpfoom_abi::kfuncs::by_id(u32::try_from(id).ok()?)?
                .name
                .to_string(),
        )
    }
    fn map(&self, index: i32) -> Option<String> {
        Some(self.0.maps.get(usize::try_from(index).ok()?)?.name.clone())
    }
}

/// Loads an object file, mapping every failure to a bad-input error.
pub fn load(path: &std::path::Path) -> Result<Object, CliError> {
    Object::from_path(path).map_err(|e| CliError::Object {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// Runs `bpfoom inspect`.
pub fn run(a: &InspectArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let obj = load(&a.object)?;
    print(&obj, a.disasm, out)
}

/// Prints the human-readable description of a loaded object.
pub fn print(obj: &Object, disasm: bool, out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(out, "license: {}", obj.license)?;
    writeln!(out, "struct_ops instances: {}", obj.struct_ops.len())?;
    for s in &obj.struct_ops {
        let name = s.name.as_deref().unwrap_or("(default)");
        writeln!(
            out,
            "  {} : struct {} name=\"{name}\" [{}]",
            s.var, s.type_name, s.section
        )?;
        for cb in &s.callbacks {
            let n = obj.programs.get(cb.program).map_or(0, |p| p.insns.len());
            writeln!(
                out,
                "    .{:<24} -> {} ({n} insns)",
                cb.member, cb.program_name
            )?;
        }
    }
    writeln!(out, "programs: {}", obj.programs.len())?;
    for p in &obj.programs {
        let kind = if p.sleepable {
            "sleepable"
        } else {
            "non-sleepable"
        };
        writeln!(
            out,
            "  {:<28} {:<40} {kind}, {} insns",
            p.name,
            p.section,
            p.insns.len()
        )?;
    }
    writeln!(out, "maps: {}", obj.maps.len())?;
    for m in &obj.maps {
        let ro = if m.readonly { ", read-only" } else { "" };
        writeln!(
            out,
            "  {:<20} {:<13} key {:>3} B  value {:>5} B  max_entries {}{ro}",
            m.name,
            m.kind.name(),
            m.key_size,
            m.value_size,
            m.max_entries
        )?;
        // The BTF types a configuration fills entries of (`--map`, config
        // `maps`, scenario `entries`) or, for global data, its variables
        // (`--set`, `globals`).
        let btf = &obj.btf;
        match (m.key_type, m.value_type) {
            (_, Some(_)) if m.initial.is_some() => {
                for var in btf.datasec_vars(&m.section).unwrap_or_default() {
                    let Some(t) = btf.type_by_id(var.ty) else {
                        continue;
                    };
                    let ty = match t.kind {
                        BtfKind::Var { ty, .. } => ty,
                        _ => var.ty,
                    };
                    writeln!(out, "    {}: {}", t.name, mapvalue::describe(btf, ty))?;
                }
            }
            (k, v) if k.is_some() || v.is_some() => {
                let show = |t: Option<u32>| t.map_or("-".into(), |t| mapvalue::describe(btf, t));
                writeln!(out, "    key {}, value {}", show(k), show(v))?;
            }
            _ => {}
        }
    }
    let mut kfuncs: Vec<&str> = obj
        .programs
        .iter()
        .flat_map(|p| p.kfuncs_used.iter().map(|k| k.name.as_str()))
        .collect();
    kfuncs.sort_unstable();
    kfuncs.dedup();
    writeln!(out, "kfuncs: {}", list_or_none(&kfuncs))?;
    let mut helpers: Vec<String> = obj
        .programs
        .iter()
        .flat_map(|p| p.helpers_used.iter())
        .map(|&id| {
            bpfoom_abi::helpers::by_id(id).map_or(format!("#{id}"), |h| format!("bpf_{}", h.name))
        })
        .collect();
    helpers.sort_unstable();
    helpers.dedup();
    writeln!(out, "helpers: {}", list_or_none(&helpers))?;
    writeln!(
        out,
        "CO-RE relocations applied: {}",
        obj.core_relocs_applied.len()
    )?;
    // Listed per program with final instruction indexes (a static subprogram's
    // relocations show under every program that includes it).
    for p in &obj.programs {
        for &(pc, idx) in &p.core_relocs {
            let Some(r) = obj.core_relocs_applied.get(idx) else {
                continue;
            };
            let what = match &r.outcome {
                CoreOutcome::Value { local, target } => format!("{local} -> {target}"),
                CoreOutcome::Poisoned { reason } => format!("poisoned: {reason}"),
            };
            writeln!(
                out,
                "  {}+{pc}: {} {} = {what}",
                p.name,
                r.kind.name(),
                r.spec
            )?;
        }
    }
    if disasm {
        let names = ObjNames(obj);
        for p in &obj.programs {
            writeln!(out, "\n{} ({}):", p.name, p.section)?;
            // The disassembler prefixes each line with its instruction index.
            for (pc, text) in disassemble_with(&p.insns, &names).iter().enumerate() {
                // Label the appended static subprograms (the entry is named above).
                if let Some(f) = p.func_info.iter().find(|f| f.insn == pc && pc > 0) {
                    writeln!(out, "{}:", f.name)?;
                }
                if !text.is_empty() {
                    writeln!(out, "  {text}")?;
                }
            }
        }
    }
    Ok(())
}

fn list_or_none<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}
