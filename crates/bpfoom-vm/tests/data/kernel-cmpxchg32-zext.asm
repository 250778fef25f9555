# Found by tests/differential.rs (old generator, seed 1795861867525745713, program 63656).
# Kernel 6.18 x86-64 JIT leaves r0 = 0xffffffffffffffd8 after the successful 32-bit
# cmpxchg at line 'lock cmpxchg32 [%r10-16], %r2'; RFC 9669, the kernel interpreter
# and bpfoom-vm zero-extend r0 to 0xffffffd8 (dumped at packet offset 64).
# A minimal program does get the zext: it depends on the verifier's 32-bit-def liveness.
# This is the VM (u64 ctx) form; the kernel form reads xdp_md with ldxw [r1+0]/[r1+4].
ldxdw %r6, [%r1+0]
ldxdw %r7, [%r1+8]
mov %r8, %r6
add %r8, 200
jle %r8, %r7, +2
mov %r0, 0
exit
lddw %r0, 0xffffffffffffffd8
lddw %r1, 0x5e7f9043ef366f33
lddw %r2, 0x2b19675593840368
lddw %r3, 0xcc1e13277ff4dff4
lddw %r4, 0x100000000
lddw %r5, 0x3
lddw %r7, 0x27
lddw %r8, 0x246c24d5a5443b51
lddw %r9, 0xa03e71f214ed5e66
stxdw [%r10-8], %r8
stxdw [%r10-16], %r0
stxdw [%r10-24], %r9
stxdw [%r10-32], %r2
stxdw [%r10-40], %r7
stxdw [%r10-48], %r7
stxdw [%r10-56], %r9
stxdw [%r10-64], %r1
ldxdw %r7, [%r6+31]
lock add [%r10-32], %r4
ldxb %r3, [%r10-31]
jgt32 %r2, %r4, +1
ldxb %r5, [%r6+1]
ldxdw %r5, [%r6+19]
lock cmpxchg32 [%r10-16], %r0
jsle %r5, %r1, +32
jne32 %r7, %r9, +23
add %r8, 47
ldxdw %r9, [%r10-64]
ldxw %r5, [%r6+6]
lock cmpxchg32 [%r10-16], %r2
and32 %r5, 0
xor %r5, %r7
mul32 %r7, %r5
stxb [%r6+6], %r3
and32 %r8, %r8
arsh %r7, %r1
ldxsw %r3, [%r10-12]
stb [%r10-50], 7
or32 %r5, %r7
stxb [%r10-44], %r3
lock fetch and32 [%r10-32], %r9
ldxsw %r5, [%r6+3]
jsgt32 %r1, 33, +1
jsge32 %r7, 25, +12
bswap32 %r4
lddw %r4, 0x5a
stxw [%r10-60], %r9
ldxsh %r4, [%r6+50]
jgt %r1, 1043280205, +1
stw [%r6+13], -14
jlt %r8, -1900970847, +4
jeq %r9, -1873456809, +0
ldxh %r2, [%r10-28]
lddw %r1, 0x3e
stxh [%r6+42], %r2
stxdw [%r6+64], %r0
stxdw [%r6+72], %r1
stxdw [%r6+80], %r2
stxdw [%r6+88], %r3
stxdw [%r6+96], %r4
stxdw [%r6+104], %r5
stxdw [%r6+112], %r7
stxdw [%r6+120], %r8
stxdw [%r6+128], %r9
ldxdw %r1, [%r10-8]
stxdw [%r6+136], %r1
ldxdw %r1, [%r10-16]
stxdw [%r6+144], %r1
ldxdw %r1, [%r10-24]
stxdw [%r6+152], %r1
ldxdw %r1, [%r10-32]
stxdw [%r6+160], %r1
ldxdw %r1, [%r10-40]
stxdw [%r6+168], %r1
ldxdw %r1, [%r10-48]
stxdw [%r6+176], %r1
ldxdw %r1, [%r10-56]
stxdw [%r6+184], %r1
ldxdw %r1, [%r10-64]
stxdw [%r6+192], %r1
and %r0, 3
exit
