//! Cache keys: everything a stage's output depends on, hashed, and kept so that `status`
//! can say what changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped when the engine's own output conventions change; every entry is rebuilt then.
pub const ENGINE_VERSION: u32 = 1;

/// One raw input file, identified by metadata rather than by its bytes, so a key over
/// gigabytes of CSV costs one listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct InputFile {
    pub path: String,
    pub size: u64,
    /// S3 ETag, or `blake3:<hex>` of a local file's bytes (ingest::fingerprint).
    pub version: String,
}

/// What a stage's output is a function of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyParts {
    pub op: String,
    /// The op's output schema version; see `Stage::version`.
    pub op_version: u32,
    /// The tool's version: a new release may compute differently.
    pub code_version: String,
    pub params: Value,
    /// Project files the stage reads (SQL), by content hash.
    pub files: BTreeMap<String, String>,
    /// Upstream stage name → its key. Names matter: SQL refers to its inputs by name.
    pub upstream: BTreeMap<String, String>,
    /// External inputs (metrics CSVs), by listing.
    pub inputs: Vec<InputFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct CacheKey([u8; 12]);

impl CacheKey {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn parse(s: &str) -> Option<CacheKey> {
        if s.len() != 24 {
            return None;
        }
        let mut out = [0u8; 12];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(CacheKey(out))
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl KeyParts {
    pub fn key(&self) -> CacheKey {
        let canonical = serde_json::to_vec(&canonicalize(&serde_json::to_value(self).expect("KeyParts serialises"))).expect("JSON values serialise");
        let hash = blake3::hash(&[&ENGINE_VERSION.to_le_bytes()[..], &canonical].concat());
        let mut k = [0u8; 12];
        k.copy_from_slice(&hash.as_bytes()[..12]);
        CacheKey(k)
    }

    /// Human sentences for every difference from an earlier build, in the order a user
    /// would look for them.
    pub fn changes_since(&self, old: &KeyParts) -> Vec<String> {
        let mut out = Vec::new();
        if self.op != old.op {
            out.push(format!("op changed: {} → {}", old.op, self.op));
        }
        if self.code_version != old.code_version || self.op_version != old.op_version {
            out.push(format!("code version changed: {} (op v{}) → {} (op v{})", old.code_version, old.op_version, self.code_version, self.op_version));
        }
        diff_values("param", "", &old.params, &self.params, &mut out);
        for (path, hash) in &self.files {
            match old.files.get(path) {
                None => out.push(format!("file {path} is new to this stage")),
                Some(h) if h != hash => out.push(format!("file {path} changed")),
                _ => {}
            }
        }
        for path in old.files.keys().filter(|p| !self.files.contains_key(*p)) {
            out.push(format!("file {path} no longer used"));
        }
        for (name, key) in &self.upstream {
            match old.upstream.get(name) {
                None => out.push(format!("new upstream stage `{name}`")),
                Some(k) if k != key => out.push(format!("upstream `{name}` changed")),
                _ => {}
            }
        }
        for name in old.upstream.keys().filter(|n| !self.upstream.contains_key(*n)) {
            out.push(format!("upstream `{name}` removed"));
        }
        if self.inputs != old.inputs {
            out.push(describe_input_changes(&old.inputs, &self.inputs));
        }
        if out.is_empty() {
            out.push("engine version changed".into());
        }
        out
    }
}

fn describe_input_changes(old: &[InputFile], new: &[InputFile]) -> String {
    let old_by: BTreeMap<&str, &InputFile> = old.iter().map(|f| (f.path.as_str(), f)).collect();
    let new_by: BTreeMap<&str, &InputFile> = new.iter().map(|f| (f.path.as_str(), f)).collect();
    let added: Vec<&str> = new_by.keys().filter(|p| !old_by.contains_key(*p)).copied().collect();
    let removed: Vec<&str> = old_by.keys().filter(|p| !new_by.contains_key(*p)).copied().collect();
    let modified: Vec<&str> = new_by.iter().filter(|(p, f)| old_by.get(*p).is_some_and(|o| o != *f)).map(|(p, _)| *p).collect();
    let mut parts = Vec::new();
    for (what, list) in [("added", &added), ("removed", &removed), ("modified", &modified)] {
        if !list.is_empty() {
            let shown: Vec<&str> = list.iter().take(3).copied().collect();
            let more = if list.len() > 3 { format!(" and {} more", list.len() - 3) } else { String::new() };
            parts.push(format!("{} {what} ({}{more})", list.len(), shown.join(", ")));
        }
    }
    format!("input files changed: {}", parts.join("; "))
}

fn diff_values(kind: &str, prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_values(kind, &name, x, y, out),
                    (None, Some(y)) => out.push(format!("{kind} `{name}` added: {y}")),
                    (Some(x), None) => out.push(format!("{kind} `{name}` removed (was {x})")),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => out.push(format!("{kind} `{prefix}` changed: {a} → {b}")),
        _ => {}
    }
}

/// Objects with sorted keys, whatever map type serde_json was built with.
fn canonicalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, canonicalize(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonicalize).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts() -> KeyParts {
        KeyParts {
            op: "sql".into(),
            op_version: 1,
            code_version: "0.1.0".into(),
            params: json!({"sql": "sql/features.sql", "window": 10}),
            files: BTreeMap::from([("sql/features.sql".into(), "aa".into())]),
            upstream: BTreeMap::from([("ingest".into(), "k1".into())]),
            inputs: vec![],
        }
    }

    #[test]
    fn key_is_stable_and_sensitive() {
        let a = parts();
        assert_eq!(a.key(), parts().key());
        let mut b = parts();
        b.params = json!({"window": 10, "sql": "sql/features.sql"});
        assert_eq!(a.key(), b.key(), "param order must not matter");
        b.files.insert("sql/features.sql".into(), "bb".into());
        assert_ne!(a.key(), b.key());
        assert_eq!(CacheKey::parse(&a.key().hex()), Some(a.key()));
    }

    #[test]
    fn changes_are_named() {
        let old = parts();
        let mut new = parts();
        new.params = json!({"sql": "sql/features.sql", "window": 12});
        new.files.insert("sql/features.sql".into(), "bb".into());
        new.upstream.insert("ingest".into(), "k2".into());
        let c = new.changes_since(&old);
        assert_eq!(
            c,
            vec!["param `window` changed: 10 → 12".to_string(), "file sql/features.sql changed".to_string(), "upstream `ingest` changed".to_string(),]
        );
    }

    #[test]
    fn input_changes_are_counted() {
        let f = |p: &str, v: &str| InputFile { path: p.into(), size: 1, version: v.into() };
        let mut old = parts();
        old.inputs = vec![f("a.csv", "1"), f("b.csv", "1")];
        let mut new = parts();
        new.inputs = vec![f("a.csv", "2"), f("c.csv", "1")];
        let c = new.changes_since(&old);
        assert_eq!(c, vec!["input files changed: 1 added (c.csv); 1 removed (b.csv); 1 modified (a.csv)"]);
    }
}
