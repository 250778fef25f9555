//! Maps: created from a [`MapSpec`], shared by every program of a [`crate::Vm`]
//! and readable/writable from Rust between runs.
//!
//! Values live in one preallocated, 8-byte aligned slab per map (as the
//! kernel's preallocated maps do), so a value pointer handed to a program
//! stays valid for the map's lifetime and the whole slab is one region.
//!
//! The kinds are [`MapKind`] (`bpfoom_abi::maps`, shared with the loader and
//! the verifier). Here, arrays take `u32` index keys and start zeroed (entry 0
//! from [`MapSpec::initial_data`], which is how global-data sections start);
//! a per-CPU array has a single CPU; a full LRU hash evicts its least recently
//! used entry; a ring buffer's `max_entries` is its data size in bytes.

use std::collections::{HashMap, VecDeque};

use thiserror::Error;

pub use bpfoom_abi::maps::MapKind;

use crate::mem::{Owner, RawBuf, Region};

/// How to create a map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapSpec {
    /// Map name (for lookups from Rust and messages).
    pub name: String,
    /// Map type.
    pub kind: MapKind,
    /// Key size in bytes (4 for arrays, 0 for ring buffers).
    pub key_size: u32,
    /// Value size in bytes (0 for ring buffers).
    pub value_size: u32,
    /// Capacity: entries, or bytes for a ring buffer.
    pub max_entries: u32,
    /// Initial bytes of entry 0 (global data), at most `value_size` long.
    pub initial_data: Vec<u8>,
    /// Programs may not write the values (`.rodata`, `BPF_F_RDONLY_PROG`).
    pub frozen: bool,
}

/// Map creation or access failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MapError {
    /// The spec is inconsistent for its kind.
    #[error("map `{name}`: invalid spec: {why}")]
    InvalidSpec {
        /// Map name.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Key of the wrong size.
    #[error("key is {got} bytes, map expects {expected}")]
    KeySize {
        /// Map key size.
        expected: usize,
        /// Given size.
        got: usize,
    },
    /// Value of the wrong size.
    #[error("value is {got} bytes, map expects {expected}")]
    ValueSize {
        /// Map value size.
        expected: usize,
        /// Given size.
        got: usize,
    },
    /// No such key (`ENOENT`).
    #[error("no such key")]
    NotFound,
    /// `BPF_NOEXIST` and the key exists, or a fixed array element (`EEXIST`).
    #[error("key already exists")]
    Exists,
    /// The map is full or the index is out of range (`E2BIG`).
    #[error("map is full or index out of range")]
    Full,
    /// Operation not valid for this map kind (`EINVAL`).
    #[error("operation not supported by this map kind")]
    Unsupported,
    /// Unknown update flags (`EINVAL`).
    #[error("invalid flags {0:#x}")]
    Flags(u64),
}

impl MapError {
    /// The negative errno a helper returns to the program for this error.
    pub fn errno(&self) -> i64 {
        -(match self {
            MapError::NotFound => libc::ENOENT,
            MapError::Exists => libc::EEXIST,
            MapError::Full => libc::E2BIG,
            _ => libc::EINVAL,
        } as i64)
    }
}

/// Update flag: create or replace.
pub const BPF_ANY: u64 = 0;
/// Update flag: create only.
pub const BPF_NOEXIST: u64 = 1;
/// Update flag: replace only.
pub const BPF_EXIST: u64 = 2;

enum Store {
    Array(RawBuf),
    Hash(HashStore),
    Ring(Ring),
}

struct HashStore {
    slab: RawBuf,
    index: HashMap<Box<[u8]>, u32>,
    free: Vec<u32>,
    /// Per slot: its key (for eviction) and last-use tick (LRU only).
    slots: Vec<(Option<Box<[u8]>>, u64)>,
    tick: u64,
    lru: bool,
}

/// Ring-buffer state of a [`MapKind::Ringbuf`] map.
pub struct Ring {
    capacity: usize,
    used: usize,
    /// Bytes ever reserved or output (the kernel's producer position).
    produced: u64,
    pending: Vec<RawBuf>,
    ready: VecDeque<Vec<u8>>,
}

