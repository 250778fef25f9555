//! Shared test support: assembling templated programs and running the verifier.
#![allow(dead_code)]

use bpfoom_abi::kfuncs;
use bpfoom_abi::types::HostTypes;
use bpfoom_verifier::{
    verify, Hook, Insn, MapInfo, MapKind, Options, ProgramInput, RejectKind, Report, VerifyError,
};

/// Expected outcome of a corpus program.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Verifies.
    Accept,
    /// Rejected with this kind and a reason containing the text.
    Reject(RejectKind, &'static str),
}

/// The maps every hand-written program may use, by index:
/// 0 `arr` (array, key 4, value 64, 16 entries), 1 `h` (hash, key 8, value 16),
/// 2 `rb` (ringbuf), 3 `.rodata` (read-only, 32 bytes: "bpf oom\0" then
/// "unterminated" without NUL up to the end), 4 `.bss` (16 bytes, writable).
pub fn maps() -> Vec<MapInfo> {
    let mut ro = b"bpf oom\0".to_vec();
    ro.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]);
    ro.extend(std::iter::repeat_n(b'x', 16));
    vec![
        map("arr", MapKind::Array, 4, 64, 16, false, None),
        map("h", MapKind::Hash, 8, 16, 128, false, None),
        map("rb", MapKind::Ringbuf, 0, 0, 4096, false, None),
        map(".rodata", MapKind::Array, 4, 32, 1, true, Some(ro)),
        map(".bss", MapKind::Array, 4, 16, 1, false, None),
    ]
}

fn map(
    name: &str,
    kind: MapKind,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    read_only: bool,
    initial: Option<Vec<u8>>,
) -> MapInfo {
    MapInfo {
        name: name.into(),
        kind,
        key_size,
        value_size,
        max_entries,
        read_only,
        initial,
        spin_lock_off: None,
    }
}

/// Replaces `{k:kfunc}` with a kfunc id, `{o:struct.field.path}` with a byte
/// offset and `{s:struct}` with a struct size from the host ABI.
pub fn expand(src: &str) -> String {
    let h = HostTypes::get();
    let mut out = String::new();
    let mut rest = src;
    while let Some(a) = rest.find('{') {
        out.push_str(&rest[..a]);
        let b = rest[a..].find('}').expect("unclosed {") + a;
        let key = &rest[a + 1..b];
        let v = match key.split_once(':') {
            Some(("k", n)) => kfuncs::by_name(n)
                .unwrap_or_else(|| panic!("kfunc {n}"))
                .id
                .to_string(),
            Some(("o", p)) => {
                let (s, f) = p.split_once('.').expect("struct.field");
                h.offset_of(s, f)
                    .unwrap_or_else(|| panic!("offset {p}"))
                    .to_string()
            }
            Some(("s", s)) => h
                .size_of(h.struct_id(s).expect("struct"))
                .expect("size")
                .to_string(),
            _ => panic!("bad template {key}"),
        };
        out.push_str(&v);
        rest = &rest[b + 1..];
    }
    out.push_str(rest);
    out
}

/// Assembles a templated program.
pub fn asm(src: &str) -> Vec<Insn> {
    let text = expand(src);
    bpfoom_insn::asm::assemble(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Where a program is attached and how.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// struct_ops type.
    pub ops: &'static str,
    /// Callback.
    pub member: &'static str,
    /// Sleepable program.
    pub sleepable: bool,
}

/// `bpf_oom_ops.handle_out_of_memory`, sleepable.
pub const OOM: Ctx = Ctx {
    ops: "bpf_oom_ops",
    member: "handle_out_of_memory",
    sleepable: true,
};
/// As [`OOM`], not sleepable.
pub const OOM_NS: Ctx = Ctx {
    sleepable: false,
    ..OOM
};
/// `bpf_oom_ops.handle_cgroup_offline` (void).
pub const OFFLINE: Ctx = Ctx {
    ops: "bpf_oom_ops",
    member: "handle_cgroup_offline",
    sleepable: true,
};
/// `bpf_psi_ops.handle_psi_event` (void).
pub const PSI_EVENT: Ctx = Ctx {
    ops: "bpf_psi_ops",
    member: "handle_psi_event",
    sleepable: true,
};

/// Verifies instructions in a context with the standard maps.
pub fn run_insns(insns: &[Insn], ctx: Ctx, opts: &Options) -> Result<Report, VerifyError> {
    let maps = maps();
    let input = ProgramInput {
        name: "test",
        insns,
        hook: Hook {
            ops: ctx.ops,
            member: ctx.member,
            form: Default::default(),
        },
        sleepable: ctx.sleepable,
        maps: &maps,
        line_info: &[],
        core_access: &[],
    };
    verify(&input, opts)
}

/// Checks a result against an expectation; returns a failure description.
pub fn check(name: &str, res: &Result<Report, VerifyError>, exp: Expect) -> Option<String> {
    match (res, exp) {
        (Ok(_), Expect::Accept) => None,
        (Err(VerifyError::Rejected(r)), Expect::Reject(kind, text)) => {
            if r.kind == kind && r.reason.contains(text) {
                None
            } else {
                Some(format!(
                    "{name}: expected {kind:?} containing {text:?}, got {:?}:\n{r}",
                    r.kind
                ))
            }
        }
        (Ok(rep), Expect::Reject(kind, text)) => Some(format!(
            "{name}: expected rejection {kind:?} {text:?}, but it verified ({} insns)",
            rep.insns_processed
        )),
        (Err(e), _) => Some(format!("{name}: expected {exp:?}, got error:\n{e}")),
    }
}
