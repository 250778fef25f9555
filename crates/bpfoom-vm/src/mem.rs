//! VM-owned memory and the region table every program access is checked against.
//!
//! All memory a program can touch is allocated and owned here or by the maps:
//! the call stack, the context array, map values, ring-buffer records and
//! host objects the embedder registers. Program-visible addresses are the real
//! host addresses of those allocations (so pointers stay plain `u64`s), but
//! every access is first matched to a live [`Region`] and performed through
//! that region's own base pointer, never by casting a program value.

use std::collections::{BTreeMap, HashMap};
use std::ptr::NonNull;

use thiserror::Error;

/// An 8-byte aligned, zeroed heap buffer whose address never changes.
pub(crate) struct RawBuf {
    ptr: NonNull<u64>,
    words: usize,
    len: usize,
}

// SAFETY: RawBuf uniquely owns its allocation, exactly like a Box<[u64]>.
unsafe impl Send for RawBuf {}
// SAFETY: shared access only hands out `&[u8]`; mutation needs `&mut self`.
unsafe impl Sync for RawBuf {}

impl RawBuf {
    /// Allocates `len` zero bytes (at least one word, so the address is unique).
    pub(crate) fn zeroed(len: usize) -> Self {
        let words = len.div_ceil(8).max(1);
        let boxed: Box<[u64]> = vec![0u64; words].into_boxed_slice();
        let ptr = NonNull::from(Box::leak(boxed)).cast::<u64>();
        Self { ptr, words, len }
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Self {
        let mut r = Self::zeroed(b.len());
        r.bytes_mut().copy_from_slice(b);
        r
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    pub(crate) fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the allocation holds `words * 8 >= len` initialised bytes and
        // lives as long as `self`; no `&mut` exists while `&self` is borrowed,
        // and the interpreter only writes through it while holding `&mut Env`.
        unsafe { std::slice::from_raw_parts(self.base(), self.len) }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.base(), self.len) }
    }

    pub(crate) fn region(&self, owner: Owner, writable: bool) -> Region {
        Region {
            start: self.addr(),
            len: self.len as u64,
            base: self.base(),
            writable,
            owner,
        }
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.words);
        // SAFETY: `ptr`/`words` came from `Box::leak` of a `Box<[u64]>` of that
        // length in `zeroed`, and this is the only place it is released.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// Who owns a region (for error messages and for helpers that must find it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The call stack (all frames).
    Stack,
    /// The context array passed to `run`.
    Ctx,
    /// Values of the map with this index.
    Map(usize),
    /// A ring-buffer record reserved from the map with this index.
    Record(usize),
    /// A host object.
    Object(ObjId),
}

/// A range of VM-owned memory a program may access.
// `repr(C)`: JIT-compiled code reads the hot region's fields at fixed offsets.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Region {
    start: u64,
    len: u64,
    base: *mut u8,
    writable: bool,
    owner: Owner,
}

// SAFETY: a Region is a borrowed view of a RawBuf owned by the same Env; it is
// only dereferenced while the owner is alive (regions are removed first).
unsafe impl Send for Region {}
// SAFETY: as above; Region itself is plain data.
unsafe impl Sync for Region {}

/// Byte offsets of [`Region`] fields, for JIT-compiled code.
#[cfg(feature = "jit")]
pub(crate) mod region_layout {
    use super::Region;
    use std::mem::offset_of;
    pub(crate) const START: i32 = offset_of!(Region, start) as i32;
    pub(crate) const LEN: i32 = offset_of!(Region, len) as i32;
    pub(crate) const BASE: i32 = offset_of!(Region, base) as i32;
    pub(crate) const WRITABLE: i32 = offset_of!(Region, writable) as i32;
}

impl Region {
    /// Offset of `[addr, addr+len)` inside the region, if it fits.
    #[inline(always)]
    fn offset(&self, addr: u64, len: u64) -> Option<u64> {
        let o = addr.wrapping_sub(self.start);
        (o < self.len && len <= self.len - o).then_some(o)
    }

    /// First address of the region.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Owner of the region.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Handle of a host object registered with [`Memory::add_object`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjId(u64);

/// Access rights of a host object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Programs may only load.
    ReadOnly,
    /// Programs may load and store.
    ReadWrite,
}

/// A memory access outside every region the VM handed out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{} of {len} byte(s) at {addr:#x}: {reason}", if *.write { "write" } else { "read" })]
pub struct MemError {
    /// Faulting address.
    pub addr: u64,
    /// Access size.
    pub len: u64,
    /// Whether it was a store.
    pub write: bool,
    /// Why it was refused.
    pub reason: FaultReason,
}

