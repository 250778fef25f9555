//! `.BTF.ext`: per-section function info, line info and CO-RE relocation records.

use crate::btf::{Btf, Reader};
use crate::error::ObjError;
use std::collections::BTreeMap;

/// One raw `bpf_func_info` record (instruction offset in bytes within its ELF section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawFuncInfo {
    pub insn_off: u32,
    pub type_id: u32,
}

/// One raw `bpf_line_info` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawLineInfo {
    pub insn_off: u32,
    pub file_off: u32,
    pub line_off: u32,
    pub line_col: u32,
}

/// One raw `bpf_core_relo` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawCoreRelo {
    pub insn_off: u32,
    pub type_id: u32,
    pub access_off: u32,
    pub kind: u32,
}

/// The parsed `.BTF.ext`, records grouped by ELF section name.
#[derive(Debug, Default)]
pub(crate) struct BtfExt {
    pub func_info: BTreeMap<String, Vec<RawFuncInfo>>,
    pub line_info: BTreeMap<String, Vec<RawLineInfo>>,
    pub core_relos: BTreeMap<String, Vec<RawCoreRelo>>,
}

fn bad(offset: usize, reason: impl Into<String>) -> ObjError {
    ObjError::BtfExt {
        offset,
        reason: reason.into(),
    }
}

impl BtfExt {
    /// Parses `.BTF.ext`; section names are looked up in `btf`'s string section.
    pub(crate) fn parse(data: &[u8], btf: &Btf) -> Result<BtfExt, ObjError> {
        let mut r = Reader::new(data, 0);
        let magic = r.u16().ok_or_else(|| bad(0, "truncated header"))?;
        if magic != 0xeb9f {
            return Err(bad(0, format!("bad magic {magic:#06x}")));
        }
        let _version_flags = r.u16().ok_or_else(|| bad(2, "truncated header"))?;
        let hdr_len = r.u32().ok_or_else(|| bad(4, "truncated header"))? as usize;
        if hdr_len < 24 || hdr_len > data.len() {
            return Err(bad(4, format!("bad header length {hdr_len}")));
        }
        let mut fields = [0u32; 6];
        let n = if hdr_len >= 32 { 6 } else { 4 };
        for f in fields.iter_mut().take(n) {
            *f = r.u32().ok_or_else(|| bad(r.pos, "truncated header"))?;
        }
        let mut ext = BtfExt::default();
        let sub = |off: u32, len: u32| -> Result<(usize, &[u8]), ObjError> {
            let start = hdr_len.checked_add(off as usize);
            let end = start.and_then(|s| s.checked_add(len as usize));
            match (start, end) {
                (Some(s), Some(e)) if e <= data.len() => Ok((s, &data[s..e])),
                _ => Err(bad(hdr_len, "info section out of bounds")),
            }
        };
        let (base, d) = sub(fields[0], fields[1])?;
        ext.func_info = parse_info(d, base, btf, 8, |r| {
            Some(RawFuncInfo {
                insn_off: r.u32()?,
                type_id: r.u32()?,
            })
        })?;
        let (base, d) = sub(fields[2], fields[3])?;
        ext.line_info = parse_info(d, base, btf, 16, |r| {
            Some(RawLineInfo {
                insn_off: r.u32()?,
                file_off: r.u32()?,
                line_off: r.u32()?,
                line_col: r.u32()?,
            })
        })?;
        let (base, d) = sub(fields[4], fields[5])?;
        ext.core_relos = parse_info(d, base, btf, 16, |r| {
            Some(RawCoreRelo {
                insn_off: r.u32()?,
                type_id: r.u32()?,
                access_off: r.u32()?,
                kind: r.u32()?,
            })
        })?;
        Ok(ext)
    }
}

/// Parses one info block: `rec_size`, then `{sec_name_off, num_info, records...}*`.
fn parse_info<T>(
    data: &[u8],
    base: usize,
    btf: &Btf,
    min_rec: usize,
    read: impl Fn(&mut Reader<'_>) -> Option<T>,
) -> Result<BTreeMap<String, Vec<T>>, ObjError> {
    let mut out: BTreeMap<String, Vec<T>> = BTreeMap::new();
    if data.is_empty() {
        return Ok(out);
    }
    let mut r = Reader::new(data, 0);
    let rec_size = r.u32().ok_or_else(|| bad(base, "truncated record size"))? as usize;
    if rec_size < min_rec || rec_size > 1024 {
        return Err(bad(base, format!("bad record size {rec_size}")));
    }
    while r.pos < data.len() {
        let at = base + r.pos;
        let name_off = r.u32().ok_or_else(|| bad(at, "truncated section header"))?;
        let num = r.u32().ok_or_else(|| bad(at, "truncated section header"))? as usize;
        let name = btf
            .string_at(name_off)
            .ok_or_else(|| bad(at, format!("bad name offset {name_off}")))?;
        if num.saturating_mul(rec_size) > data.len() - r.pos {
            return Err(bad(at, format!("{num} records overrun the section")));
        }
        let list = out.entry(name.to_string()).or_default();
        for _ in 0..num {
            let rec = r
                .bytes(rec_size)
                .ok_or_else(|| bad(base + r.pos, "truncated record"))?;
            let mut rr = Reader::new(rec, 0);
            list.push(read(&mut rr).ok_or_else(|| bad(base + r.pos, "truncated record"))?);
        }
    }
    Ok(out)
}
