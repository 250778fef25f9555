//! Every shared bpf_conformance `.data` file parses, assembles, and its
//! program survives a disassemble/re-assemble round trip.

use bpfoom_insn::conformance::TestCase;
use bpfoom_insn::{assemble, disassemble, to_asm};

#[test]
fn all_conformance_files_assemble_and_round_trip() {
    let Some(dir) = bpfoom_testutil::require_conformance_dir() else {
        return;
    };
    let entries = std::fs::read_dir(&dir).expect("conformance folder readable");
    let mut n = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "data") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let tc = TestCase::parse(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let prog = tc
            .program()
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(!disassemble(&prog).is_empty());
        let text = to_asm(&prog).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert_eq!(assemble(&text).as_ref(), Ok(&prog), "{}", path.display());
        if tc.raw.is_some() {
            assert_eq!(
                assemble(&tc.asm).as_ref(),
                Ok(&prog),
                "{}: raw and asm differ",
                path.display()
            );
        }
        n += 1;
    }
    println!("{n} conformance files checked");
    assert!(n > 0, "no .data files in {}", dir.display());
}