/// Why an access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FaultReason {
    /// No region contains the whole range.
    #[error("not inside any VM region")]
    Unmapped,
    /// The region is read-only.
    #[error("region is read-only ({0:?})")]
    ReadOnly(Owner),
}

/// Stack bytes per frame (Linux `MAX_BPF_STACK`).
pub const STACK_FRAME_SIZE: usize = 512;
/// Maximum call depth (Linux `MAX_CALL_FRAMES`).
pub const MAX_FRAMES: usize = 8;

/// The VM's memory: owned buffers plus the region table.
///
/// Regions are distinct allocations, so they never overlap: keyed by start
/// address, the one containing an address is the last one starting at or
/// below it (a logarithmic search, which matters when an embedder registers
/// thousands of host objects per run).
pub struct Memory {
    regions: BTreeMap<u64, Region>,
    /// The stack region, checked first without any lookup.
    stack_region: Region,
    /// Last region hit; the common case is many accesses to one region.
    pub(crate) hot: Region,
    stack: RawBuf,
    ctx: RawBuf,
    objects: HashMap<ObjId, RawBuf>,
    next_obj: u64,
}

impl Memory {
    pub(crate) fn new() -> Self {
        let stack = RawBuf::zeroed(STACK_FRAME_SIZE * MAX_FRAMES);
        let ctx = RawBuf::zeroed(64 * 8);
        let s = stack.region(Owner::Stack, true);
        let c = ctx.region(Owner::Ctx, false);
        Self {
            regions: BTreeMap::from([(s.start, s), (c.start, c)]),
            stack_region: s,
            hot: s,
            stack,
            ctx,
            objects: HashMap::new(),
            next_obj: 1,
        }
    }

    /// The stack region: its start, length and base pointer never change.
    #[cfg(feature = "jit")]
    pub(crate) fn stack_region(&self) -> (u64, u64, u64) {
        let s = &self.stack_region;
        (s.start, s.len, s.base as u64)
    }

    /// Address just past the stack of frame `depth` (the frame's `r10`).
    pub(crate) fn frame_pointer(&self, depth: usize) -> u64 {
        self.stack.addr() + ((MAX_FRAMES - depth) * STACK_FRAME_SIZE) as u64
    }

    /// Copies the context array into VM memory and returns its address.
    pub(crate) fn set_ctx(&mut self, ctx: &[u64]) -> u64 {
        let bytes = ctx.len() * 8;
        if bytes > self.ctx.len() {
            let old = self.ctx.addr();
            self.ctx = RawBuf::zeroed(bytes.next_power_of_two());
            self.remove_region(old);
            self.add_region(self.ctx.region(Owner::Ctx, false));
        }
        for (d, v) in self.ctx.bytes_mut().chunks_exact_mut(8).zip(ctx) {
            d.copy_from_slice(&v.to_le_bytes());
        }
        let addr = self.ctx.addr();
        if let Some(r) = self.regions.get_mut(&addr) {
            r.len = bytes as u64;
        }
        self.hot = self.stack_region;
        addr
    }

    pub(crate) fn add_region(&mut self, r: Region) {
        self.regions.insert(r.start, r);
    }

    pub(crate) fn remove_region(&mut self, start: u64) {
        self.regions.remove(&start);
        if self.hot.start == start {
            self.hot = self.stack_region;
        }
    }

    /// Translates a program address to a host pointer, checking bounds and rights.
    #[inline(always)]
    pub(crate) fn translate(
        &mut self,
        addr: u64,
        len: u64,
        write: bool,
    ) -> Result<*mut u8, MemError> {
        match self.fast(addr, len, write) {
            Some(p) => Ok(p),
            None => self.translate_slow(addr, len, write),
        }
    }

    /// The fast path of [`Memory::translate`]: the stack (always writable,
    /// checked first) and the last other region used. After a successful
    /// [`Memory::translate_slow`] for the same access, this hits.
    #[inline(always)]
    pub(crate) fn fast(&self, addr: u64, len: u64, write: bool) -> Option<*mut u8> {
        let s = &self.stack_region;
        if let Some(o) = s.offset(addr, len) {
            return Some(s.base.wrapping_add(o as usize));
        }
        let h = &self.hot;
        match h.offset(addr, len) {
            Some(o) if h.writable || !write => Some(h.base.wrapping_add(o as usize)),
            _ => None,
        }
    }

    /// Searches every region, caching the hit as the `hot` region.
    #[cold]
    #[inline(never)]
    pub(crate) fn translate_slow(
        &mut self,
        addr: u64,
        len: u64,
        write: bool,
    ) -> Result<*mut u8, MemError> {
        let r = self.find(addr, len).ok_or(MemError {
            addr,
            len,
            write,
            reason: FaultReason::Unmapped,
        })?;
        if write && !r.writable {
            return Err(MemError {
                addr,
                len,
                write,
                reason: FaultReason::ReadOnly(r.owner),
            });
        }
        self.hot = r;
        Ok(r.base.wrapping_add((addr - r.start) as usize))
    }

