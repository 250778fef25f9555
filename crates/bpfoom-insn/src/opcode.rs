//! Opcode bit fields and pseudo-source markers (RFC 9669 names, Linux values).

/// `ld` class (only `ld_imm64` is valid in programs bpfoom loads).
pub const BPF_LD: u8 = 0x00;
/// Load into register.
pub const BPF_LDX: u8 = 0x01;
/// Store immediate.
pub const BPF_ST: u8 = 0x02;
/// Store register (and atomics).
pub const BPF_STX: u8 = 0x03;
/// 32-bit ALU.
pub const BPF_ALU: u8 = 0x04;
/// 64-bit jumps, calls, exit.
pub const BPF_JMP: u8 = 0x05;
/// 32-bit jumps.
pub const BPF_JMP32: u8 = 0x06;
/// 64-bit ALU.
pub const BPF_ALU64: u8 = 0x07;

/// Size field: 32-bit word.
pub const BPF_W: u8 = 0x00;
/// Size field: 16-bit half word.
pub const BPF_H: u8 = 0x08;
/// Size field: byte.
pub const BPF_B: u8 = 0x10;
/// Size field: 64-bit double word.
pub const BPF_DW: u8 = 0x18;

/// Mode: immediate (`ld_imm64`).
pub const BPF_IMM: u8 = 0x00;
/// Mode: regular memory access.
pub const BPF_MEM: u8 = 0x60;
/// Mode: sign-extending load.
pub const BPF_MEMSX: u8 = 0x80;
/// Mode: atomic operation.
pub const BPF_ATOMIC: u8 = 0xc0;

/// Source: immediate operand.
pub const BPF_K: u8 = 0x00;
/// Source: register operand.
pub const BPF_X: u8 = 0x08;

/// ALU operations (high four bits).
pub const BPF_ADD: u8 = 0x00;
/// Subtraction.
pub const BPF_SUB: u8 = 0x10;
/// Multiplication.
pub const BPF_MUL: u8 = 0x20;
/// Division (signed when `off == 1`).
pub const BPF_DIV: u8 = 0x30;
/// Bitwise or.
pub const BPF_OR: u8 = 0x40;
/// Bitwise and.
pub const BPF_AND: u8 = 0x50;
/// Left shift.
pub const BPF_LSH: u8 = 0x60;
/// Logical right shift.
pub const BPF_RSH: u8 = 0x70;
/// Negation.
pub const BPF_NEG: u8 = 0x80;
/// Modulo (signed when `off == 1`).
pub const BPF_MOD: u8 = 0x90;
/// Exclusive or.
pub const BPF_XOR: u8 = 0xa0;
/// Move (sign-extending when `off` is 8, 16 or 32).
pub const BPF_MOV: u8 = 0xb0;
/// Arithmetic right shift.
pub const BPF_ARSH: u8 = 0xc0;
/// Byte swap (`BPF_K` = to little endian, `BPF_X` = to big endian; ALU64 = unconditional).
pub const BPF_END: u8 = 0xd0;

/// Jump operations (high four bits).
pub const BPF_JA: u8 = 0x00;
/// Jump if equal.
pub const BPF_JEQ: u8 = 0x10;
/// Jump if unsigned greater.
pub const BPF_JGT: u8 = 0x20;
/// Jump if unsigned greater or equal.
pub const BPF_JGE: u8 = 0x30;
/// Jump if `dst & src` is non-zero.
pub const BPF_JSET: u8 = 0x40;
/// Jump if not equal.
pub const BPF_JNE: u8 = 0x50;
/// Jump if signed greater.
pub const BPF_JSGT: u8 = 0x60;
/// Jump if signed greater or equal.
pub const BPF_JSGE: u8 = 0x70;
/// Call a helper, kfunc or bpf-to-bpf function.
pub const BPF_CALL: u8 = 0x80;
/// Return from the function.
pub const BPF_EXIT: u8 = 0x90;
/// Jump if unsigned less.
pub const BPF_JLT: u8 = 0xa0;
/// Jump if unsigned less or equal.
pub const BPF_JLE: u8 = 0xb0;
/// Jump if signed less.
pub const BPF_JSLT: u8 = 0xc0;
/// Jump if signed less or equal.
pub const BPF_JSLE: u8 = 0xd0;

/// Atomic modifier: also return the old value.
pub const BPF_FETCH: i32 = 0x01;
/// Atomic exchange (`BPF_XCHG | BPF_FETCH` in `imm`).
pub const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
/// Atomic compare and exchange.
pub const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;

/// `src` of a call: helper id in `imm`.
pub const BPF_PSEUDO_HELPER: u8 = 0;
/// `src` of a call: bpf-to-bpf call, `imm` is the relative target.
pub const BPF_PSEUDO_CALL: u8 = 1;
/// `src` of a call: kernel function, `imm` is the kfunc BTF id.
pub const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// `src` of `ld_imm64`: plain 64-bit immediate.
pub const BPF_PSEUDO_NONE: u8 = 0;
/// `src` of `ld_imm64`: `imm` is a map fd (bpfoom: map index).
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `src` of `ld_imm64`: map value, `imm` = map, next `imm` = offset.
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
/// `src` of `ld_imm64`: address of a kernel symbol (BTF id).
pub const BPF_PSEUDO_BTF_ID: u8 = 3;
/// `src` of `ld_imm64`: address of a bpf function.
pub const BPF_PSEUDO_FUNC: u8 = 4;

/// Opcode of `ld_imm64` (`BPF_LD | BPF_IMM | BPF_DW`).
pub const LD_IMM64: u8 = BPF_LD | BPF_IMM | BPF_DW;
/// Opcode of a call instruction.
pub const CALL: u8 = BPF_JMP | BPF_CALL;
/// Opcode of the exit instruction.
pub const EXIT: u8 = BPF_JMP | BPF_EXIT;

/// Extracts the class bits.
pub const fn class(code: u8) -> u8 {
    code & 0x07
}
/// Extracts the ALU/JMP operation bits.
pub const fn op(code: u8) -> u8 {
    code & 0xf0
}
/// Extracts the source bit (`BPF_K` or `BPF_X`).
pub const fn source(code: u8) -> u8 {
    code & 0x08
}
/// Extracts the size bits of a load/store.
pub const fn size(code: u8) -> u8 {
    code & 0x18
}
/// Extracts the mode bits of a load/store.
pub const fn mode(code: u8) -> u8 {
    code & 0xe0
}
/// Access width in bytes for a size field.
pub const fn size_bytes(size: u8) -> usize {
    match size {
        BPF_B => 1,
        BPF_H => 2,
        BPF_W => 4,
        _ => 8,
    }
}

/// Mode: legacy packet load at an absolute offset (socket filters only).
pub const BPF_ABS: u8 = 0x20;
/// Mode: legacy packet load at a register-relative offset.
pub const BPF_IND: u8 = 0x40;
