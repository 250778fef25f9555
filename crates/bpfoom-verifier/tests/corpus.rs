//! The hand-written corpus: every rule with rejected and accepted neighbours.
//! Programs are uBPF-syntax assembly with `{k:kfunc}`, `{o:struct.field}`
//! and `{s:struct}` templates resolved against the host ABI.

mod common;

use bpfoom_insn::opcode::*;
use bpfoom_insn::Insn;
use bpfoom_verifier::{Options, RejectKind::*};
use common::*;

type Case = (&'static str, Ctx, &'static str, Expect);

const A: Expect = Expect::Accept;
const fn no(k: bpfoom_verifier::RejectKind, s: &'static str) -> Expect {
    Expect::Reject(k, s)
}

fn cases() -> Vec<Case> {
    vec![
        // ---- structure and returns
        ("minimal", OOM, "mov %r0, 0\nexit", A),
        ("fallthrough_off_end", OOM, "mov %r0, 0", no(Structure, "falls through off the end")),
        ("jump_out_of_range", OOM, "ja +5\nexit", no(Structure, "jump out of range")),
        ("jump_into_ld_imm64", OOM, "mov %r0, 0\njeq %r0, 0, +1\nlddw %r2, 1\nexit", no(Structure, "middle of ld_imm64")),
        ("unreachable_code", OOM, "mov %r0, 0\nexit\nmov %r0, 1\nexit", no(Structure, "unreachable insn 2")),
        ("write_r10", OOM, "mov %r10, 0\nmov %r0, 0\nexit", no(FramePointer, "read only")),
        ("read_r10_ok", OOM, "mov %r2, %r10\nadd %r2, -8\nstdw [%r2+0], 1\nmov %r0, 0\nexit", A),
        ("uninit_register", OOM, "mov %r0, %r2\nexit", no(UninitRegister, "R2 !read_ok")),
        ("r0_uninit_at_exit", OOM, "exit", no(UninitRegister, "R0 !read_ok")),
        ("return_out_of_range", OOM, "mov %r0, 3\nexit", no(ReturnValue, "should have been in [0, 2]")),
        ("return_backoff_ok", OOM, "mov %r0, 2\nexit", A),
        ("return_unbounded", OOM, "ldxdw %r0, [%r1+0]\nldxdw %r0, [%r0+{o:oom_control.totalpages}]\nexit", no(ReturnValue, "R0 has smin=")),
        ("return_masked_ok", OOM, "ldxdw %r0, [%r1+0]\nldxdw %r0, [%r0+{o:oom_control.totalpages}]\nand %r0, 1\nexit", A),
        ("return_pointer", OOM, "mov %r0, %r10\nexit", no(ReturnValue, "should have been in")),
        ("void_callback_any_r0", OFFLINE, "exit", A),
        ("return_32bit_subreg_ok", OOM, "lddw %r0, 0x100000001\nexit", A),
        // ---- context and typed kernel objects
        ("ctx_third_arg", OOM, "ldxdw %r2, [%r1+16]\nmov %r0, 0\nexit", no(InvalidMemAccess, "invalid bpf_context access off=16")),
        ("ctx_narrow_load", OOM, "ldxw %r2, [%r1+0]\nmov %r0, 0\nexit", no(InvalidMemAccess, "invalid bpf_context access")),
        ("ctx_store", OOM, "stdw [%r1+0], 0\nmov %r0, 0\nexit", no(ReadOnly, "cannot write into ctx")),
        ("ctx_scalar_arg", OFFLINE, "ldxdw %r2, [%r1+8]\njeq %r2, 5, +0\nexit", A),
        ("oc_field_read", OOM, "ldxdw %r2, [%r1+0]\nldxw %r3, [%r2+{o:oom_control.order}]\nldxb %r4, [%r2+{o:oom_control.bpf_memory_freed}]\nmov %r0, 0\nexit", A),
        ("oc_memory_freed_write", OOM, "ldxdw %r2, [%r1+0]\nstb [%r2+{o:oom_control.bpf_memory_freed}], 1\nmov %r0, 1\nexit", no(ReadOnly, "only read is supported")),
        ("oc_stx_write", OOM, "ldxdw %r2, [%r1+0]\nmov %r3, 1\nstxw [%r2+{o:oom_control.order}], %r3\nmov %r0, 0\nexit", no(ReadOnly, "only read is supported")),
        ("oc_plus_one_memory_freed", OOM, "ldxdw %r2, [%r1+0]\nadd %r2, {s:oom_control}\nldxb %r3, [%r2+{o:oom_control.bpf_memory_freed}]\nmov %r0, 0\nexit", no(InvalidMemAccess, "access beyond struct oom_control")),
        ("oc_negative_offset", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2-8]\nmov %r0, 0\nexit", no(InvalidMemAccess, "access beyond struct oom_control")),
        ("oc_padding", OOM, "ldxdw %r2, [%r1+0]\nldxb %r3, [%r2+45]\nmov %r0, 0\nexit", no(InvalidMemAccess, "padding")),
        ("oc_across_fields", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2+{o:oom_control.gfp_mask}]\nmov %r0, 0\nexit", no(InvalidMemAccess, "crosses field")),
        ("oc_partial_pointer", OOM, "ldxdw %r2, [%r1+0]\nldxw %r3, [%r2+{o:oom_control.memcg}]\nmov %r0, 0\nexit", no(InvalidMemAccess, "partial read of pointer")),
        ("oc_memcg_unchecked", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2+{o:oom_control.memcg}]\nldxdw %r4, [%r3+0]\nmov %r0, 0\nexit", no(NullDeref, "may be NULL")),
        ("oc_memcg_checked", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2+{o:oom_control.memcg}]\nmov %r0, 0\njeq %r3, 0, +1\nldxb %r0, [%r3+{o:mem_cgroup.oom_group}]\nand %r0, 1\nexit", A),
        ("oc_memcg_copy_checked", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2+{o:oom_control.memcg}]\nmov %r4, %r3\nmov %r0, 0\njeq %r3, 0, +1\nldxdw %r0, [%r4+0]\nmov %r0, 0\nexit", A),
        ("walked_no_null_check", OOM, "ldxdw %r2, [%r1+8]\nldxdw %r3, [%r2+{o:cgroup.kn}]\nldxdw %r0, [%r3+{o:kernfs_node.id}]\nand %r0, 1\nexit", A),
        ("walked_two_levels", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2+{o:oom_control.chosen}]\nldxdw %r3, [%r3+{o:task_struct.signal}]\nldxsh %r0, [%r3+{o:signal_struct.oom_score_adj}]\nmov %r0, 0\nexit", A),
        ("task_comm_byte", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2+{o:oom_control.chosen}]\nldxb %r0, [%r3+{o:task_struct.comm}]\nmov %r0, 0\nexit", A),
        ("task_comm_beyond", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2+{o:oom_control.chosen}]\nadd %r3, {o:task_struct.comm}\nldxh %r0, [%r3+15]\nmov %r0, 0\nexit", no(InvalidMemAccess, "")),
        ("btf_variable_offset", OOM, "ldxdw %r2, [%r1+0]\nldxw %r3, [%r2+{o:oom_control.order}]\nand %r3, 4\nadd %r2, %r3\nldxw %r0, [%r2+8]\nmov %r0, 0\nexit", no(InvalidMemAccess, "variable offset")),
        ("handler_name_is_scalar", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2+{o:oom_control.bpf_handler_name}]\nldxb %r0, [%r3+0]\nmov %r0, 0\nexit", no(InvalidMemAccess, "invalid mem access 'scalar'")),
        ("psi_trigger_read", PSI_EVENT, "ldxdw %r2, [%r1+8]\nldxdw %r3, [%r2+{o:psi_trigger.cgroup_id}]\nexit", A),
        // ---- stack
        ("stack_uninit_read", OOM, "ldxdw %r0, [%r10-8]\nexit", no(ReturnValue, "should have been in")),
        ("stack_write_read", OOM, "stdw [%r10-8], 1\nldxdw %r0, [%r10-8]\nexit", A),
        ("stack_zero_fill", OOM, "stw [%r10-4], 0\nldxw %r0, [%r10-4]\nexit", A),
        ("stack_partial_uninit", OOM, "stw [%r10-8], 0\nldxdw %r0, [%r10-8]\nand %r0, 1\nexit", A),
        ("stack_out_of_bounds", OOM, "stdw [%r10-520], 0\nmov %r0, 0\nexit", no(Stack, "outside the 512-byte stack")),
        ("stack_above_fp", OOM, "stdw [%r10+0], 0\nmov %r0, 0\nexit", no(Stack, "outside the 512-byte stack")),
        ("stack_deepest_ok", OOM, "stdw [%r10-512], 0\nmov %r0, 0\nexit", A),
        ("spill_fill_pointer", OOM, "stxdw [%r10-8], %r1\nldxdw %r2, [%r10-8]\nldxdw %r3, [%r2+0]\nmov %r0, 0\nexit", A),
        ("fill_partial_pointer", OOM, "stxdw [%r10-8], %r1\nldxw %r2, [%r10-8]\nmov %r0, 0\nexit", no(Stack, "spilled pointer")),
        ("spill_misaligned_pointer", OOM, "stxdw [%r10-12], %r1\nmov %r0, 0\nexit", no(Stack, "misaligned stack access")),
        ("spill_narrow_pointer", OOM, "stxw [%r10-8], %r1\nmov %r0, 0\nexit", no(Stack, "invalid size of register spill")),
        ("overwrite_spilled_pointer", OOM, "stxdw [%r10-8], %r1\nstb [%r10-8], 0\nldxdw %r2, [%r10-8]\nldxdw %r3, [%r2+0]\nmov %r0, 0\nexit", no(InvalidMemAccess, "invalid mem access 'scalar'")),
        ("spill_bounds_kept", OOM, "ldxdw %r2, [%r1+0]\nldxw %r3, [%r2+{o:oom_control.order}]\nand %r3, 1\nstxdw [%r10-8], %r3\nldxdw %r0, [%r10-8]\nexit", A),
        ("spill32_bounds_kept", OOM, "ldxdw %r2, [%r1+0]\nldxw %r3, [%r2+{o:oom_control.order}]\nand %r3, 2\nstxw [%r10-4], %r3\nldxw %r0, [%r10-4]\nexit", A),
        (
            "stack_misaligned_scalar",
            OOM,
            "stw [%r10-6], 0\nmov %r0, 0\nexit",
            no(Stack, "misaligned stack access"),
        ),
        (
            "stack_narrow_const_fill",
            OOM,
            "stdw [%r10-8], 0\nsth [%r10-8], 2\nldxb %r0, [%r10-8]\nexit",
            A,
        ),
        // ---- maps and scalar bounds
        ("map_lookup_unchecked", OOM, "ldxdw %r3, [%r1+0]\nldxw %r3, [%r3+{o:oom_control.order}]\nstxw [%r10-4], %r3\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nldxdw %r1, [%r0+0]\nmov %r0, 0\nexit", no(NullDeref, "may be NULL")),
        ("array_const_key_not_null", OOM, "stw [%r10-4], 3\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nldxdw %r1, [%r0+0]\nmov %r0, 0\nexit", A),
        ("array_key_out_of_range", OOM, "stw [%r10-4], 16\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nldxdw %r1, [%r0+0]\nmov %r0, 0\nexit", no(NullDeref, "may be NULL")),
        ("hash_const_key_unchecked", OOM, "stdw [%r10-8], 0\nldmapfd %r1, 1\nmov %r2, %r10\nadd %r2, -8\ncall 1\nldxdw %r1, [%r0+0]\nmov %r0, 0\nexit", no(NullDeref, "may be NULL")),
        ("map_lookup_checked", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, +2\nldxdw %r1, [%r0+56]\nstxdw [%r0+0], %r1\nmov %r0, 0\nexit", A),
        ("map_value_oob", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, +1\nldxdw %r1, [%r0+60]\nmov %r0, 0\nexit", no(InvalidMemAccess, "value_size=64")),
        ("map_key_uninit", OOM, "ldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nmov %r0, 0\nexit", A),
        ("map_key_too_short", OOM, "stw [%r10-4], 0\nldmapfd %r1, 1\nmov %r2, %r10\nadd %r2, -4\ncall 1\nmov %r0, 0\nexit", no(Stack, "invalid indirect read")),
        ("map_update_value_short", OOM, "stdw [%r10-8], 0\nldmapfd %r1, 1\nmov %r2, %r10\nadd %r2, -8\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 0\ncall 2\nmov %r0, 0\nexit", no(Stack, "invalid indirect read")),
        ("map_update_ok", OOM, "stdw [%r10-8], 0\nstdw [%r10-16], 0\nstdw [%r10-24], 0\nldmapfd %r1, 1\nmov %r2, %r10\nadd %r2, -8\nmov %r3, %r10\nadd %r3, -24\nmov %r4, 0\ncall 2\nmov %r0, 0\nexit", A),
        ("map_index_bounded_jlt", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r1, [%r0+0]\njge %r1, 8, done\nlsh %r1, 3\nadd %r0, %r1\nldxdw %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", A),
        ("map_index_bounded_and", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r1, [%r0+0]\nand %r1, 7\nlsh %r1, 3\nadd %r0, %r1\nldxdw %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", A),
        ("map_index_unbounded", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r1, [%r0+0]\nlsh %r1, 3\nadd %r0, %r1\nldxdw %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", no(PointerArith, "unbounded")),
        ("map_index_off_by_one", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r1, [%r0+0]\njgt %r1, 8, done\nlsh %r1, 3\nadd %r0, %r1\nldxdw %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", no(InvalidMemAccess, "value_size=64")),
        ("map_index_signed_only", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r1, [%r0+0]\njsgt %r1, 7, done\nlsh %r1, 3\nadd %r0, %r1\nldxdw %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", no(PointerArith, "")),
        ("map_index_signed_both", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r1, [%r0+0]\njsgt %r1, 7, done\njslt %r1, 0, done\nlsh %r1, 3\nadd %r0, %r1\nldxdw %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", A),
        ("subreg_jmp32_bound", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxw %r1, [%r0+0]\njgt32 %r1, 7, done\nlsh %r1, 3\nadd %r0, %r1\nldxdw %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", A),
        ("jmp32_on_64bit_value", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r1, [%r0+0]\njgt32 %r1, 7, done\nadd %r0, %r1\nldxb %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", no(PointerArith, "unbounded")),
        ("mov32_zero_extends", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r1, [%r0+0]\nmov32 %r1, %r1\njgt32 %r1, 63, done\nadd %r0, %r1\nldxb %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", A),
        ("bounds_on_copy", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r1, [%r0+0]\nmov %r3, %r1\njgt %r3, 63, done\nadd %r0, %r1\nldxb %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", A),
        ("bounds_across_spill", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r6, [%r0+0]\nstxdw [%r10-16], %r6\njgt %r6, 63, done\nldxdw %r7, [%r10-16]\nadd %r0, %r7\nldxb %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", A),
        ("spill_without_check", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, done\nldxdw %r6, [%r0+0]\nstxdw [%r10-16], %r6\nldxdw %r7, [%r10-16]\nadd %r0, %r7\nldxb %r1, [%r0+0]\ndone:\nmov %r0, 0\nexit", no(PointerArith, "unbounded")),
        ("pointer_into_map", OOM, "stw [%r10-4], 0\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, +1\nstxdw [%r0+0], %r10\nmov %r0, 0\nexit", A),
        ("rodata_read_const", OOM, "ldmapvalue %r1, 3, 8\nldxb %r0, [%r1+0]\nexit", no(ReturnValue, "smin=7")),
        ("rodata_write", OOM, "ldmapvalue %r1, 3, 0\nstb [%r1+0], 1\nmov %r0, 0\nexit", no(ReadOnly, "write into map forbidden")),
        ("bss_write", OOM, "ldmapvalue %r1, 4, 8\nstdw [%r1+0], 1\nldxdw %r2, [%r1+0]\nmov %r0, 0\nexit", A),
        ("bss_write_oob", OOM, "ldmapvalue %r1, 4, 8\nstdw [%r1+4], 1\nmov %r0, 0\nexit", no(InvalidMemAccess, "value_size=16")),
        ("rodata_update_helper", OOM, "stw [%r10-4], 0\nstdw [%r10-40], 0\nldmapfd %r1, 3\nmov %r2, %r10\nadd %r2, -4\nmov %r3, %r10\nadd %r3, -40\nmov %r4, 0\ncall 2\nmov %r0, 0\nexit", no(ReadOnly, "")),
        ("lookup_on_ringbuf", OOM, "stw [%r10-4], 0\nldmapfd %r1, 2\nmov %r2, %r10\nadd %r2, -4\ncall 1\nmov %r0, 0\nexit", no(Call, "cannot pass map rb")),
        ("div_by_zero_imm", OOM, "mov %r0, 1\ndiv %r0, 0\nexit", no(InvalidInsn, "division by zero")),
        ("div_by_zero_reg_ok", OOM, "mov %r0, 1\nmov %r1, 0\ndiv %r0, %r1\nexit", A),
        ("shift_too_far", OOM, "mov %r0, 1\nlsh %r0, 64\nexit", no(InvalidInsn, "invalid shift 64")),
        ("shift_63_ok", OOM, "mov %r0, 1\nlsh %r0, 63\nrsh %r0, 63\nexit", A),
        ("const_fold_return", OOM, "mov %r0, 10\nmul %r0, 3\nmod %r0, 7\nsub %r0, 1\nexit", A),
        ("alu32_wraps", OOM, "mov32 %r0, -1\nadd32 %r0, 3\nexit", A),
        // ---- pointer arithmetic and leaks
        ("ctx_add_const", OOM, "add %r1, 8\nldxdw %r2, [%r1+0]\nldxw %r0, [%r2+{o:cgroup.level}]\nmov %r0, 0\nexit", A),
        ("ptr_mul", OOM, "mul %r1, 2\nmov %r0, 0\nexit", no(PointerArith, "operator prohibited")),
        ("ptr_alu32", OOM, "add32 %r1, 8\nmov %r0, 0\nexit", no(PointerArith, "32-bit pointer arithmetic")),
        ("map_ptr_arith", OOM, "ldmapfd %r1, 0\nadd %r1, 8\nmov %r0, 0\nexit", no(PointerArith, "map_ptr")),
        ("null_ptr_arith", OOM, "ldxdw %r3, [%r1+0]\nldxw %r3, [%r3+{o:oom_control.order}]\nstxw [%r10-4], %r3\nldmapfd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nadd %r0, 8\nmov %r0, 0\nexit", no(NullDeref, "null-check it first")),
        ("ptr_minus_ptr", OOM, "mov %r2, %r10\nadd %r2, -16\nmov %r0, %r10\nsub %r0, %r2\nand %r0, 1\nexit", A),
        ("ptr_compare_scalar", OOM, "mov %r2, 5\njgt %r1, %r2, +0\nmov %r0, 0\nexit", A),
        ("ptr_compare_null_ok", OOM, "jeq %r1, 0, +0\nmov %r0, 0\nexit", A),
        ("ptr_mov32", OOM, "mov32 %r2, %r1\nmov %r0, 0\nexit", A),
        // ---- helpers
        ("unknown_helper", OOM, "call 999\nmov %r0, 0\nexit", no(Call, "invalid func unknown#999: Linux has no helper with this number (its helpers are #0..#211); bpfoom provides: bpf_map_lookup_elem, ")),
        // A Linux helper bpfoom does not offer is named, with what is offered.
        ("linux_helper_not_provided", OOM, "call 14\nmov %r0, 0\nexit", no(Call, "helper bpf_get_current_pid_tgid (#14) is not available to bpf_oom_ops programs (bpfoom provides: bpf_map_lookup_elem, bpf_map_update_elem, ")),
        ("linux_helper_not_provided_psi", PSI_EVENT, "call 4\nmov %r0, 0\nexit", no(Call, "helper bpf_probe_read (#4) is not available to bpf_psi_ops programs")),
        ("core_poison", OOM, "call 195896080\nmov %r0, 0\nexit", no(Call, "CO-RE relocation")),
        ("args_clobbered", OOM, "call 5\nmov %r0, %r1\nexit", no(UninitRegister, "R1 !read_ok")),
        ("callee_saved_kept", OOM, "mov %r6, 1\ncall 5\nmov %r0, %r6\nexit", A),
        ("printk_rodata", OOM, "ldmapvalue %r1, 3, 0\nmov %r2, 8\ncall 6\nmov %r0, 0\nexit", A),
        ("printk_size_too_big", OOM, "ldmapvalue %r1, 3, 0\nmov %r2, 40\ncall 6\nmov %r0, 0\nexit", no(InvalidMemAccess, "value_size=32")),
        ("ringbuf_ok", OOM, "ldmapfd %r1, 2\nmov %r2, 16\nmov %r3, 0\ncall 131\njeq %r0, 0, done\nstdw [%r0+8], 1\nmov %r1, %r0\nmov %r2, 0\ncall 132\ndone:\nmov %r0, 0\nexit", A),
        ("ringbuf_unchecked", OOM, "ldmapfd %r1, 2\nmov %r2, 16\nmov %r3, 0\ncall 131\nstdw [%r0+8], 1\nmov %r1, %r0\nmov %r2, 0\ncall 132\nmov %r0, 0\nexit", no(NullDeref, "may be NULL")),
        ("ringbuf_oob", OOM, "ldmapfd %r1, 2\nmov %r2, 16\nmov %r3, 0\ncall 131\njeq %r0, 0, done\nstdw [%r0+16], 1\nmov %r1, %r0\nmov %r2, 0\ncall 132\ndone:\nmov %r0, 0\nexit", no(InvalidMemAccess, "")),
        ("ringbuf_leak", OOM, "ldmapfd %r1, 2\nmov %r2, 16\nmov %r3, 0\ncall 131\nmov %r0, 0\nexit", no(Reference, "Unreleased reference")),
        ("ringbuf_leak_one_path", OOM, "ldmapfd %r1, 2\nmov %r2, 16\nmov %r3, 0\ncall 131\njeq %r0, 0, done\nmov %r6, %r0\nldxdw %r1, [%r10-8]\ndone:\nmov %r0, 0\nexit", no(Reference, "Unreleased reference")),
        ("ringbuf_double_submit", OOM, "ldmapfd %r1, 2\nmov %r2, 16\nmov %r3, 0\ncall 131\njeq %r0, 0, done\nmov %r6, %r0\nmov %r1, %r6\nmov %r2, 0\ncall 133\nmov %r1, %r6\nmov %r2, 0\ncall 133\ndone:\nmov %r0, 0\nexit", no(Call, "expected=ringbuf_mem")),
        ("ringbuf_use_after_submit", OOM, "ldmapfd %r1, 2\nmov %r2, 16\nmov %r3, 0\ncall 131\njeq %r0, 0, done\nmov %r6, %r0\nmov %r1, %r6\nmov %r2, 0\ncall 132\nstdw [%r6+0], 1\ndone:\nmov %r0, 0\nexit", no(InvalidMemAccess, "invalid mem access 'scalar'")),
        ("ringbuf_var_size", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r2, [%r2+{o:oom_control.totalpages}]\nldmapfd %r1, 2\nmov %r3, 0\ncall 131\nmov %r0, 0\nexit", no(Call, "not a known constant")),
        ("ringbuf_submit_offset", OOM, "ldmapfd %r1, 2\nmov %r2, 16\nmov %r3, 0\ncall 131\njeq %r0, 0, done\nmov %r6, %r0\nmov %r1, %r0\nadd %r1, 8\nmov %r2, 0\ncall 132\ndone:\nmov %r0, 0\nexit", no(Call, "start of the ring buffer record")),
        // ---- kfuncs: references, trust, scope, sleepable, RCU
        ("root_memcg_get_put", OOM, "call kfunc {k:bpf_get_root_mem_cgroup}\njeq %r0, 0, done\nmov %r1, %r0\ncall kfunc {k:bpf_put_mem_cgroup}\ndone:\nmov %r0, 0\nexit", A),
        ("root_memcg_leak", OOM, "call kfunc {k:bpf_get_root_mem_cgroup}\nmov %r0, 0\nexit", no(Reference, "Unreleased reference")),
        ("root_memcg_null_leak_ok", OOM, "call kfunc {k:bpf_get_root_mem_cgroup}\njne %r0, 0, put\nmov %r0, 0\nexit\nput:\nmov %r1, %r0\ncall kfunc {k:bpf_put_mem_cgroup}\nmov %r0, 0\nexit", A),
        ("put_unchecked", OOM, "call kfunc {k:bpf_get_root_mem_cgroup}\nmov %r1, %r0\ncall kfunc {k:bpf_put_mem_cgroup}\nmov %r0, 0\nexit", no(NullDeref, "Possibly NULL pointer")),
        ("double_put", OOM, "call kfunc {k:bpf_get_root_mem_cgroup}\njeq %r0, 0, done\nmov %r6, %r0\nmov %r1, %r6\ncall kfunc {k:bpf_put_mem_cgroup}\nmov %r1, %r6\ncall kfunc {k:bpf_put_mem_cgroup}\ndone:\nmov %r0, 0\nexit", no(Call, "expected pointer to struct mem_cgroup")),
        ("use_after_put", OOM, "call kfunc {k:bpf_get_root_mem_cgroup}\njeq %r0, 0, done\nmov %r6, %r0\nmov %r1, %r6\ncall kfunc {k:bpf_put_mem_cgroup}\nldxb %r1, [%r6+{o:mem_cgroup.oom_group}]\ndone:\nmov %r0, 0\nexit", no(InvalidMemAccess, "invalid mem access 'scalar'")),
        ("put_unreferenced", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r1, [%r2+{o:oom_control.memcg}]\njeq %r1, 0, done\ncall kfunc {k:bpf_put_mem_cgroup}\ndone:\nmov %r0, 0\nexit", no(Reference, "refcounted")),
        ("usage_of_oc_memcg", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r1, [%r2+{o:oom_control.memcg}]\njeq %r1, 0, done\ncall kfunc {k:bpf_mem_cgroup_usage}\ndone:\nmov %r0, 0\nexit", A),
        ("usage_of_null", OOM, "mov %r1, 0\ncall kfunc {k:bpf_mem_cgroup_usage}\nmov %r0, 0\nexit", no(NullDeref, "must not be NULL")),
        ("usage_wrong_type", OOM, "ldxdw %r1, [%r1+8]\ncall kfunc {k:bpf_mem_cgroup_usage}\nmov %r0, 0\nexit", no(Call, "expected pointer to struct mem_cgroup")),
        ("usage_scalar_arg", OOM, "mov %r1, 8\ncall kfunc {k:bpf_mem_cgroup_usage}\nmov %r0, 0\nexit", no(Call, "expected pointer to struct mem_cgroup")),
        ("page_state_pointer_idx", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r1, [%r2+{o:oom_control.memcg}]\njeq %r1, 0, done\nmov %r2, %r10\ncall kfunc {k:bpf_mem_cgroup_page_state}\ndone:\nmov %r0, 0\nexit", no(Call, "expected a scalar")),
        ("get_memcg_first_member", OOM, "ldxdw %r1, [%r1+8]\ncall kfunc {k:bpf_get_mem_cgroup}\njeq %r0, 0, done\nmov %r1, %r0\ncall kfunc {k:bpf_put_mem_cgroup}\ndone:\nmov %r0, 0\nexit", A),
        ("get_memcg_walked", OOM, "ldxdw %r1, [%r1+8]\nldxdw %r1, [%r1+{o:cgroup_subsys_state.parent}]\ncall kfunc {k:bpf_get_mem_cgroup}\njeq %r0, 0, done\nmov %r1, %r0\ncall kfunc {k:bpf_put_mem_cgroup}\ndone:\nmov %r0, 0\nexit", no(Trust, "must be a rcu pointer")),
        ("unknown_kfunc", OOM, "call kfunc 9999\nmov %r0, 0\nexit", no(Call, "unknown kfunc id 9999")),
        ("kill_not_sleepable", OOM_NS, "ldxdw %r6, [%r1+0]\nmov %r1, 1\ncall kfunc {k:bpf_task_from_pid}\njeq %r0, 0, done\nmov %r7, %r0\nmov %r1, %r6\nmov %r2, %r7\nldmapvalue %r3, 3, 0\ncall kfunc {k:bpf_oom_kill_process}\nmov %r1, %r7\ncall kfunc {k:bpf_task_release}\ndone:\nmov %r0, 0\nexit", no(Sleepable, "must be sleepable")),
        ("kill_acquired_task", OOM, "ldxdw %r6, [%r1+0]\nmov %r1, 1\ncall kfunc {k:bpf_task_from_pid}\njeq %r0, 0, done\nmov %r7, %r0\nmov %r1, %r6\nmov %r2, %r7\nldmapvalue %r3, 3, 0\ncall kfunc {k:bpf_oom_kill_process}\nmov %r1, %r7\ncall kfunc {k:bpf_task_release}\ndone:\nmov %r0, 1\nexit", A),
        ("kill_walked_task", OOM, "ldxdw %r1, [%r1+0]\nldxdw %r2, [%r1+{o:oom_control.chosen}]\nldmapvalue %r3, 3, 0\ncall kfunc {k:bpf_oom_kill_process}\nmov %r0, 0\nexit", no(Trust, "must be referenced or trusted")),
        ("kill_stack_string", OOM, "ldxdw %r6, [%r1+0]\nmov %r1, 1\ncall kfunc {k:bpf_task_from_pid}\njeq %r0, 0, done\nmov %r7, %r0\nstdw [%r10-8], 0\nmov %r1, %r6\nmov %r2, %r7\nmov %r3, %r10\nadd %r3, -8\ncall kfunc {k:bpf_oom_kill_process}\nmov %r1, %r7\ncall kfunc {k:bpf_task_release}\ndone:\nmov %r0, 0\nexit", no(Call, "const string")),
        ("kill_unterminated_string", OOM, "ldxdw %r6, [%r1+0]\nmov %r1, 1\ncall kfunc {k:bpf_task_from_pid}\njeq %r0, 0, done\nmov %r7, %r0\nmov %r1, %r6\nmov %r2, %r7\nldmapvalue %r3, 3, 16\ncall kfunc {k:bpf_oom_kill_process}\nmov %r1, %r7\ncall kfunc {k:bpf_task_release}\ndone:\nmov %r0, 0\nexit", no(Call, "not NUL-terminated")),
        ("kill_writable_string", OOM, "ldxdw %r6, [%r1+0]\nmov %r1, 1\ncall kfunc {k:bpf_task_from_pid}\njeq %r0, 0, done\nmov %r7, %r0\nmov %r1, %r6\nmov %r2, %r7\nldmapvalue %r3, 4, 0\ncall kfunc {k:bpf_oom_kill_process}\nmov %r1, %r7\ncall kfunc {k:bpf_task_release}\ndone:\nmov %r0, 0\nexit", no(Call, "writable")),
        ("kill_in_rcu", OOM, "ldxdw %r6, [%r1+0]\nmov %r1, 1\ncall kfunc {k:bpf_task_from_pid}\njeq %r0, 0, done\nmov %r7, %r0\ncall kfunc {k:bpf_rcu_read_lock}\nmov %r1, %r6\nmov %r2, %r7\nldmapvalue %r3, 3, 0\ncall kfunc {k:bpf_oom_kill_process}\ncall kfunc {k:bpf_rcu_read_unlock}\nmov %r1, %r7\ncall kfunc {k:bpf_task_release}\ndone:\nmov %r0, 0\nexit", no(Sleepable, "rcu_read_lock region")),
        ("psi_kfunc_in_oom", OOM, "mov %r1, 0\nmov %r2, 0\nmov %r3, 0\nmov %r4, 0\ncall kfunc {k:bpf_out_of_memory}\nmov %r0, 0\nexit", no(Scope, "not allowed in bpf_oom_ops")),
        ("psi_kfunc_in_psi", PSI_EVENT, "mov %r1, 0\nmov %r2, 0\nmov %r3, 0\nmov %r4, 0\ncall kfunc {k:bpf_out_of_memory}\nexit", A),
        ("oom_kfunc_in_psi", PSI_EVENT, "ldxdw %r6, [%r1+0]\nmov %r1, 0\nmov %r2, 0\nmov %r3, 0\ncall kfunc {k:bpf_oom_kill_cgroup}\nexit", no(Scope, "not allowed in bpf_psi_ops")),
        ("rcu_balanced", OOM, "call kfunc {k:bpf_rcu_read_lock}\ncall kfunc {k:bpf_rcu_read_unlock}\nmov %r0, 0\nexit", A),
        ("rcu_unlock_unmatched", OOM, "call kfunc {k:bpf_rcu_read_unlock}\nmov %r0, 0\nexit", no(Rcu, "unmatched rcu read unlock")),
        ("rcu_lock_at_exit", OOM, "call kfunc {k:bpf_rcu_read_lock}\nmov %r0, 0\nexit", no(Rcu, "missing a matching bpf_rcu_read_unlock")),
        ("flush_stats_sleepable_only", OOM_NS, "ldxdw %r2, [%r1+0]\nldxdw %r1, [%r2+{o:oom_control.memcg}]\njeq %r1, 0, done\ncall kfunc {k:bpf_mem_cgroup_flush_stats}\ndone:\nmov %r0, 0\nexit", no(Sleepable, "must be sleepable")),
        // ---- iterators
        ("css_iter_loop", OOM, CSS_LOOP, A),
        ("css_iter_not_destroyed", OOM, "ldxdw %r6, [%r1+8]\ncall kfunc {k:bpf_rcu_read_lock}\nmov %r1, %r10\nadd %r1, -24\nmov %r2, %r6\nmov %r3, 0\ncall kfunc {k:bpf_iter_css_new}\ncall kfunc {k:bpf_rcu_read_unlock}\nmov %r0, 0\nexit", no(Reference, "missing destroy")),
        ("css_iter_outside_rcu", OOM, "ldxdw %r6, [%r1+8]\nmov %r1, %r10\nadd %r1, -24\nmov %r2, %r6\nmov %r3, 0\ncall kfunc {k:bpf_iter_css_new}\nmov %r1, %r10\nadd %r1, -24\ncall kfunc {k:bpf_iter_css_destroy}\nmov %r0, 0\nexit", no(Rcu, "requires RCU critical section")),
        ("iter_next_uninit", OOM, "stdw [%r10-8], 0\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {k:bpf_iter_css_task_next}\nmov %r0, 0\nexit", no(Reference, "expected an initialized iter_css_task")),
        ("iter_double_destroy", OOM, "ldxdw %r6, [%r1+8]\nmov %r1, %r10\nadd %r1, -8\nmov %r2, %r6\nmov %r3, 1\ncall kfunc {k:bpf_iter_css_task_new}\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {k:bpf_iter_css_task_destroy}\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {k:bpf_iter_css_task_destroy}\nmov %r0, 0\nexit", no(Reference, "expected an initialized iter_css_task")),
        ("iter_slot_overwrite", OOM, "ldxdw %r6, [%r1+8]\nmov %r1, %r10\nadd %r1, -8\nmov %r2, %r6\nmov %r3, 1\ncall kfunc {k:bpf_iter_css_task_new}\nstdw [%r10-8], 0\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {k:bpf_iter_css_task_destroy}\nmov %r0, 0\nexit", no(Reference, "iterator slot")),
        ("iter_wrong_kind", OOM, "ldxdw %r6, [%r1+8]\nmov %r1, %r10\nadd %r1, -8\nmov %r2, %r6\nmov %r3, 1\ncall kfunc {k:bpf_iter_css_task_new}\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {k:bpf_iter_css_next}\nmov %r1, %r10\nadd %r1, -8\ncall kfunc {k:bpf_iter_css_task_destroy}\nmov %r0, 0\nexit", no(Reference, "expected an initialized iter_css")),
        // The count is returned as `n & 1`: the `& 1` alone keeps the value
        // in the return range, so the count needs no precision, is widened
        // at the iterator's next call and the loop converges (Linux has no
        // return-range rule for struct_ops and accepts the same shape:
        // parity twin `prec_iter_count_unused`).
        ("task_iter_count", OOM, TASK_COUNT, A),
        // Compared after the loop (`n > 3`), the count decides a branch on
        // the first round, where it is a constant: it is precise, never
        // widened, and the loop is counted out element by element until a
        // limit, as the kernel does with `iter_css_task_count`.
        ("task_iter_count_compared", OOM, TASK_COUNT_COMPARED.as_str(), no(TooComplex, "BPF program is too large. Processed 1000001 insn")),
        ("task_iter_acquire_kill", OOM, TASK_KILL, A),
        ("task_iter_leak_in_loop", OOM, TASK_LEAK, no(Reference, "Unreleased reference")),
        // ---- loops
        ("bounded_loop", OOM, "mov %r1, 0\nmov %r0, 0\nloop:\nadd %r1, 1\njlt %r1, 100, loop\nexit", A),
        ("bounded_loop_over_map_array", OOM, MAP_ARRAY_LOOP, A),
        ("infinite_loop_self", OOM, "mov %r0, 0\nloop:\nja loop", no(InfiniteLoop, "infinite loop")),
        ("infinite_loop_unknown", OOM, "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r2+{o:oom_control.totalpages}]\nmov %r0, 0\nloop:\nmov %r3, %r3\njne %r3, 0, loop\nexit", no(InfiniteLoop, "infinite loop")),
        ("loop_too_long", OOM, "mov %r1, 0\nmov %r0, 0\nloop:\nadd %r1, 1\njlt %r1, 10000000, loop\nexit", no(TooComplex, "BPF program is too large. Processed 1000001 insn")),
        // ---- bpf-to-bpf calls
        ("subprog_call", OOM, "mov %r1, 1\ncall local f\nexit\nf:\nmov %r0, %r1\nexit", A),
        ("subprog_recursion", OOM, "call local f\nmov %r0, 0\nexit\nf:\ncall local f\nexit", no(Call, "recursive call")),
        ("subprog_returns_stack", OOM, "call local f\nmov %r0, 0\nexit\nf:\nmov %r0, %r10\nadd %r0, -8\nexit", no(PointerLeak, "own stack")),
        ("subprog_writes_caller_stack", OOM, "mov %r1, %r10\nadd %r1, -8\ncall local f\nldxdw %r0, [%r10-8]\nexit\nf:\nstdw [%r1+0], 1\nexit", A),
        ("subprog_clobbers_args", OOM, "mov %r6, 0\nmov %r1, 2\ncall local f\nmov %r0, %r1\nexit\nf:\nexit", no(UninitRegister, "R1 !read_ok")),
        ("subprog_keeps_r6", OOM, "mov %r6, 2\ncall local f\nmov %r0, %r6\nexit\nf:\nmov %r6, 99\nexit", A),
        ("subprog_fallthrough", OOM, "call local f\nmov %r0, 0\nexit\nf:\nmov %r0, 0", no(Structure, "falls through off the end")),
        ("jump_into_subprog", OOM, "ja f\ncall local f\nmov %r0, 0\nexit\nf:\nmov %r0, 0\nexit", no(Structure, "another function")),
        ("subprog_stack_ptr_to_caller", OOM, "mov %r1, %r10\nadd %r1, -8\ncall local f\nmov %r0, 0\nexit\nf:\nmov %r2, %r10\nadd %r2, -8\nstxdw [%r1+0], %r2\nexit", no(PointerLeak, "callee's stack")),
        // ---- atomics
        ("atomic_add_stack", OOM, "stdw [%r10-8], 0\nmov %r1, 1\nlock add [%r10-8], %r1\nmov %r0, 0\nexit", A),
        ("atomic_on_ctx", OOM, "mov %r2, 1\nlock add [%r1+0], %r2\nmov %r0, 0\nexit", no(InvalidMemAccess, "BPF_ATOMIC")),
        ("atomic_fetch_map", OOM, "ldmapvalue %r1, 4, 0\nmov %r2, 1\nlock fetch add [%r1+0], %r2\nmov %r0, %r2\nand %r0, 1\nexit", A),
        ("atomic_uninit_stack", OOM, "mov %r1, 1\nlock add [%r10-8], %r1\nmov %r0, 0\nexit", A),
        // ---- map references
        ("map_index_out_of_range", OOM, "ldmapfd %r1, 9\nmov %r0, 0\nexit", no(InvalidInsn, "refers to map 9")),
    ]
}

/// Iterate descendants under RCU; read a walked field per element.
const CSS_LOOP: &str = "
    ldxdw %r6, [%r1+8]
    call kfunc {k:bpf_rcu_read_lock}
    mov %r1, %r10
    add %r1, -24
    mov %r2, %r6
    mov %r3, 0
    call kfunc {k:bpf_iter_css_new}
loop:
    mov %r1, %r10
    add %r1, -24
    call kfunc {k:bpf_iter_css_next}
    jeq %r0, 0, out
    ldxdw %r2, [%r0+{o:cgroup_subsys_state.cgroup}]
    ldxw %r3, [%r2+{o:cgroup.level}]
    ja loop
out:
    mov %r1, %r10
    add %r1, -24
    call kfunc {k:bpf_iter_css_destroy}
    call kfunc {k:bpf_rcu_read_unlock}
    mov %r0, 0
    exit";

/// Count the tasks of a cgroup (a counter that never converges by value).
const TASK_COUNT: &str = "
    ldxdw %r6, [%r1+8]
    mov %r7, 0
    mov %r1, %r10
    add %r1, -8
    mov %r2, %r6
    mov %r3, 1
    call kfunc {k:bpf_iter_css_task_new}
loop:
    mov %r1, %r10
    add %r1, -8
    call kfunc {k:bpf_iter_css_task_next}
    jeq %r0, 0, out
    add %r7, 1
    ja loop
out:
    mov %r1, %r10
    add %r1, -8
    call kfunc {k:bpf_iter_css_task_destroy}
    mov %r0, %r7
    and %r0, 1
    exit";

/// As [`TASK_COUNT`], returning `n > 3`.
static TASK_COUNT_COMPARED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let ret = "mov %r0, %r7\n    and %r0, 1\n";
    assert!(TASK_COUNT.contains(ret), "TASK_COUNT's return changed");
    TASK_COUNT.replace(ret, "mov %r0, 0\n    jle %r7, 3, +1\n    mov %r0, 1\n")
});

/// Acquire each task, kill it, release it.
const TASK_KILL: &str = "
    ldxdw %r6, [%r1+0]
    ldxdw %r7, [%r1+8]
    mov %r8, 0
    mov %r1, %r10
    add %r1, -8
    mov %r2, %r7
    mov %r3, 1
    call kfunc {k:bpf_iter_css_task_new}
loop:
    mov %r1, %r10
    add %r1, -8
    call kfunc {k:bpf_iter_css_task_next}
    jeq %r0, 0, out
    mov %r1, %r0
    call kfunc {k:bpf_task_acquire}
    jeq %r0, 0, loop
    mov %r9, %r0
    mov %r1, %r6
    mov %r2, %r9
    ldmapvalue %r3, 3, 0
    call kfunc {k:bpf_oom_kill_process}
    jne %r0, 0, skip
    mov %r8, 1
skip:
    mov %r1, %r9
    call kfunc {k:bpf_task_release}
    ja loop
out:
    mov %r1, %r10
    add %r1, -8
    call kfunc {k:bpf_iter_css_task_destroy}
    mov %r0, %r8
    exit";

/// Acquire tasks in a loop and forget to release one of them.
const TASK_LEAK: &str = "
    ldxdw %r7, [%r1+8]
    mov %r1, %r10
    add %r1, -8
    mov %r2, %r7
    mov %r3, 1
    call kfunc {k:bpf_iter_css_task_new}
loop:
    mov %r1, %r10
    add %r1, -8
    call kfunc {k:bpf_iter_css_task_next}
    jeq %r0, 0, out
    mov %r1, %r0
    call kfunc {k:bpf_task_acquire}
    jeq %r0, 0, loop
    ja loop
out:
    mov %r1, %r10
    add %r1, -8
    call kfunc {k:bpf_iter_css_task_destroy}
    mov %r0, 0
    exit";

/// Sum the 8 u64 of an array map value in a bounded loop with a running index.
const MAP_ARRAY_LOOP: &str = "
    stw [%r10-4], 0
    ldmapfd %r1, 0
    mov %r2, %r10
    add %r2, -4
    call 1
    jeq %r0, 0, done
    mov %r6, 0
    mov %r7, 0
loop:
    mov %r1, %r6
    lsh %r1, 3
    mov %r2, %r0
    add %r2, %r1
    ldxdw %r3, [%r2+0]
    add %r7, %r3
    add %r6, 1
    jlt %r6, 8, loop
done:
    mov %r0, 0
    exit";

#[test]
fn corpus() {
    let opts = Options::default();
    let mut failures = Vec::new();
    let cases = cases();
    for (name, ctx, src, exp) in &cases {
        let insns = asm(src);
        let res = run_insns(&insns, *ctx, &opts);
        if let Some(f) = check(name, &res, *exp) {
            failures.push(f);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus programs failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    assert!(cases.len() >= 80, "{}", cases.len());
}

fn raw(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn::new(code, dst, src, off, imm)
}
const EXIT_I: Insn = Insn::new(EXIT, 0, 0, 0, 0);
const R0_ZERO: Insn = Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0);

/// Encodings the assembler cannot write.
#[test]
fn invalid_encodings() {
    let bad: Vec<(&str, Vec<Insn>, &str)> = vec![
        (
            "unknown opcode",
            vec![R0_ZERO, raw(0xff, 0, 0, 0, 0), EXIT_I],
            "unknown opcode",
        ),
        (
            "ld_abs",
            vec![R0_ZERO, raw(BPF_LD | 0x20 | BPF_W, 0, 0, 0, 0), EXIT_I],
            "BPF_LD_[ABS|IND]",
        ),
        (
            "bad register",
            vec![raw(BPF_ALU64 | BPF_MOV | BPF_K, 11, 0, 0, 0), EXIT_I],
            "invalid register",
        ),
        (
            "reserved src on K alu",
            vec![raw(BPF_ALU64 | BPF_MOV | BPF_K, 0, 3, 0, 0), EXIT_I],
            "invalid instruction encoding",
        ),
        (
            "truncated ld_imm64",
            vec![R0_ZERO, EXIT_I, raw(LD_IMM64, 0, 0, 0, 0)],
            "missing second slot",
        ),
        (
            "exit with fields",
            vec![R0_ZERO, raw(EXIT, 1, 0, 0, 0)],
            "invalid instruction encoding",
        ),
        (
            "bad atomic",
            vec![
                R0_ZERO,
                raw(BPF_STX | BPF_ATOMIC | BPF_DW, 10, 0, -8, 0x33),
                EXIT_I,
            ],
            "invalid atomic",
        ),
    ];
    for (name, insns, text) in bad {
        let res = run_insns(&insns, OOM, &Options::default());
        if let Some(f) = check(name, &res, Expect::Reject(InvalidInsn, text)) {
            panic!("{f}");
        }
    }
    let empty = run_insns(&[], OOM, &Options::default());
    assert!(check(
        "empty",
        &empty,
        Expect::Reject(Structure, "no instructions")
    )
    .is_none());
}

/// A chain of 9 nested functions exceeds the frame limit; 8 is fine.
#[test]
fn call_depth_limit() {
    for (depth, exp) in [(7, A), (8, no(Call, "too deep"))] {
        let mut src = String::from("call local f1\nmov %r0, 0\nexit\n");
        for d in 1..=depth {
            if d < depth {
                src += &format!("f{d}:\ncall local f{}\nexit\n", d + 1);
            } else {
                src += &format!("f{d}:\nmov %r0, 0\nexit\n");
            }
        }
        let res = run_insns(&asm(&src), OOM, &Options::default());
        if let Some(f) = check(&format!("depth {depth}"), &res, exp) {
            panic!("{f}");
        }
    }
}

/// Linux's `round_up_stack_depth()`: with the JIT a frame is rounded to 16
/// bytes, for the interpreter to 32 (and at least 32). Frames of 264 and
/// 232 bytes make 272 + 240 = 512 with the JIT (accepted) but 288 + 256 =
/// 544 for the interpreter (refused).
#[test]
fn stack_rounding_jit_and_interpreter() {
    let src = "stdw [%r10-264], 0\ncall local f\nmov %r0, 0\nexit\nf:\nstdw [%r10-232], 0\nmov %r0, 0\nexit";
    let jit = Options::default();
    let interp = Options {
        jit: false,
        ..Options::default()
    };
    let res = run_insns(&asm(src), OOM, &jit);
    if let Some(f) = check("jit", &res, A) {
        panic!("{f}");
    }
    let res = run_insns(&asm(src), OOM, &interp);
    if let Some(f) = check(
        "interpreter",
        &res,
        no(Stack, "combined stack size of 2 calls is 544. Too large"),
    ) {
        panic!("{f}");
    }
    // Frames that touch no stack still take 32 bytes each in the
    // interpreter: 480 + 32 + 32 > 512, while the JIT counts 0 for them.
    let src = "stdw [%r10-480], 0\ncall local f\nmov %r0, 0\nexit\nf:\ncall local g\nmov %r0, 0\nexit\ng:\nmov %r0, 0\nexit";
    if let Some(f) = check("jit, empty frames", &run_insns(&asm(src), OOM, &jit), A) {
        panic!("{f}");
    }
    let res = run_insns(&asm(src), OOM, &interp);
    if let Some(f) = check(
        "interpreter, empty frames",
        &res,
        no(Stack, "combined stack size of 3 calls is 544. Too large"),
    ) {
        panic!("{f}");
    }
}

/// Each function's deepest frame on any path counts, also when the caller
/// uses its stack only after the call returns, or on a path without the
/// call; a frame's depth is reported as Linux's `stack depth` log line.
#[test]
fn stack_depth_is_per_function_over_all_paths() {
    let after = "call local f\nstdw [%r10-288], 0\nmov %r0, 0\nexit\nf:\nstdw [%r10-240], 0\nmov %r0, 0\nexit";
    let res = run_insns(&asm(after), OOM, &Options::default());
    if let Some(f) = check(
        "after the call",
        &res,
        no(Stack, "combined stack size of 2 calls is 528. Too large"),
    ) {
        panic!("{f}");
    }
    let other_path = "ldxdw %r2, [%r1+0]\nldxw %r3, [%r2+{o:oom_control.order}]\njeq %r3, 0, +3\nstdw [%r10-288], 0\nmov %r0, 0\nexit\ncall local f\nmov %r0, 0\nexit\nf:\nstdw [%r10-240], 0\nmov %r0, 0\nexit";
    let res = run_insns(&asm(other_path), OOM, &Options::default());
    if let Some(f) = check(
        "other path",
        &res,
        no(Stack, "combined stack size of 2 calls is 528. Too large"),
    ) {
        panic!("{f}");
    }
    let fits = "call local f\nstdw [%r10-272], 0\nmov %r0, 0\nexit\nf:\nstdw [%r10-240], 0\nmov %r0, 0\nexit";
    let rep = run_insns(
        &asm(fits),
        OOM,
        &Options {
            log_level: 1,
            ..Options::default()
        },
    )
    .expect("272 + 240 fits");
    assert!(rep.log.contains("stack depth 272+240"), "{}", rep.log);
}

/// The rejection and the log show a helper bpfoom does not offer by its
/// Linux name, never as a bare number.
#[test]
fn unknown_helper_is_named() {
    let err = run_insns(
        &asm("mov %r1, 0\ncall 14\nmov %r0, 0\nexit"),
        OOM,
        &Options {
            log_level: 1,
            ..Options::default()
        },
    )
    .expect_err("bpf_get_current_pid_tgid is not provided");
    let text = err.to_string();
    assert!(
        text.contains("1: (85) call bpf_get_current_pid_tgid#14"),
        "{text}"
    );
    let r = err.rejection().expect("rejection");
    assert_eq!(r.insn, 1);
    assert!(!r.reason.contains("unknown#"), "{}", r.reason);
}

#[test]
fn error_display_is_kernel_like() {
    let insns =
        asm("ldxdw %r2, [%r1+0]\nstb [%r2+{o:oom_control.bpf_memory_freed}], 1\nmov %r0, 1\nexit");
    let err = run_insns(
        &insns,
        OOM,
        &Options {
            log_level: 2,
            ..Options::default()
        },
    )
    .unwrap_err();
    let r = err.rejection().expect("rejection");
    assert_eq!(r.insn, 1);
    assert!(r.regs.contains("R1=ctx()"), "{}", r.regs);
    assert!(
        r.regs.contains("R2=trusted_ptr_oom_control()"),
        "{}",
        r.regs
    );
    assert!(r.regs.contains("R10=fp0"), "{}", r.regs);
    let text = err.to_string();
    assert!(text.contains("1: (72) *(u8 *)(r2 +44) = 1"), "{text}");
    assert!(text.contains("0: (79) r2 = *(u64 *)(r1 +0)"), "{text}");
}

#[test]
fn report_counts_and_log() {
    let insns = asm(CSS_LOOP);
    let rep = run_insns(
        &insns,
        OOM,
        &Options {
            log_level: 1,
            ..Options::default()
        },
    )
    .expect("verifies");
    assert!(rep.insns_processed >= insns.len() as u64 - 1);
    assert!(rep.states > 0 && rep.peak_states >= 1);
    assert!(rep.log.contains("safe"), "{}", rep.log);
    let quiet = run_insns(&insns, OOM, &Options::default()).expect("verifies");
    assert!(quiet.log.is_empty());
}
