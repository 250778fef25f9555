//! Helpers the VM implements itself: maps, ring buffers, time, random
//! numbers, `bpf_trace_printk`, kernel-memory reads, `bpf_strncmp`, spin
//! locks and `bpf_loop` (the last one in the interpreter, which must run
//! the callback).

use crate::mem::{MemError, Owner};
use crate::{CallError, Env};

/// Helper ids (Linux numbering) implemented by the VM.
pub mod ids {
    /// `bpf_map_lookup_elem`.
    pub const MAP_LOOKUP_ELEM: u32 = 1;
    /// `bpf_map_update_elem`.
    pub const MAP_UPDATE_ELEM: u32 = 2;
    /// `bpf_map_delete_elem`.
    pub const MAP_DELETE_ELEM: u32 = 3;
    /// `bpf_ktime_get_ns`. The built-in returns nanoseconds since the `Vm`
    /// was created; a [`crate::CallHandler`] that needs the real `CLOCK_MONOTONIC`
    /// (or a simulated clock) implements this id itself.
    pub const KTIME_GET_NS: u32 = 5;
    /// `bpf_trace_printk`.
    pub const TRACE_PRINTK: u32 = 6;
    /// `bpf_get_prandom_u32`.
    pub const GET_PRANDOM_U32: u32 = 7;
    /// `bpf_get_smp_processor_id` (always CPU 0).
    pub const GET_SMP_PROCESSOR_ID: u32 = 8;
    /// `bpf_ktime_get_boot_ns`.
    pub const KTIME_GET_BOOT_NS: u32 = 125;
    /// `bpf_ringbuf_output`.
    pub const RINGBUF_OUTPUT: u32 = 130;
    /// `bpf_ringbuf_reserve`.
    pub const RINGBUF_RESERVE: u32 = 131;
    /// `bpf_ringbuf_submit`.
    pub const RINGBUF_SUBMIT: u32 = 132;
    /// `bpf_ringbuf_discard`.
    pub const RINGBUF_DISCARD: u32 = 133;
    /// `bpf_ringbuf_query`.
    pub const RINGBUF_QUERY: u32 = 134;
    /// `bpf_spin_lock`.
    pub const SPIN_LOCK: u32 = 93;
    /// `bpf_spin_unlock`.
    pub const SPIN_UNLOCK: u32 = 94;
    /// `bpf_probe_read_kernel`.
    pub const PROBE_READ_KERNEL: u32 = 113;
    /// `bpf_probe_read_kernel_str`.
    pub const PROBE_READ_KERNEL_STR: u32 = 115;
    /// `bpf_get_current_task_btf` (the embedder's [`crate::CallHandler`] answers it:
    /// the VM knows no tasks).
    pub const GET_CURRENT_TASK_BTF: u32 = 158;
    /// `bpf_loop`.
    pub const LOOP: u32 = 181;
    /// `bpf_strncmp`.
    pub const STRNCMP: u32 = 182;
}

/// `BPF_MAX_LOOPS`: `bpf_loop` refuses more iterations with `-E2BIG`.
pub const MAX_LOOPS: u64 = 1 << 23;

/// Function handles (`ld_imm64` with `BPF_PSEUDO_FUNC`) are opaque values in
/// a kernel-like range below the map handles: the callback's instruction
/// index added to a base, so dereferencing one faults cleanly.
const FUNC_HANDLE_BASE: u64 = 0xffff_fe00_0000_0000;

/// The register value a program sees for the function at instruction `insn`.
pub fn func_handle(insn: usize) -> u64 {
    FUNC_HANDLE_BASE + insn as u64
}

/// The instruction index a function handle names, if it is one.
pub fn func_of_handle(v: u64) -> Option<usize> {
    let i = v.checked_sub(FUNC_HANDLE_BASE)?;
    (i < 1 << 32).then_some(i as usize)
}

/// Map references are opaque handles in a kernel-like address range that no
/// user-space allocation can occupy, so dereferencing one faults cleanly.
const MAP_HANDLE_BASE: u64 = 0xffff_ff00_0000_0000;
const MAP_HANDLE_STRIDE: u64 = 0x1000;

/// The register value a program sees for map `idx` (`ld_imm64` with `BPF_PSEUDO_MAP_FD`).
pub fn map_handle(idx: usize) -> u64 {
    MAP_HANDLE_BASE + idx as u64 * MAP_HANDLE_STRIDE
}