/// Bytes a record occupies in the ring (8-byte header + data rounded to 8).
fn ring_cost(len: usize) -> usize {
    8 + len.div_ceil(8) * 8
}

/// One map.
pub struct Map {
    spec: MapSpec,
    elem: usize,
    store: Store,
}

impl Map {
    /// Creates a map, validating the spec as the kernel would.
    pub fn new(spec: MapSpec) -> Result<Self, MapError> {
        let bad = |why| {
            Err(MapError::InvalidSpec {
                name: spec.name.clone(),
                why,
            })
        };
        let elem = (spec.value_size as usize).div_ceil(8) * 8;
        let n = spec.max_entries as usize;
        const LIMIT: usize = 1 << 30;
        let store = match spec.kind {
            MapKind::Array | MapKind::PercpuArray => {
                if spec.key_size != 4 || spec.value_size == 0 || n == 0 {
                    return bad("arrays need key_size 4, value_size > 0, max_entries > 0");
                }
                if spec.initial_data.len() > spec.value_size as usize {
                    return bad("initial_data is longer than value_size");
                }
                if elem.checked_mul(n).is_none_or(|t| t > LIMIT) {
                    return bad("map too large");
                }
                let mut buf = RawBuf::zeroed(elem * n);
                buf.bytes_mut()[..spec.initial_data.len()].copy_from_slice(&spec.initial_data);
                Store::Array(buf)
            }
            MapKind::Hash | MapKind::LruHash => {
                if spec.key_size == 0
                    || spec.value_size == 0
                    || n == 0
                    || !spec.initial_data.is_empty()
                {
                    return bad("hash maps need key_size > 0, value_size > 0, max_entries > 0");
                }
                if elem.checked_mul(n).is_none_or(|t| t > LIMIT) {
                    return bad("map too large");
                }
                Store::Hash(HashStore {
                    slab: RawBuf::zeroed(elem * n),
                    index: HashMap::new(),
                    free: (0..n as u32).rev().collect(),
                    slots: vec![(None, 0); n],
                    tick: 0,
                    lru: spec.kind == MapKind::LruHash,
                })
            }
            MapKind::Ringbuf => {
                if spec.key_size != 0
                    || spec.value_size != 0
                    || !spec.max_entries.is_power_of_two()
                    || n > LIMIT
                {
                    return bad("ring buffers need key/value size 0 and a power-of-two byte size");
                }
                Store::Ring(Ring {
                    capacity: n,
                    used: 0,
                    produced: 0,
                    pending: Vec::new(),
                    ready: VecDeque::new(),
                })
            }
        };
        Ok(Self { spec, elem, store })
    }

    /// The spec the map was created from.
    pub fn spec(&self) -> &MapSpec {
        &self.spec
    }

    /// The region programs use to reach values (none for ring buffers).
    pub(crate) fn region(&self, idx: usize) -> Option<Region> {
        let w = !self.spec.frozen;
        match &self.store {
            Store::Array(b) => Some(b.region(Owner::Map(idx), w)),
            Store::Hash(h) => Some(h.slab.region(Owner::Map(idx), w)),
            Store::Ring(_) => None,
        }
    }

