//! The crate's modules import each other one way only: a check over the sources for import cycles.
//!
//! It reads every `.rs` file under `src/` and collects the crate paths each one names — `crate::a::b`,
//! the items of `use crate::{a::b, c}` groups and `super::x` — leaving out comments, string
//! literals and `#[cfg(test)] mod … { … }` items. Two graphs are built from them, as
//! `shared/tools/module_cycles.py` does:
//!
//! - the top-level modules of `src/` (`head` uses `gpu` when a file under `head` names
//!   `crate::gpu::…`), and
//! - the files of one folder (`head::cpu` uses `head::maths` when `src/head/cpu.rs` names
//!   `crate::head::maths::…` or `super::maths::…`); a folder's `mod.rs` is its module and has no
//!   node of its own here, and names that are not lower-case module names are left out.
//!
//! Every strongly connected component of more than one module is a cycle, and the check fails
//! listing each. A second test plants cycles in a small tree to show that they are found.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module name -> the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The import cycles among the modules under `src`, each as its members sorted and joined by
/// `" <-> "`: first those among the top-level modules, then those among files of one folder.
fn import_cycles(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut top = Graph::new();
    let mut within = Graph::new();
    for file in &files {
        let module = module_path(src, file);
        let Some(first) = module.first() else {
            continue; // lib.rs, main.rs: the crate root
        };
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let code = without_test_modules(&code_only(&text));
        for path in referenced_paths(&code, &module) {
            if path.is_empty() {
                continue;
            }
            if &path[0] != first {
                top.entry(first.clone())
                    .or_default()
                    .insert(path[0].clone());
            } else if module.len() >= 2
                && path.len() >= 2
                && path[1] != module[1]
                && is_module_name(&path[1])
            {
                within
                    .entry(format!("{}::{}", module[0], module[1]))
                    .or_default()
                    .insert(format!("{}::{}", path[0], path[1]));
            }
        }
    }
    let mut cycles = strongly_connected(&top);
    cycles.extend(strongly_connected(&within));
    cycles
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/head/cpu.rs` -> `[head, cpu]`; `src/knn/mod.rs` -> `[knn]`; `src/lib.rs` -> `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| ["mod", "lib", "main"].contains(&last.as_str()))
    {
        parts.pop();
    }
    parts
}