    /// The region containing `[addr, addr+len)`, if any.
    pub fn find(&self, addr: u64, len: u64) -> Option<Region> {
        let (_, r) = self.regions.range(..=addr).next_back()?;
        r.offset(addr, len).map(|_| *r)
    }

    /// Copies `out.len()` bytes of program-visible memory at `addr`.
    pub fn read_into(&mut self, addr: u64, out: &mut [u8]) -> Result<(), MemError> {
        let p = self.translate(addr, out.len() as u64, false)?;
        // SAFETY: `translate` proved `[p, p+len)` lies in a live VM allocation,
        // and `out` is a distinct Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Reads `len` bytes of program-visible memory at `addr`.
    pub fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, MemError> {
        // Check first: `len` comes from the program and may be huge.
        let p = self.translate(addr, len as u64, false)?;
        // SAFETY: `translate` proved `[p, p+len)` lies in a live VM allocation.
        Ok(unsafe { std::slice::from_raw_parts(p, len) }.to_vec())
    }

    /// Writes bytes into writable program-visible memory at `addr`.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let p = self.translate(addr, data.len() as u64, true)?;
        // SAFETY: `translate` proved `[p, p+len)` lies in a live, writable VM
        // allocation; `data` is a Rust slice that cannot overlap a region
        // borrowed mutably here.
        unsafe { std::ptr::copy(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// Reads a little-endian `u64`.
    pub fn read_u64(&mut self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0; 8];
        self.read_into(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u64`.
    pub fn write_u64(&mut self, addr: u64, v: u64) -> Result<(), MemError> {
        self.write(addr, &v.to_le_bytes())
    }

    /// Reads a NUL-terminated string of at most `max` bytes (a kfunc `__str`
    /// argument); stops at the end of its region. Invalid UTF-8 is replaced.
    pub fn read_cstr(&mut self, addr: u64, max: usize) -> Result<String, MemError> {
        let r = self.find(addr, 1).ok_or(MemError {
            addr,
            len: 1,
            write: false,
            reason: FaultReason::Unmapped,
        })?;
        let avail = (r.start + r.len - addr).min(max as u64) as usize;
        let bytes = self.read(addr, avail)?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }

    /// The bytes of the NUL-terminated string at `addr`, without the NUL, at
    /// most `max` of them; stops at the end of its region.
    pub fn read_cstr_bytes(&mut self, addr: u64, max: usize) -> Result<Vec<u8>, MemError> {
        let r = self.find(addr, 1).ok_or(MemError {
            addr,
            len: 1,
            write: false,
            reason: FaultReason::Unmapped,
        })?;
        let avail = (r.start + r.len - addr).min(max as u64) as usize;
        let mut bytes = self.read(addr, avail)?;
        if let Some(end) = bytes.iter().position(|&b| b == 0) {
            bytes.truncate(end);
        }
        Ok(bytes)
    }

    /// Registers a host object with the given initial bytes; programs reach it
    /// at [`Memory::object_addr`]. Its address is stable until removal.
    pub fn add_object(&mut self, bytes: &[u8], perm: Perm) -> ObjId {
        let id = ObjId(self.next_obj);
        self.next_obj += 1;
        let buf = RawBuf::from_bytes(bytes);
        self.add_region(buf.region(Owner::Object(id), perm == Perm::ReadWrite));
        self.objects.insert(id, buf);
        id
    }

    /// Unregisters a host object, returning its final bytes.
    pub fn remove_object(&mut self, id: ObjId) -> Option<Vec<u8>> {
        let buf = self.objects.remove(&id)?;
        self.remove_region(buf.addr());
        Some(buf.bytes().to_vec())
    }

    fn object_buf(&self, id: ObjId) -> Option<&RawBuf> {
        self.objects.get(&id)
    }

    /// Program-visible address of a host object.
    pub fn object_addr(&self, id: ObjId) -> Option<u64> {
        self.object_buf(id).map(RawBuf::addr)
    }

    /// Current bytes of a host object.
    pub fn object(&self, id: ObjId) -> Option<&[u8]> {
        self.object_buf(id).map(RawBuf::bytes)
    }

    /// Mutable bytes of a host object (between runs, or from a host call).
    pub fn object_mut(&mut self, id: ObjId) -> Option<&mut [u8]> {
        self.objects.get_mut(&id).map(RawBuf::bytes_mut)
    }
}