    /// Address of entry 0 of an array-like map (for `BPF_PSEUDO_MAP_VALUE`).
    pub(crate) fn array_base(&self) -> Option<u64> {
        match &self.store {
            Store::Array(b) => Some(b.addr()),
            _ => None,
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() == self.spec.key_size as usize {
            Ok(())
        } else {
            Err(MapError::KeySize {
                expected: self.spec.key_size as usize,
                got: key.len(),
            })
        }
    }

    /// Slot offset of `key` inside the value buffer, marking LRU use.
    fn find(&mut self, key: &[u8]) -> Result<Option<usize>, MapError> {
        self.check_key(key)?;
        let elem = self.elem;
        Ok(match &mut self.store {
            Store::Array(_) => {
                let i = u32::from_le_bytes([key[0], key[1], key[2], key[3]]) as usize;
                (i < self.spec.max_entries as usize).then_some(i * elem)
            }
            Store::Hash(h) => h.index.get(key).copied().map(|s| {
                h.tick += 1;
                h.slots[s as usize].1 = h.tick;
                s as usize * elem
            }),
            Store::Ring(_) => return Err(MapError::Unsupported),
        })
    }

    fn buf(&self) -> Option<&RawBuf> {
        match &self.store {
            Store::Array(b) => Some(b),
            Store::Hash(h) => Some(&h.slab),
            Store::Ring(_) => None,
        }
    }

    /// Reads a value without counting as a use (LRU order is unchanged).
    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>, MapError> {
        self.check_key(key)?;
        let vs = self.spec.value_size as usize;
        let off = match &self.store {
            Store::Array(_) => {
                let i = u32::from_le_bytes([key[0], key[1], key[2], key[3]]) as usize;
                (i < self.spec.max_entries as usize).then_some(i * self.elem)
            }
            Store::Hash(h) => h.index.get(key).map(|&s| s as usize * self.elem),
            Store::Ring(_) => return Err(MapError::Unsupported),
        };
        Ok(off.and_then(|o| self.buf().map(|b| &b.bytes()[o..o + vs])))
    }

    /// Looks a value up and marks it used (array index keys are little-endian `u32`).
    pub fn lookup(&mut self, key: &[u8]) -> Result<Option<&[u8]>, MapError> {
        let vs = self.spec.value_size as usize;
        let off = self.find(key)?;
        Ok(off.and_then(|o| self.buf().map(|b| &b.bytes()[o..o + vs])))
    }

    /// Program-visible address of the value for `key` (the helper's result).
    pub(crate) fn lookup_addr(&mut self, key: &[u8]) -> Result<Option<u64>, MapError> {
        let off = self.find(key)?;
        Ok(off.and_then(|o| self.buf().map(|b| b.addr() + o as u64)))
    }

    /// Creates or replaces a value; `flags` is `BPF_ANY`, `BPF_NOEXIST` or `BPF_EXIST`.
    pub fn update(&mut self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.check_key(key)?;
        let vs = self.spec.value_size as usize;
        if value.len() != vs {
            return Err(MapError::ValueSize {
                expected: vs,
                got: value.len(),
            });
        }
        if flags > BPF_EXIST {
            return Err(MapError::Flags(flags));
        }
        let elem = self.elem;
        let slot = match &mut self.store {
            Store::Array(_) => {
                if flags == BPF_NOEXIST {
                    return Err(MapError::Exists);
                }
                self.find(key)?.ok_or(MapError::Full)?
            }
            Store::Hash(h) => {
                h.tick += 1;
                let tick = h.tick;
                match h.index.get(key) {
                    Some(_) if flags == BPF_NOEXIST => return Err(MapError::Exists),
                    Some(&s) => {
                        h.slots[s as usize].1 = tick;
                        s as usize * elem
                    }
                    None if flags == BPF_EXIST => return Err(MapError::NotFound),
                    None => {
                        let s = match h.free.pop() {
                            Some(s) => s,
                            None if h.lru => {
                                let (victim, _) = h
                                    .slots
                                    .iter()
                                    .enumerate()
                                    .min_by_key(|(_, (_, t))| *t)
                                    .ok_or(MapError::Full)?;
                                if let Some(k) = h.slots[victim].0.take() {
                                    h.index.remove(&k);
                                }
                                victim as u32
                            }
                            None => return Err(MapError::Full),
                        };
                        h.index.insert(key.into(), s);
                        h.slots[s as usize] = (Some(key.into()), tick);
                        s as usize * elem
                    }
                }
            }
            Store::Ring(_) => return Err(MapError::Unsupported),
        };
        let buf = match &mut self.store {
            Store::Array(b) => b,
            Store::Hash(h) => &mut h.slab,
            Store::Ring(_) => return Err(MapError::Unsupported),
        };
        buf.bytes_mut()[slot..slot + vs].copy_from_slice(value);
        Ok(())
    }

    /// Deletes a key (hash maps only). The slot's memory stays valid, as with
    /// the kernel's preallocated maps, so stale program pointers cannot fault.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        match &mut self.store {
            Store::Hash(h) => {
                let s = h.index.remove(key).ok_or(MapError::NotFound)?;
                h.slots[s as usize] = (None, 0);
                h.free.push(s);
                Ok(())
            }
            _ => Err(MapError::Unsupported),
        }
    }

    /// All keys currently present (array maps: every index).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        match &self.store {
            Store::Array(_) => (0..self.spec.max_entries)
                .map(|i| i.to_le_bytes().to_vec())
                .collect(),
            Store::Hash(h) => h.index.keys().map(|k| k.to_vec()).collect(),
            Store::Ring(_) => Vec::new(),
        }
    }

    /// Bytes of the whole value of a one-entry map (global data), mutable from Rust.
    pub fn global_data_mut(&mut self) -> Option<&mut [u8]> {
        let vs = self.spec.value_size as usize;
        match &mut self.store {
            Store::Array(b) if self.spec.max_entries == 1 => Some(&mut b.bytes_mut()[..vs]),
            _ => None,
        }
    }

    /// Pops the oldest submitted ring-buffer record, freeing its space.
    pub fn ringbuf_pop(&mut self) -> Option<Vec<u8>> {
        let r = self.ring_mut()?;
        let rec = r.ready.pop_front()?;
        r.used -= ring_cost(rec.len());
        Some(rec)
    }

    /// Number of submitted records waiting to be read.
    pub fn ringbuf_len(&self) -> usize {
        match &self.store {
            Store::Ring(r) => r.ready.len(),
            _ => 0,
        }
    }

    pub(crate) fn ring_mut(&mut self) -> Option<&mut Ring> {
        match &mut self.store {
            Store::Ring(r) => Some(r),
            _ => None,
        }
    }
}