fn map_index(env: &Env, handle: u64) -> Result<usize, CallError> {
    let off = handle.wrapping_sub(MAP_HANDLE_BASE);
    let idx = (off / MAP_HANDLE_STRIDE) as usize;
    if off.is_multiple_of(MAP_HANDLE_STRIDE) && idx < env.maps.len() {
        Ok(idx)
    } else {
        Err(CallError::BadArgument(format!("{handle:#x} is not a map")))
    }
}

fn errno(e: i32) -> u64 {
    (-(e as i64)) as u64
}

/// Runs a built-in helper; `None` when `id` is not one.
pub(crate) fn call(env: &mut Env, id: u32, a: [u64; 5]) -> Option<Result<u64, CallError>> {
    use ids::*;
    Some(match id {
        MAP_LOOKUP_ELEM | MAP_UPDATE_ELEM | MAP_DELETE_ELEM => map_op(env, id, a),
        KTIME_GET_NS | KTIME_GET_BOOT_NS => Ok(env.epoch.elapsed().as_nanos() as u64),
        GET_PRANDOM_U32 => Ok(env.next_random() as u64),
        GET_SMP_PROCESSOR_ID => Ok(0),
        TRACE_PRINTK => trace_printk(env, a),
        RINGBUF_OUTPUT => ringbuf_output(env, a),
        RINGBUF_RESERVE => ringbuf_reserve(env, a),
        RINGBUF_QUERY => ring(env, a[0]).map(|(_, r)| r.query(a[1])),
        RINGBUF_SUBMIT | RINGBUF_DISCARD => ringbuf_finish(env, a[0], id == RINGBUF_SUBMIT),
        PROBE_READ_KERNEL => probe_read_kernel(env, a),
        PROBE_READ_KERNEL_STR => probe_read_kernel_str(env, a),
        STRNCMP => strncmp(env, a),
        SPIN_LOCK | SPIN_UNLOCK => spin_lock(env, a[0], id == SPIN_LOCK),
        _ => return None,
    })
}

/// The error of a faulting kernel read from `addr`: Linux refuses user
/// addresses before trying (`copy_from_kernel_nofault_allowed()`: -ERANGE),
/// and on x86-64 a NULL pointer plus a small offset is one; any other
/// unreadable address faults (-EFAULT).
fn read_fault(addr: u64) -> u64 {
    if addr < 4096 {
        errno(libc::ERANGE)
    } else {
        errno(libc::EFAULT)
    }
}

/// `bpf_probe_read_kernel(dst, size, src)`: the copy must lie inside one
/// region (a host object, a map value, the stack, ...): bounded by what the
/// object really has. Anything else is Linux's faulting read: `dst` is
/// zeroed and the result is `-EFAULT` (`-ERANGE` near NULL).
fn probe_read_kernel(env: &mut Env, a: [u64; 5]) -> Result<u64, CallError> {
    let size = a[1] as u32 as usize;
    if size == 0 {
        return Ok(0);
    }
    match env.mem.read(a[2], size) {
        Ok(bytes) => {
            env.mem.write(a[0], &bytes)?;
            Ok(0)
        }
        Err(_) => {
            env.mem.write(a[0], &vec![0; size])?;
            Ok(read_fault(a[2]))
        }
    }
}

/// `bpf_probe_read_kernel_str(dst, size, src)`: up to `size - 1` bytes of
/// the string and a NUL; the length copied including the NUL. A string that
/// runs off the end of its region before its NUL (and before `size - 1`
/// bytes) is a faulting read: `dst` zeroed, `-EFAULT` (`-ERANGE` near NULL).
fn probe_read_kernel_str(env: &mut Env, a: [u64; 5]) -> Result<u64, CallError> {
    let size = a[1] as u32 as usize;
    if size == 0 {
        return Ok(0);
    }
    let avail = env
        .mem
        .find(a[2], 1)
        .map(|r| (r.start() + r.len() - a[2]) as usize);
    let out = avail.and_then(|avail| {
        let want = avail.min(size - 1);
        let bytes = env.mem.read(a[2], want).ok()?;
        match bytes.iter().position(|&b| b == 0) {
            Some(nul) => Some(bytes[..=nul].to_vec()),
            // Truncated at size - 1 bytes: the kernel adds the NUL.
            None if want == size - 1 => {
                let mut v = bytes;
                v.push(0);
                Some(v)
            }
            // The region ended first: the next byte faults.
            None => None,
        }
    });
    match out {
        Some(s) => {
            env.mem.write(a[0], &s)?;
            Ok(s.len() as u64)
        }
        None => {
            env.mem.write(a[0], &vec![0; size])?;
            Ok(read_fault(a[2]))
        }
    }
}

