//! eBPF instructions: the one definition every other bpfoom crate uses.
//!
//! The raw 8-byte encoding follows RFC 9669 and Linux `struct bpf_insn`
//! (`code:8 dst_reg:4 src_reg:4 off:16 imm:32`, little endian on the targets
//! bpfoom supports). Decoding here never fails: every 8-byte pattern is an
//! `Insn`; whether it is a *valid* instruction is the verifier's business.

pub mod asm;
pub mod conformance;
pub mod disasm;
pub mod opcode;

pub use asm::{assemble, AsmError, AsmErrorKind};
pub use disasm::{disassemble, disassemble_with, insn_text, to_asm, IdKind, Names};

/// Size of one encoded instruction slot in bytes.
pub const INSN_SIZE: usize = 8;

/// One eBPF instruction slot (an `ld_imm64` takes two consecutive slots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Insn {
    /// Opcode byte: class, size/source and operation bits.
    pub code: u8,
    /// Destination register (0..=10 valid; 4 bits encoded).
    pub dst: u8,
    /// Source register, or a pseudo marker for `ld_imm64` and calls.
    pub src: u8,
    /// Signed 16-bit offset (jumps, memory accesses, some ALU variants).
    pub off: i16,
    /// Signed 32-bit immediate.
    pub imm: i32,
}

impl Insn {
    /// Builds an instruction from its fields.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// Decodes one little-endian instruction slot.
    pub fn from_bytes(b: [u8; INSN_SIZE]) -> Self {
        Self {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes the instruction as one little-endian slot.
    pub fn to_bytes(self) -> [u8; INSN_SIZE] {
        let o = self.off.to_le_bytes();
        let i = self.imm.to_le_bytes();
        [
            self.code,
            (self.dst & 0x0f) | (self.src << 4),
            o[0],
            o[1],
            i[0],
            i[1],
            i[2],
            i[3],
        ]
    }

    /// The instruction class (low three bits of the opcode).
    pub const fn class(self) -> u8 {
        self.code & 0x07
    }
}

/// Decodes a byte slice into instruction slots.
///
/// Returns `None` when the length is not a multiple of [`INSN_SIZE`].
pub fn decode_all(bytes: &[u8]) -> Option<Vec<Insn>> {
    if !bytes.len().is_multiple_of(INSN_SIZE) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(INSN_SIZE)
            .map(|c| {
                let mut a = [0u8; INSN_SIZE];
                a.copy_from_slice(c);
                Insn::from_bytes(a)
            })
            .collect(),
    )
}
