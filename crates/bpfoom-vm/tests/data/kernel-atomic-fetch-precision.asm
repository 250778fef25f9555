# Found by tests/differential.rs (seed 1795863541815359508, program 93773, before
# fetched values were kept out of control flow). VM (u64 ctx) form; input packet:
# 13 ea 22 04 6f 7e 67 7c 81 a9 3e 74 fb c2 54 6a ab 5b 49 c2 36 3c b7 8d 88 9a d9 b7 87 c6 61 7a 5e 81 c6 3c 04 0c 74 25 38 8e 71 17 83 ca a9 63 7e ed 4f d6 85 2c d6 45 83 59 6a 28 7e a4 7d 1b ae 53 1d b3 b9 5f 7a 70 ea 25 08 98 4e ba 1b 4e 2c 40 5e e4 9c ee ea fd 62 db 9a 58 a6 a6 02 86 67 3d 7c 78 a4 33 b6 5d d5 2d 25 e7 ac c1 87 63 2a e2 0c da 91 f2 c6 ef 04 de ac 7b 8f 9b f5 c0 db 65 fe 70 e7 97 4e f0 75 a7 48 0e d7 8c 92 ec 00 2a a7 e4 3b 4f ed aa 2b c4 40 49 2c 6e d9 88 fd 2a 52 50 e8 4b 06 91 c7 34 db 7b 19 f2 d7 46 bb c3 4a de 60 85 93 8a c4 60 47 e7 0b 8d a4 7f 14 28 ee 9f fd 20 a2 9f
# The subprogram returns r0 = its r5 argument through 'lock cmpxchg [%r10-48], %r6'
# (the slot holds the spilled r5). At runtime r0 = 0xc4f25b0e8a1dd0fe, but kernel
# 6.18's verifier log (level 2) shows 'returning from callee: R0=8' and then
# 'from 68 to 72: safe': the r5 != 8 path is pruned into the explored r5 == 8
# state, because precision is not propagated from r0 back through the atomic
# fetch to the stack slot and r5. It then treats 'if w4 s<= w0' (insn 87 of
# the kernel form) as always taken, so the JIT skips 'stxdw [%r6+42], %r2', and
# packet bytes 46..49 keep their input (a9 63 7e ed) instead of ff ff ff 7f.
ldxdw %r6, [%r1+0]
ldxdw %r7, [%r1+8]
mov %r8, %r6
add %r8, 200
jle %r8, %r7, +2
mov %r0, 0
exit
lddw %r0, 0x82d2b378c3fef1fa
lddw %r1, 0xfabf56f9bae6eb56
lddw %r2, 0xe695b42d7c95651a
lddw %r3, 0x505628dbe271e9c0
lddw %r4, 0x33c2b5239a621031
lddw %r5, 0xc4f25b0cbcf268a0
lddw %r7, 0x2d
lddw %r8, 0x94675e884912161d
lddw %r9, 0x2c
stxdw [%r10-8], %r5
stxdw [%r10-16], %r8
stxdw [%r10-24], %r1
stxdw [%r10-32], %r1
stxdw [%r10-40], %r7
stxdw [%r10-48], %r0
stxdw [%r10-56], %r1
stxdw [%r10-64], %r0
jeq %r3, 47, +36
jslt %r0, %r8, +29
stxw [%r10-16], %r8
ldxdw %r5, [%r6+32]
ldxsh %r9, [%r6+35]
or32 %r5, 1083593962
lddw %r5, 0x29
ldxsw %r1, [%r10-20]
sub32 %r0, 233295774
sub %r8, %r2
xor %r9, %r1
div %r8, -808907680
sub %r7, 46
xor32 %r4, %r9
jsgt %r9, %r2, +25
xor %r0, %r8
ldxsw %r0, [%r10-20]
call local +115
lddw %r1, 0xbd3a13b87f359c93
lddw %r2, 0xffffffffffffff91
lddw %r3, 0x1e
lddw %r4, 0x100000000
lddw %r5, 0x6
jge %r1, %r1, +0
xor32 %r7, %r1
div %r2, 2147483647
ldxsh %r7, [%r10-36]
lock or32 [%r10-32], %r8
add %r5, %r2
jne %r5, 8, +3
jsge %r2, -1512464650, +4
sub32 %r8, %r0
stxh [%r10-40], %r4
lddw %r1, 0x2c
jset32 %r2, %r7, +23
call local +91
lddw %r1, 0x749c7919dfd2dfcb
lddw %r2, 0x7fffffffffffffff
lddw %r3, 0xce6079675262dd9b
lddw %r4, 0x0
lddw %r5, 0x8000000000000000
ldxsw %r5, [%r6+42]
jsle32 %r4, %r0, +2
stxdw [%r6+42], %r2
ldxsb %r2, [%r6+24]
neg32 %r8
stxdw [%r6+38], %r5
lddw %r4, 0xffffffffffffffbd
ldxw %r8, [%r6+36]
ldxb %r8, [%r10-63]
stxw [%r10-24], %r9
jge %r3, 20, +1
mov32 %r2, 15
smod32 %r4, 9
jne %r0, %r3, +2
lddw %r5, 0xaa7f451e9e3cd4cb
call local +63
lddw %r1, 0xc051b72c638e033
lddw %r2, 0x2f594c074f7a494c
lddw %r3, 0x10
lddw %r4, 0x2494f9204a1b3de9
lddw %r5, 0x3ba6b4eba2376ac2
lock fetch add32 [%r10-40], %r8
xor %r7, 24
and %r4, -867388012
call local +49
lddw %r1, 0xffffffff
lddw %r2, 0xaad6bc40cab438f4
lddw %r3, 0x2f
lddw %r4, 0x80000000
lddw %r5, 0xbb32d23fcf28e0bc
lock fetch or [%r10-48], %r4
call local +37
lddw %r1, 0x6c4ef12874fc54b3
lddw %r2, 0x52be67a047c46928
lddw %r3, 0x8e847f5e189089b2
lddw %r4, 0x2f
lddw %r5, 0xe
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
mov %r0, %r1
stxdw [%r10-8], %r0
stxdw [%r10-16], %r1
stxdw [%r10-24], %r2
stxdw [%r10-32], %r3
stxdw [%r10-40], %r4
stxdw [%r10-48], %r5
lddw %r6, 0x29
lddw %r7, 0x352fa4e0b7fff816
lddw %r8, 0xffffffffffffff97
lddw %r9, 0x21
lsh %r1, %r6
mul32 %r0, -1821830950
add %r5, %r4
lock xchg32 [%r10-8], %r0
lsh %r6, 44
mov %r1, %r4
lsh %r2, 34
and32 %r1, %r4
stdw [%r10-40], 11
neg32 %r5
ldxw %r9, [%r10-4]
add32 %r9, 0
lock cmpxchg [%r10-48], %r6
ldxdw %r1, [%r10-40]
exit