/// `bpf_strncmp(s1, s1_sz, s2)`: the kernel's `strncmp(s1, s2, s1_sz)`,
/// -1, 0 or 1 (the verifier made `s2` a NUL-terminated constant).
fn strncmp(env: &mut Env, a: [u64; 5]) -> Result<u64, CallError> {
    let n = a[1] as u32 as usize;
    let s1 = env.mem.read(a[0], n)?;
    let s2 = env.mem.read_cstr_bytes(a[2], n)?;
    for (i, &c1) in s1.iter().enumerate() {
        let c2 = s2.get(i).copied().unwrap_or(0);
        if c1 != c2 {
            return Ok(if c1 < c2 { -1i64 as u64 } else { 1 });
        }
        if c1 == 0 {
            break;
        }
    }
    Ok(0)
}

/// `bpf_spin_lock` / `bpf_spin_unlock`: the VM runs one program at a time,
/// so the lock word only records that it is held; the verifier guarantees
/// pairing, the checks here catch an unverified program.
fn spin_lock(env: &mut Env, addr: u64, lock: bool) -> Result<u64, CallError> {
    if !matches!(
        env.mem.find(addr, 4).map(|r| r.owner()),
        Some(Owner::Map(_))
    ) {
        return Err(CallError::BadArgument(format!(
            "{addr:#x} is not a bpf_spin_lock in a map value"
        )));
    }
    let mut b = [0u8; 4];
    env.mem.read_into(addr, &mut b)?;
    let held = u32::from_le_bytes(b) != 0;
    if held == lock {
        return Err(CallError::BadArgument(format!(
            "bpf_spin_{} of a lock that is {}",
            if lock { "lock" } else { "unlock" },
            if held { "held (deadlock)" } else { "not held" }
        )));
    }
    env.mem.write(addr, &u32::from(lock).to_le_bytes())?;
    if lock {
        env.held_locks.push(addr);
    } else {
        env.held_locks.retain(|&a| a != addr);
    }
    Ok(0)
}

fn ring(env: &mut Env, handle: u64) -> Result<(usize, &mut crate::maps::Ring), CallError> {
    let m = map_index(env, handle)?;
    let ring = env.maps[m]
        .ring_mut()
        .ok_or_else(|| CallError::BadArgument(format!("map {m} is not a ring buffer")))?;
    Ok((m, ring))
}

fn ringbuf_output(env: &mut Env, a: [u64; 5]) -> Result<u64, CallError> {
    let data = env.mem.read(a[1], a[2] as usize)?;
    let (_, ring) = ring(env, a[0])?;
    Ok(if ring.output(data) {
        0
    } else {
        errno(libc::EAGAIN)
    })
}

fn ringbuf_reserve(env: &mut Env, a: [u64; 5]) -> Result<u64, CallError> {
    let (m, ring) = ring(env, a[0])?;
    let Some(r) = usize::try_from(a[1])
        .ok()
        .and_then(|len| ring.reserve(m, len))
    else {
        return Ok(0);
    };
    env.mem.add_region(r);
    Ok(r.start())
}

fn ringbuf_finish(env: &mut Env, addr: u64, keep: bool) -> Result<u64, CallError> {
    match env.mem.find(addr, 1) {
        Some(r) if r.start() == addr => {
            if let Owner::Record(m) = r.owner() {
                if let Some(ring) = env.maps[m].ring_mut() {
                    ring.finish(addr, keep);
                    env.mem.remove_region(addr);
                    return Ok(0);
                }
            }
        }
        _ => {}
    }
    Err(CallError::BadArgument(format!(
        "{addr:#x} is not a reserved ring buffer record"
    )))
}

