//! Malformed input: hand-crafted and corrupted objects give typed errors naming the place,
//! and mutated objects never panic or hang.
// Helpers outside #[test] functions panic on broken fixtures too.
#![allow(clippy::unwrap_used)]

mod common;

use bpfoom_obj::{Btf, ObjError, Object};
use object::{Object as _, ObjectSection as _};
use proptest::prelude::*;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn basic() -> Option<&'static [u8]> {
    static BYTES: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| common::compile_fixture("basic.bpf.c"))
        .as_deref()
}

fn u16_at(b: &[u8], off: usize) -> usize {
    u16::from_le_bytes([b[off], b[off + 1]]) as usize
}
fn u64_at(b: &[u8], off: usize) -> usize {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap()) as usize
}

/// File offset of the section header of `name`.
fn shdr(bytes: &[u8], name: &str) -> usize {
    let f = object::File::parse(bytes).unwrap();
    let idx = f
        .section_by_name(name)
        .unwrap_or_else(|| panic!("{name}"))
        .index()
        .0;
    u64_at(bytes, 0x28) + idx * u16_at(bytes, 0x3a)
}

/// File range of the contents of `name`.
fn contents(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let f = object::File::parse(bytes).unwrap();
    let (off, len) = f.section_by_name(name).unwrap().file_range().unwrap();
    off as usize..(off + len) as usize
}

fn patched(f: impl FnOnce(&mut Vec<u8>)) -> Option<Vec<u8>> {
    let mut b = basic()?.to_vec();
    f(&mut b);
    Some(b)
}

#[test]
fn not_elf() {
    assert_eq!(Object::parse(b"").unwrap_err(), ObjError::NotElf);
    assert_eq!(
        Object::parse(b"hello, world").unwrap_err(),
        ObjError::NotElf
    );
    assert_eq!(Object::parse(b"\x7fEL").unwrap_err(), ObjError::NotElf);
}

#[test]
fn wrong_class_endianness_machine_type() {
    let Some(_) = basic() else { return };
    let class = patched(|b| b[4] = 1).unwrap();
    assert_eq!(Object::parse(&class).unwrap_err(), ObjError::WrongClass(1));
    let be = patched(|b| b[5] = 2).unwrap();
    assert_eq!(Object::parse(&be).unwrap_err(), ObjError::WrongEndian(2));
    let x86 = patched(|b| b[18..20].copy_from_slice(&62u16.to_le_bytes())).unwrap();
    assert_eq!(Object::parse(&x86).unwrap_err(), ObjError::WrongMachine(62));
    let exec = patched(|b| b[16..18].copy_from_slice(&2u16.to_le_bytes())).unwrap();
    assert_eq!(Object::parse(&exec).unwrap_err(), ObjError::WrongType(2));
    let e = Object::parse(&x86).unwrap_err().to_string();
    assert!(e.contains("EM_BPF"), "{e}");
}

#[test]
fn every_truncation_is_an_error() {
    let Some(b) = basic() else { return };
    assert!(Object::parse(b).is_ok());
    for len in (0..b.len()).step_by(7) {
        assert!(
            Object::parse(&b[..len]).is_err(),
            "prefix of {len} bytes parsed"
        );
    }
}

#[test]
fn section_past_end_of_file_is_named() {
    let Some(b) = patched(|b| {
        let h = shdr(b, ".BTF");
        b[h + 0x20..h + 0x28].copy_from_slice(&(1u64 << 40).to_le_bytes());
    }) else {
        return;
    };
    match Object::parse(&b).unwrap_err() {
        ObjError::BadSection { section, .. } => assert_eq!(section, ".BTF"),
        other => panic!("{other}"),
    }
}

#[test]
fn missing_btf() {
    let Some(b) = patched(|b| {
        // Rename .BTF (and with it .BTF.ext's lookup) by clobbering the name's first byte.
        let h = shdr(b, ".BTF");
        let name_off = u32::from_le_bytes(b[h..h + 4].try_into().unwrap()) as usize;
        let strtab = shdr(b, ".strtab");
        let str_base = u64_at(b, strtab + 0x18);
        b[str_base + name_off + 1] = b'X';
    }) else {
        return;
    };
    assert_eq!(Object::parse(&b).unwrap_err(), ObjError::MissingBtf);
}

