//! The crate's seams, read from its sources: no module imports one that
//! imports it back (between top-level modules, and between the files of a
//! directory module), lib.rs's Layout names every module, http/mod.rs's map
//! names every file, and only the deliberate modules are public.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The code of a file without comments and without its unit-test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers that follow each occurrence of `prefix` (e.g. `crate::`),
/// including every first segment of a `prefix{a, b::c}` group.
fn targets(code: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                found.push(first_ident(item.trim()));
            }
        } else {
            found.push(first_ident(rest));
        }
    }
    found.retain(|t| !t.is_empty());
    found
}

fn first_ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Root re-exports of lib.rs: item name → the module it comes from.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = first_ident(rest);
        let items = rest[module.len()..].trim_start_matches("::");
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.split(" as ").last().unwrap_or("").trim();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.clone());
            }
        }
    }
    map
}

/// The module path of a file: `["pool"]`, `["pool", "budget"]`…
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// (top-level graph, per directory module: the graph of its files).
fn graphs() -> (Graph, BTreeMap<String, Graph>) {
    let lib = read(&src().join("lib.rs"));
    let reexported = reexports(&lib);
    let mut top = Graph::new();
    let mut inner: BTreeMap<String, Graph> = BTreeMap::new();
    for file in rust_files(&src()) {
        let module = module_of(&file);
        if matches!(module.as_slice(), [m] if m == "lib" || m == "main") {
            continue;
        }
        let code = code(&read(&file));
        let own = module[0].clone();
        for target in targets(&code, "crate::") {
            let target = reexported.get(&target).cloned().unwrap_or(target);
            if target != own {
                top.entry(own.clone()).or_default().insert(target);
            }
        }
        if module.len() == 2 {
            let siblings = inner.entry(own.clone()).or_default();
            let edges = siblings.entry(module[1].clone()).or_default();
            let dir = src().join(&own);
            let own_prefix = format!("crate::{own}::");
            for target in targets(&code, "super::")
                .into_iter()
                .chain(targets(&code, &own_prefix))
            {
                let is_file =
                    dir.join(format!("{target}.rs")).exists() || dir.join(&target).is_dir();
                if is_file && target != module[1] {
                    edges.insert(target);
                }
            }
        }
    }
    (top, inner)
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let (top, inner) = graphs();
    assert!(
        top.get("catalog").is_some_and(|t| t.contains("tenant")),
        "the reader sees imports: {top:?}"
    );
    if let Some(found) = cycle(&top) {
        panic!("import cycle between modules: {}", found.join(" → "));
    }
    for (module, files) in &inner {
        if let Some(found) = cycle(files) {
            panic!("import cycle inside {module}/: {}", found.join(" → "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
        .collect();
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        targets("use super::{a::X, b}; crate::c::D", "super::"),
        ["a", "b"]
    );
}

/// Modules declared in `text` (`mod x;`, `pub mod x;`, `pub(crate) mod x;`),
/// with whether they are public.
fn declared_modules(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (public, rest) = if let Some(rest) = line.strip_prefix("pub mod ") {
                (true, rest)
            } else if let Some(rest) = line.strip_prefix("pub(crate) mod ") {
                (false, rest)
            } else {
                (false, line.strip_prefix("mod ")?)
            };
            let name = rest.strip_suffix(';')?;
            Some((name.to_owned(), public))
        })
        .collect()
}

#[test]
fn lib_layout_names_every_module_and_only_the_deliberate_ones_are_public() {
    let lib = read(&src().join("lib.rs"));
    let layout = &lib[lib.find("//! ## Layout").expect("a Layout section")..];
    let modules = declared_modules(&lib);
    assert!(modules.len() > 20, "{modules:?}");
    for (module, _) in &modules {
        assert!(
            layout.contains(&format!("`{module}`")) || layout.contains(&format!("[`{module}`]")),
            "lib.rs's Layout does not name module {module}"
        );
    }
    let public: Vec<&str> = modules
        .iter()
        .filter(|(_, public)| *public)
        .map(|(m, _)| m.as_str())
        .collect();
    assert_eq!(
        public,
        ["cli", "config", "fleet", "http", "legacy", "purge"],
        "the public modules are the deliberate surface (purge only with the testing feature)"
    );
}

#[test]
fn http_map_names_every_file() {
    let http = src().join("http");
    let map = read(&http.join("mod.rs"));
    let doc: String = map
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    for file in rust_files(&http) {
        let name = file.file_stem().expect("file name").to_string_lossy();
        if name == "mod" {
            continue;
        }
        assert!(
            doc.contains(&format!("`{name}`")),
            "http/mod.rs's map does not name {name}.rs"
        );
    }
}