fn map_op(env: &mut Env, id: u32, a: [u64; 5]) -> Result<u64, CallError> {
    let m = map_index(env, a[0])?;
    let spec = env.maps[m].spec();
    let (ks, vs) = (spec.key_size as usize, spec.value_size as usize);
    let key = env.mem.read(a[1], ks)?;
    let map = &mut env.maps[m];
    Ok(match id {
        ids::MAP_LOOKUP_ELEM => map.lookup_addr(&key).ok().flatten().unwrap_or(0),
        ids::MAP_UPDATE_ELEM => {
            let value = env.mem.read(a[2], vs)?;
            match map.update(&key, &value, a[3]) {
                Ok(()) => 0,
                Err(e) => e.errno() as u64,
            }
        }
        _ => match map.delete(&key) {
            Ok(()) => 0,
            Err(e) => e.errno() as u64,
        },
    })
}

/// `bpf_trace_printk(fmt, fmt_size, a1, a2, a3)`: formats into the trace sink.
fn trace_printk(env: &mut Env, a: [u64; 5]) -> Result<u64, CallError> {
    let fmt = env.mem.read(a[0], a[1] as usize)?;
    let end = fmt.iter().position(|&b| b == 0).unwrap_or(fmt.len());
    let out = format_printk(&fmt[..end], &a[2..5], &mut |addr| {
        env.mem.read_cstr(addr, 256)
    })?;
    let n = out.len() as u64;
    env.trace.push_str(&out);
    Ok(n)
}

/// Minimal kernel `bstr_printf` subset: `%d %i %u %x %X %c %s %p %%` with
/// optional `l`/`ll` and `h` length modifiers (at most three conversions).
pub(crate) fn format_printk(
    fmt: &[u8],
    args: &[u64],
    read_str: &mut dyn FnMut(u64) -> Result<String, MemError>,
) -> Result<String, CallError> {
    let mut out = String::new();
    let mut args = args.iter().copied();
    let mut i = 0;
    while i < fmt.len() {
        let c = fmt[i];
        i += 1;
        if c != b'%' {
            out.push(c as char);
            continue;
        }
        let mut longs = 0;
        while i < fmt.len() && (fmt[i] == b'l' || fmt[i] == b'h') {
            longs += usize::from(fmt[i] == b'l');
            i += 1;
        }
        let Some(&conv) = fmt.get(i) else {
            return Err(CallError::BadArgument("format ends in `%`".into()));
        };
        i += 1;
        if conv == b'%' {
            out.push('%');
            continue;
        }
        let v = args
            .next()
            .ok_or_else(|| CallError::BadArgument("more than three format arguments".into()))?;
        let wide = longs > 0;
        match conv {
            b'd' | b'i' if wide => out.push_str(&(v as i64).to_string()),
            b'd' | b'i' => out.push_str(&(v as i32).to_string()),
            b'u' if wide => out.push_str(&v.to_string()),
            b'u' => out.push_str(&(v as u32).to_string()),
            b'x' if wide => out.push_str(&format!("{v:x}")),
            b'x' => out.push_str(&format!("{:x}", v as u32)),
            b'X' if wide => out.push_str(&format!("{v:X}")),
            b'X' => out.push_str(&format!("{:X}", v as u32)),
            b'c' => out.push(v as u8 as char),
            b'p' => out.push_str(&format!("0x{v:x}")),
            b's' => out.push_str(&read_str(v)?),
            _ => {
                return Err(CallError::BadArgument(format!(
                    "unsupported conversion `%{}`",
                    conv as char
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printk_formats() {
        let mut rs = |a: u64| Ok(format!("s{a}"));
        let f = |s: &str, a: &[u64], rs: &mut dyn FnMut(u64) -> Result<String, MemError>| {
            format_printk(s.as_bytes(), a, rs)
        };
        assert_eq!(
            f("a=%d b=%lu c=%x%%", &[u64::MAX, u64::MAX, 255], &mut rs)
                .ok()
                .as_deref(),
            Some("a=-1 b=18446744073709551615 c=ff%")
        );
        assert_eq!(
            f("%s|%c|%lld", &[7, 65, u64::MAX], &mut rs).ok().as_deref(),
            Some("s7|A|-1")
        );
        assert!(f("%d %d %d %d", &[1, 2, 3], &mut rs).is_err());
        assert!(f("%q", &[1], &mut rs).is_err());
    }
}
