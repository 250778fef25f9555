//! `bpfoom maps`: an instance's maps, decoded by the object's BTF
//! ([`bpfoom_engine::dump`]), read through the control socket.
//!
//! The daemon answers a `{"op":"maps","cgroup":CG}` request with a `maps`
//! array (one object per instance at the cgroup: `policy`, `kind`,
//! `cgroup`, `maps`); the client prints it as text (a header per map, one
//! `{"key":..,"value":..}` line per entry, like `bpftool map dump`) or,
//! with `--json`, as that array on one line.

use std::io::Write;

use bpfoom_engine::{Engine, Host, InstanceMaps};
use bpfoom_host::LinuxHost;

use crate::control::{Request, Response};
use crate::{ControlError, DaemonError, InputError, MapsArgs, CLIENT_TIMEOUT};

/// The daemon's side: the decoded maps of the instances at `cgroup`.
pub(crate) fn reply(
    engine: &Engine<LinuxHost>,
    cgroup: &str,
    instance: Option<&str>,
) -> Result<Response, DaemonError> {
    let cg = engine
        .host()
        .cgroupfs()
        .resolve(cgroup)
        .map_err(InputError::Cgroup)?;
    let maps = maps_of(engine, cg, instance)?;
    let value = serde_json::to_value(&maps).map_err(ControlError::Json)?;
    Ok(Response {
        ok: true,
        maps: Some(value),
        ..Default::default()
    })
}

fn maps_of<H: Host>(
    engine: &Engine<H>,
    cg: bpfoom_engine::CgroupId,
    instance: Option<&str>,
) -> Result<Vec<InstanceMaps>, DaemonError> {
    engine.maps(cg, instance).map_err(|e| {
        match e {
            bpfoom_engine::EngineError::NotAttached(path) => InputError::NoPolicyAt { path },
            e => InputError::Maps(Box::new(e)),
        }
        .into()
    })
}

/// `bpfoom maps`: asks the daemon and prints the maps.
pub fn maps(a: &MapsArgs, out: &mut dyn Write) -> Result<(), DaemonError> {
    let req = Request::Maps {
        cgroup: a.cgroup.clone(),
        instance: a.instance.clone(),
    };
    let resp = crate::control::request(&a.socket, &req, CLIENT_TIMEOUT)?;
    if !resp.ok {
        return crate::finish(resp, out);
    }
    let value = resp.maps.unwrap_or_default();
    if a.json {
        writeln!(out, "{value}")?;
    } else {
        write!(out, "{}", text(&value))?;
    }
    Ok(())
}

/// The text form: per instance a `# policy (kind) at cgroup` line, per map
/// `map NAME: TYPE, key K, value V, N entries`, then one JSON line per
/// entry (`{"key":..,"value":..}`).
pub fn text(v: &serde_json::Value) -> String {
    let mut s = String::new();
    let str_of = |o: &serde_json::Value, k: &str| o[k].as_str().unwrap_or("?").to_string();
    for inst in v.as_array().into_iter().flatten() {
        s.push_str(&format!(
            "# {} ({}) at {}\n",
            str_of(inst, "policy"),
            str_of(inst, "kind"),
            str_of(inst, "cgroup")
        ));
        for m in inst["maps"].as_array().into_iter().flatten() {
            let entries = m["entries"].as_array().map_or(&[][..], Vec::as_slice);
            let mut head = format!("map {}: {}", str_of(m, "name"), str_of(m, "type"));
            if let Some(k) = m["key_type"].as_str() {
                head.push_str(&format!(", key {k}"));
            }
            if let Some(val) = m["value_type"].as_str() {
                head.push_str(&format!(", value {val}"));
            }
            if let Some(p) = m["pending"].as_u64() {
                head.push_str(&format!(
                    ", {} bytes, {p} unread record(s) (records are logged as `ringbuf` events)",
                    m["max_entries"]
                ));
            } else {
                head.push_str(&format!(
                    ", {} entr{}",
                    entries.len(),
                    if entries.len() == 1 { "y" } else { "ies" }
                ));
            }
            s.push_str(&head);
            s.push('\n');
            for e in entries {
                let line = serde_json::json!({"key": e["key"], "value": e["value"]});
                s.push_str(&format!("  {line}\n"));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lists_every_map_and_entry() {
        let v = serde_json::json!([{
            "policy": "p", "kind": "bpf_oom_ops", "cgroup": "/job",
            "maps": [
                {"name": "counters", "type": "array", "key_type": "u32", "value_type": "u64",
                 "max_entries": 2, "entries": [{"key": 0, "value": 3}, {"key": 1, "value": 0}]},
                {"name": "events", "type": "ringbuf", "max_entries": 4096, "pending": 0,
                 "entries": []},
                {"name": ".bss", "type": "global_data", "value_type": "section .bss",
                 "max_entries": 1, "entries": [{"key": 0, "value": {"last": 7}}]}
            ]
        }]);
        assert_eq!(
            text(&v),
            "# p (bpf_oom_ops) at /job\n\
             map counters: array, key u32, value u64, 2 entries\n  \
             {\"key\":0,\"value\":3}\n  {\"key\":1,\"value\":0}\n\
             map events: ringbuf, 4096 bytes, 0 unread record(s) (records are logged as `ringbuf` events)\n\
             map .bss: global_data, value section .bss, 1 entry\n  \
             {\"key\":0,\"value\":{\"last\":7}}\n"
        );
    }
}