#[test]
fn corrupt_btf_and_btf_ext() {
    let Some(b) = patched(|b| {
        let r = contents(b, ".BTF");
        b[r.start] = 0;
    }) else {
        return;
    };
    assert!(matches!(
        Object::parse(&b).unwrap_err(),
        ObjError::Btf { offset: 0, .. }
    ));
    let b = patched(|b| {
        let r = contents(b, ".BTF.ext");
        // The func_info record size (first word of the func info block).
        let hdr_len = u32::from_le_bytes(b[r.start + 4..r.start + 8].try_into().unwrap()) as usize;
        let fi = r.start + hdr_len;
        b[fi..fi + 4].copy_from_slice(&3u32.to_le_bytes());
    })
    .unwrap();
    let e = Object::parse(&b).unwrap_err();
    assert!(
        matches!(&e, ObjError::BtfExt { reason, .. } if reason.contains("record size")),
        "{e}"
    );
}

#[test]
fn dangling_and_misplaced_relocations() {
    let rel = ".relstruct_ops.s/handle_out_of_memory";
    let Some(b) = patched(|b| {
        let r = contents(b, rel);
        // First entry's r_info: symbol index in the high 32 bits.
        b[r.start + 12..r.start + 16].copy_from_slice(&0xffffu32.to_le_bytes());
    }) else {
        return;
    };
    match Object::parse(&b).unwrap_err() {
        ObjError::Reloc {
            section, reason, ..
        } => {
            assert_eq!(section, "struct_ops.s/handle_out_of_memory");
            assert!(reason.contains("dangling"), "{reason}");
        }
        other => panic!("{other}"),
    }
    let b = patched(|b| {
        let r = contents(b, rel);
        b[r.start..r.start + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
    })
    .unwrap();
    match Object::parse(&b).unwrap_err() {
        ObjError::Reloc { insn, reason, .. } => {
            assert_eq!(insn, 0x10_0000 / 8);
            assert!(reason.contains("not an instruction"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn btf_type_graph_errors() {
    // Raw BTF: header + types + strings ("\0int\0t\0").
    fn raw(types: &[u32]) -> Vec<u8> {
        let strings = b"\0int\0t\0";
        let tlen = (types.len() * 4) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(&0xeb9fu16.to_le_bytes());
        v.extend_from_slice(&[1, 0]);
        for w in [24, 0, tlen, tlen, strings.len() as u32] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        for w in types {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v.extend_from_slice(strings);
        v
    }
    let int = [1, 1 << 24, 4, (1 << 24) | 32];
    assert_eq!(Btf::parse(&raw(&int)).unwrap().len(), 2);
    // typedef 2 -> typedef 3 -> typedef 2: a loop.
    let looped = [int.as_slice(), &[5, 8 << 24, 3], &[5, 8 << 24, 2]].concat();
    let e = Btf::parse(&raw(&looped)).unwrap_err();
    assert!(
        matches!(&e, ObjError::Btf { type_id: Some(2), reason, .. } if reason.contains("loop")),
        "{e}"
    );
    // A pointer to a type that does not exist.
    let dangling = [int.as_slice(), &[0, 2 << 24, 99]].concat();
    let e = Btf::parse(&raw(&dangling)).unwrap_err();
    assert!(
        matches!(&e, ObjError::Btf { type_id: Some(2), reason, .. } if reason.contains("99")),
        "{e}"
    );
    // Unknown kind 30.
    let e = Btf::parse(&raw(&[0, 30 << 24, 0])).unwrap_err();
    assert!(e.to_string().contains("unknown BTF kind 30"), "{e}");
    // A struct claiming more members than the section holds.
    let e = Btf::parse(&raw(&[0, (4 << 24) | 1000, 8])).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // Name offset outside the string section.
    let e = Btf::parse(&raw(&[500, 1 << 24, 4, 32])).unwrap_err();
    assert!(e.to_string().contains("string offset 500"), "{e}");
    // Header lengths past the end.
    let mut bad = raw(&int);
    bad[12..16].copy_from_slice(&1000u32.to_le_bytes());
    assert!(Btf::parse(&bad).is_err());
    assert!(Btf::parse(&bad[..10]).is_err());
}

#[test]
fn pointers_in_global_data_are_refused() {
    let src = "#include <bpf_oom.h>\nint x = 1;\nint *px = &x;\n\
               SEC(\"struct_ops/x\") int x_prog(void *ctx) { return *px; }\n";
    let Some(b) = common::compile_source("data_ptr", src) else {
        return;
    };
    let e = Object::parse(&b).unwrap_err();
    assert!(
        matches!(&e, ObjError::UnsupportedSection { section, .. } if section == ".data"),
        "{e}"
    );
}

#[test]
fn legacy_maps_section_is_refused() {
    let src = "#include <bpf_oom.h>\nstruct old { int type, key, value, max; };\n\
               struct old m SEC(\"maps\") = { 1, 4, 4, 1 };\n";
    let Some(b) = common::compile_source("legacy_maps", src) else {
        return;
    };
    let e = Object::parse(&b).unwrap_err();
    assert!(
        matches!(&e, ObjError::UnsupportedSection { section, .. } if section == "maps"),
        "{e}"
    );
}

/// Byte ranges worth mutating: everything but DWARF, where most bytes of a `-g` object live.
fn interesting(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let f = object::File::parse(bytes).unwrap();
    let mut v: Vec<_> = f
        .sections()
        .filter(|s| {
            !s.name().unwrap_or("").starts_with(".debug")
                && !s.name().unwrap_or("").starts_with(".rel.debug")
        })
        .filter_map(|s| s.file_range())
        .map(|(o, l)| o as usize..(o + l) as usize)
        .filter(|r| !r.is_empty())
        .collect();
    v.push(0..64);
    let sh = u64_at(bytes, 0x28);
    v.push(sh..bytes.len());
    v
}

fn check(bytes: &[u8]) {
    let t = Instant::now();
    let _ = Object::parse(bytes);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "parse took {:?}",
        t.elapsed()
    );
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Byte(usize, u8),
    Truncate(usize),
    Splice { from: usize, to: usize, len: usize },
}

fn pick(ranges: &[std::ops::Range<usize>], sel: usize) -> usize {
    let r = &ranges[sel % ranges.len()];
    r.start + (sel / ranges.len()) % r.len()
}

fn apply(base: &[u8], ranges: &[std::ops::Range<usize>], muts: &[Mutation]) -> Vec<u8> {
    let mut b = base.to_vec();
    for m in muts {
        match *m {
            Mutation::Flip(sel, bit) => {
                let i = pick(ranges, sel);
                if i < b.len() {
                    b[i] ^= 1 << (bit % 8);
                }
            }
            Mutation::Byte(sel, v) => {
                let i = pick(ranges, sel);
                if i < b.len() {
                    b[i] = v;
                }
            }
            Mutation::Truncate(n) => b.truncate(n % (b.len() + 1)),
            Mutation::Splice { from, to, len } => {
                let (from, to) = (pick(ranges, from), pick(ranges, to));
                let len = len
                    .min(b.len().saturating_sub(from))
                    .min(b.len().saturating_sub(to));
                if from < b.len() && to < b.len() {
                    let chunk = b[from..from + len].to_vec();
                    b[to..to + len].copy_from_slice(&chunk);
                }
            }
        }
    }
    b
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), any::<u8>()).prop_map(|(s, b)| Mutation::Flip(s, b)),
        3 => (any::<usize>(), prop_oneof![Just(0u8), Just(0xff), Just(0x80), any::<u8>()])
            .prop_map(|(s, v)| Mutation::Byte(s, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), any::<usize>(), 1usize..64)
            .prop_map(|(from, to, len)| Mutation::Splice { from, to, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_objects_never_panic(muts in prop::collection::vec(mutation(), 1..8)) {
        let Some(base) = basic() else { return Ok(()) };
        let ranges = interesting(base);
        check(&apply(base, &ranges, &muts));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
        let _ = Btf::parse(&bytes);
    }
}