fn is_module_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with comments (line, block, nested block) replaced by spaces and the contents of string
/// and character literals (plain, byte, raw) blanked, keeping line breaks and lengths.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let after_ident = i > 0 && is_ident_char(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if !after_ident && (c == 'r' || (c == 'b' && next == Some('r'))) && {
            // A raw string: r"…", r#"…"#, br"…".
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            chars.get(start + hashes) == Some(&'"')
        } {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            let body = start + hashes + 1;
            for &p in &chars[i..body] {
                out.push(p);
            }
            i = body;
            while i < chars.len() {
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|&h| h == '#') {
                    let end = (i + 1 + hashes).min(chars.len());
                    for &p in &chars[i..end] {
                        out.push(p);
                    }
                    i = end;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    out.push(' ');
                    i += 1;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
            if i < chars.len() {
                out.push('"');
                i += 1;
            }
        } else if c == '\'' && {
            // A character literal ('x', '\n', '\u{1F600}'), not a lifetime ('a).
            next == Some('\\') || chars.get(i + 2) == Some(&'\'')
        } {
            out.push('\'');
            i += 1;
            if chars.get(i) == Some(&'\\') {
                out.push_str("  ");
                i += 2;
            }
            while i < chars.len() && chars[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            if i < chars.len() {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The index just past the `}` that closes the `{` at `open`, or the end of `code`.
fn matching_brace(code: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// `code` (already without comments and strings) without its `#[cfg(test)] mod name { … }` items.
fn without_test_modules(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i..].starts_with(&marker) {
            // Skip whitespace, expect `mod`, a name, whitespace and `{`.
            let mut j = i + marker.len();
            let skip_space = |mut j: usize| {
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                j
            };
            j = skip_space(j);
            let is_mod = chars[j..].starts_with(&['m', 'o', 'd'])
                && chars.get(j + 3).is_some_and(|c| c.is_whitespace());
            if is_mod {
                j = skip_space(j + 3);
                while j < chars.len() && is_ident_char(chars[j]) {
                    j += 1;
                }
                j = skip_space(j);
                if chars.get(j) == Some(&'{') {
                    i = matching_brace(&chars, j);
                    continue;
                }
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The identifiers separated by `::` starting at `at`, and where they end (a `{` is not part).
fn path_at(code: &[char], mut at: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    loop {
        let start = at;
        while at < code.len() && is_ident_char(code[at]) {
            at += 1;
        }
        if at == start {
            break;
        }
        segments.push(code[start..at].iter().collect());
        if code[at..].starts_with(&[':', ':']) {
            at += 2;
        } else {
            break;
        }
    }
    (segments, at)
}

/// Positions just past each occurrence of `word` in `code` that starts an identifier.
fn occurrences(code: &[char], word: &str) -> Vec<usize> {
    let word: Vec<char> = word.chars().collect();
    (0..code.len())
        .filter(|&i| code[i..].starts_with(&word) && (i == 0 || !is_ident_char(code[i - 1])))
        .map(|i| i + word.len())
        .collect()
}

/// Every crate path `code` names, as its segments from the crate root: `crate::a::b::C`,
/// the items of `use crate::{a::b, c::{d, e}}` (`[a, b]`, `[c]`), and `super::x` from `module`
/// (`[parent…, x]`).
fn referenced_paths(code: &str, module: &[String]) -> BTreeSet<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut paths = BTreeSet::new();
    for at in occurrences(&chars, "crate::") {
        if chars.get(at) == Some(&'{') {
            // A group: each top-level item up to its own `{` or the end.
            let end = matching_brace(&chars, at);
            let inner = &chars[at + 1..end.saturating_sub(1).max(at + 1)];
            let mut depth = 0;
            let mut item_start = 0;
            let items = inner.iter().copied().enumerate();
            for (k, c) in items.chain(std::iter::once((inner.len(), ','))) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let item: String = inner[item_start..k].iter().collect();
                        let item: Vec<char> = item.trim().chars().collect();
                        let (segments, _) = path_at(&item, 0);
                        if !segments.is_empty() {
                            paths.insert(segments);
                        }
                        item_start = k + 1;
                    }
                    _ => {}
                }
            }
        } else {
            let (segments, _) = path_at(&chars, at);
            if !segments.is_empty() {
                paths.insert(segments);
            }
        }
    }
    let parent = &module[..module.len().saturating_sub(1)];
    for at in occurrences(&chars, "super::") {
        let (segments, _) = path_at(&chars, at);
        if let Some(first) = segments.first().filter(|s| *s != "super" && *s != "self") {
            let mut path = parent.to_vec();
            path.push(first.clone());
            paths.insert(path);
        }
    }
    paths
}

/// The strongly connected components of more than one node (Tarjan), each sorted and joined.
fn strongly_connected(graph: &Graph) -> Vec<String> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        components: Vec<String>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.components.push(component.join(" <-> "));
                }
            }
        }
    }
    let nodes: BTreeSet<&str> = graph
        .iter()
        .flat_map(|(v, ws)| std::iter::once(v.as_str()).chain(ws.iter().map(String::as_str)))
        .collect();
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in nodes {
        if !tarjan.index.contains_key(v) {
            tarjan.visit(v);
        }
    }
    tarjan.components
}

#[test]
fn the_crate_has_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let cycles = import_cycles(&src);
    assert!(
        cycles.is_empty(),
        "{} import cycle(s) among the modules of src:\n{}",
        cycles.len(),
        cycles
            .iter()
            .map(|c| format!("cycle: {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_planted_cycle_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files = [
        (
            "lib.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod e;\n",
        ),
        // a <-> b at the top level, b naming a through a `use` group.
        ("a.rs", "use crate::b::Thing;\npub struct Other;\n"),
        ("b.rs", "use crate::{a::Other, Error};\npub struct Thing;\n"),
        // c::x <-> c::y within the folder c, y naming x through `super`.
        ("c/mod.rs", "pub mod x;\npub mod y;\n"),
        ("c/x.rs", "pub fn g() -> u32 { crate::c::y::f() }\n"),
        (
            "c/y.rs",
            "pub fn f() -> u32 { 1 }\npub fn h() -> u32 { super::x::g() }\n",
        ),
        // d names e only where it does not count: e -> d is one way.
        (
            "d.rs",
            "// use crate::e::X;\n/* crate::e::Y /* nested */ crate::e */\n\
             pub const S: &str = \"crate::e::Z\";\npub const R: &str = r#\"crate::e\"#;\n\
             pub struct Y<'a>(&'a str);\npub const C: char = '\"';\n\
             #[cfg(test)]\nmod tests {\n    use crate::e::X;\n    fn f() { let _ = { 1 }; }\n}\n\
             pub fn after_the_tests() {}\n",
        ),
        ("e.rs", "pub struct X(crate::d::Y<'static>);\n"),
    ];
    for (path, text) in files {
        let path = src.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    assert_eq!(import_cycles(&src), ["a <-> b", "c::x <-> c::y"]);

    // A reference after a test module still counts: d -> e closes a cycle.
    let d = src.join("d.rs");
    let mut text = fs::read_to_string(&d).unwrap();
    text.push_str("pub fn uses_e(_: crate::e::X) {}\n");
    fs::write(&d, text).unwrap();
    assert_eq!(import_cycles(&src), ["a <-> b", "d <-> e", "c::x <-> c::y"]);
}
