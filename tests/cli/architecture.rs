//! The source's shape, checked: modules form a one-way graph. A newcomer reads a folder (or a
//! file) knowing that nothing it uses uses it back, so no two top-level folders import each
//! other (directly or around a loop), and no two files of one folder do.
//!
//! Edges come from `crate::…` and `super::…` paths in each file's code (its `mod tests` left
//! out), resolved to the deepest module file they name. A module's own ancestors and
//! descendants are not edges: a folder's `mod.rs` declares and re-exports its files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    for entry in walk(src) {
        let rel = entry.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        match parts.last().map(String::as_str) {
            Some("main") if parts.len() == 1 => continue,
            Some("lib") if parts.len() == 1 => parts.clear(),
            Some("mod") => {
                parts.pop();
            }
            _ => {}
        }
        out.insert(parts, entry);
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
    files
}

/// The code of a file without its unit tests and comments.
fn code(text: &str) -> String {
    let text = text.find("#[cfg(test)]\nmod tests").map_or(text, |i| &text[..i]);
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every `crate::a::b` / `super::a` path in `code`, as the segments after the keyword
/// (`super` counted in the first element).
fn paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != ':';
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let (kind, len) = if starts_word && rest.starts_with("crate::") {
            (0, 7)
        } else if starts_word && rest.starts_with("super::") {
            (1, 7)
        } else {
            i += 1;
            continue;
        };
        i += len;
        let mut ups = kind;
        let mut segs = Vec::new();
        loop {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let seg: String = bytes[start..i].iter().collect();
            if seg.is_empty() {
                break;
            }
            if seg == "super" && segs.is_empty() {
                ups += 1;
            } else {
                segs.push(seg);
            }
            if bytes[i..].starts_with(&[':', ':']) {
                i += 2;
            } else {
                break;
            }
        }
        out.push((ups, segs));
    }
    out
}

fn edges(mods: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, file) in mods {
        let text = std::fs::read_to_string(file).unwrap();
        for (ups, segs) in paths(&code(&text)) {
            let mut path: Module = if ups == 0 { Vec::new() } else { m[..m.len().saturating_sub(ups)].to_vec() };
            path.extend(segs);
            let target = (0..=path.len()).rev().map(|k| path[..k].to_vec()).find(|p| mods.contains_key(p)).unwrap_or_default();
            let related = target.starts_with(m) || m.starts_with(&target);
            if !related {
                edges.entry(m.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// Strongly connected groups of more than one node (Tarjan).
fn loops(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit(s: &mut State, n: &Module) {
        let i = s.index.len();
        s.index.insert(n.clone(), i);
        s.low.insert(n.clone(), i);
        s.stack.push(n.clone());
        for w in s.edges.get(n).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let ln = s.low.get_mut(n).unwrap();
                *ln = (*ln).min(lw);
            } else if s.stack.contains(w) {
                let iw = s.index[w];
                let ln = s.low.get_mut(n).unwrap();
                *ln = (*ln).min(iw);
            }
        }
        if s.low[n] == s.index[n] {
            let mut group = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                let done = &w == n;
                group.push(w);
                if done {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut s = State { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    let nodes: BTreeSet<Module> = edges.iter().flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.iter().cloned())).collect();
    for n in &nodes {
        if !s.index.contains_key(n) {
            visit(&mut s, n);
        }
    }
    s.found
}

fn shown(groups: &[Vec<Module>]) -> String {
    groups.iter().map(|g| g.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(" ↔ ")).collect::<Vec<_>>().join("; ")
}

fn source_graph() -> BTreeMap<Module, BTreeSet<Module>> {
    edges(&modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")))
}

#[test]
fn no_two_files_import_each_other() {
    let loops = loops(&source_graph());
    assert!(loops.is_empty(), "files that import each other (directly or around a loop): {}", shown(&loops));
}

#[test]
fn no_two_folders_import_each_other() {
    let mut folders: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (a, bs) in source_graph() {
        for b in bs {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                if x != y {
                    folders.entry(vec![x.clone()]).or_default().insert(vec![y.clone()]);
                }
            }
        }
    }
    assert!(folders.len() > 5, "the graph was read: {folders:?}");
    let loops = loops(&folders);
    assert!(loops.is_empty(), "top-level modules that import each other: {}", shown(&loops));
}

/// The checker itself finds a loop, through `super::` and `crate::` paths alike.
#[test]
fn a_loop_between_two_files_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "pub mod x;\npub mod y;\n").unwrap();
    std::fs::write(src.join("a/x.rs"), "use super::y::Y;\n#[cfg(test)]\nmod tests { use crate::b::B; }\n").unwrap();
    std::fs::write(src.join("a/y.rs"), "pub struct Y;\nfn f() -> crate::a::x::X { todo!() } // crate::b::B\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B(crate::a::x::X);\n").unwrap();
    let graph = edges(&modules(src));
    assert_eq!(shown(&loops(&graph)), "a::x ↔ a::y", "{graph:?}");
    // A test module's and a comment's paths are no edges: b imports a, never the other way.
    let module = |m: &str| m.split("::").map(String::from).collect::<Module>();
    assert!(graph.values().all(|targets| !targets.contains(&module("b"))), "{graph:?}");
    assert!(graph[&module("b")].contains(&module("a::x")));
}