impl Ring {
    /// Reserves `len` bytes; the record's region is the caller's to register.
    pub(crate) fn reserve(&mut self, map: usize, len: usize) -> Option<Region> {
        let cost = ring_cost(len);
        if len == 0 || self.used + cost > self.capacity {
            return None;
        }
        self.used += cost;
        self.produced += cost as u64;
        let buf = RawBuf::zeroed(len);
        let r = buf.region(Owner::Record(map), true);
        self.pending.push(buf);
        Some(r)
    }

    /// Submits (`keep`) or discards a reserved record; false if `addr` is not one.
    pub(crate) fn finish(&mut self, addr: u64, keep: bool) -> bool {
        let Some(i) = self.pending.iter().position(|b| b.addr() == addr) else {
            return false;
        };
        let buf = self.pending.swap_remove(i);
        if keep {
            self.ready.push_back(buf.bytes().to_vec());
        } else {
            self.used -= ring_cost(buf.len());
        }
        true
    }

    /// Appends a copy of `data` directly (`bpf_ringbuf_output`).
    pub(crate) fn output(&mut self, data: Vec<u8>) -> bool {
        let cost = ring_cost(data.len());
        if self.used + cost > self.capacity {
            return false;
        }
        self.used += cost;
        self.produced += cost as u64;
        self.ready.push_back(data);
        true
    }

    /// `bpf_ringbuf_query`: 0 = bytes not yet consumed, 1 = ring size,
    /// 2 = consumer position, 3 = producer position; other flags give 0.
    pub(crate) fn query(&self, what: u64) -> u64 {
        match what {
            0 => self.used as u64,
            1 => self.capacity as u64,
            2 => self.produced - self.used as u64,
            3 => self.produced,
            _ => 0,
        }
    }

    /// Drops records a program reserved but never submitted or discarded,
    /// returning their addresses so their regions can be removed.
    pub(crate) fn abandon_pending(&mut self) -> Vec<u64> {
        let addrs = self.pending.iter().map(RawBuf::addr).collect();
        for b in self.pending.drain(..) {
            self.used -= ring_cost(b.len());
        }
        addrs
    }
}
