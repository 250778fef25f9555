#!/usr/bin/env bash
# Reproduces every table of BENCHMARKS.md, one command per benchmark group.
# Groups 1 and 3 need root and this machine's cgroup v1 memory controller;
# groups 3 (v2, idle-v2) and 6 (compare) need qemu-system-x86 and
# busybox-static (and earlyoom, nohang, oomd for their rows). BPFOOM_BENCH_IDLE_SECS shortens group 3 (default 60).
# Group 7 (the soak) needs root and cgroup v1 and takes 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
# bpfoom-vmtest: the bpfoom-vmguest binary that the comparison boots.
cargo build --release -p bpfoom-bench -p bpfoom-vmtest
B="${CARGO_TARGET_DIR:-target}/release/bpfoom-bench"
R=bench/results
mkdir -p "$R"
"$B" policy-cost --cgroups 1000 --procs 10 --iters 200 | tee "$R/policy-cost.md"
"$B" verify-cost --iters 50 | tee "$R/verify-cost.md"
"$B" reaction --cgroups 10,100,1000 --procs 10 --reps 20 | tee "$R/reaction.md"
"$B" back-to-back --reps 20 | tee "$R/back-to-back.md"
"$B" concurrent --memcgs 50 --reps 3 | tee "$R/concurrent.md"
"$B" idle --cgroups 1000 | tee "$R/idle.md"
"$B" idle-v2 --cgroups 1000 --secs 30 --reps 5 | tee "$R/idle-v2.md"
"$B" compare --reps 3 --svg bench/compare.svg --raw "$R/compare.jsonl" | tee "$R/compare.md"
"$B" soak --minutes 10 --out bench/soak | tee "$R/soak.md"
