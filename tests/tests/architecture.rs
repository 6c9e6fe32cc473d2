//! The host library's modules depend on each other one way only: no import circle.
//!
//! The same parse as `tools/scripts/module_graph.py`: every `crate::X` / `use crate::{X,
//! ..}` / `super::` reference in host/src/**/*.rs (comments and string literals ignored,
//! inline `mod NAME { .. }` blocks followed so `super::` resolves), mapped to the
//! top-level module it names (host/src/<name>.rs or host/src/<name>/). The layering
//! itself is in docs/architecture.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src")
}

/// `text` with comments, string and char literals blanked out (newlines kept).
fn strip_comments_and_strings(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let n = c.len();
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, x)| c.get(i + k) == Some(&x));
    let mut out = String::with_capacity(n);
    let mut i = 0;
    while i < n {
        if at(i, "//") {
            while i < n && c[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < n && depth > 0 {
                if at(j, "/*") {
                    depth += 1;
                    j += 2;
                } else if at(j, "*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    if c[j] == '\n' {
                        out.push('\n');
                    }
                    j += 1;
                }
            }
            i = j;
        } else if c[i] == 'r' && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_')) && {
            let mut j = i + 1;
            while j < n && c[j] == '#' {
                j += 1;
            }
            j < n && c[j] == '"'
        } {
            // Raw string r#".."#.
            let mut j = i + 1;
            while c[j] == '#' {
                j += 1;
            }
            let hashes = j - i - 1;
            let mut k = j + 1;
            loop {
                if k >= n {
                    break;
                }
                if c[k] == '"' && (0..hashes).all(|h| c.get(k + 1 + h) == Some(&'#')) {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            out.push_str("\"\"");
            out.extend(c[i..k.min(n)].iter().filter(|&&x| x == '\n'));
            i = k;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < n && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            out.extend(c[i..j.min(n)].iter().filter(|&&x| x == '\n'));
            i = j + 1;
        } else if c[i] == '\'' {
            // A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            let len = if c.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                if c.get(j) == Some(&'u') && c.get(j + 1) == Some(&'{') {
                    while j < n && c[j] != '}' {
                        j += 1;
                    }
                }
                (c.get(j + 1) == Some(&'\'')).then_some(j + 2 - i)
            } else {
                (c.get(i + 1).is_some_and(|&x| x != '\'') && c.get(i + 2) == Some(&'\''))
                    .then_some(3)
            };
            match len {
                Some(l) => {
                    out.push_str("' '");
                    i += l;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Identifiers, `::`, `{`, `}`, `,` and `;` (the rest dropped).
fn tokens(text: &str) -> Vec<String> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_ascii_alphabetic() || c[i] == '_' {
            let s = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[s..i].iter().collect());
            continue;
        }
        if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
            continue;
        }
        if matches!(c[i], '{' | '}' | ',' | ';') {
            out.push(c[i].to_string());
        } else if c[i].is_ascii_digit() {
            // Keep `1u32` from reading as an identifier.
            while i + 1 < c.len() && (c[i + 1].is_ascii_alphanumeric() || c[i + 1] == '_') {
                i += 1;
            }
        }
        i += 1;
    }
    out
}

/// First segment of each item of the `{..}` group opening at `toks[i]`.
fn group_heads(toks: &[String], mut i: usize) -> Vec<String> {
    let (mut heads, mut depth, mut expect) = (Vec::new(), 0, true);
    while i < toks.len() {
        match toks[i].as_str() {
            "{" => {
                depth += 1;
                expect = depth == 1;
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => expect = true,
            "::" | ";" => {}
            t if depth == 1 && expect => {
                heads.push(t.to_string());
                expect = false;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// (module path of the reference, top-level module it names) for every crate/super path.
fn references(text: &str, base: &[String]) -> Vec<(Vec<String>, String)> {
    let toks = tokens(&strip_comments_and_strings(text));
    let mut refs = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let tok = |k: usize| toks.get(k).map(String::as_str).unwrap_or("");
    while i < toks.len() {
        let t = tok(i);
        if t == "mod" && tok(i + 2) == "{" {
            depth += 1;
            stack.push((depth, tok(i + 1).to_string()));
            i += 3;
            continue;
        }
        match t {
            "{" => depth += 1,
            "}" => {
                if stack.last().is_some_and(|s| s.0 == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "crate" | "super" if tok(i + 1) == "::" => {
                let mut here = base.to_vec();
                here.extend(stack.iter().map(|s| s.1.clone()));
                let path: Vec<String> = if t == "crate" {
                    Vec::new()
                } else {
                    let mut ups = 1;
                    while tok(i + 2 * ups) == "super" && tok(i + 2 * ups + 1) == "::" {
                        ups += 1;
                    }
                    i += 2 * (ups - 1);
                    if ups > here.len() {
                        i += 1;
                        continue;
                    }
                    here[..here.len() - ups].to_vec()
                };
                let targets = if let Some(first) = path.first() {
                    vec![first.clone()]
                } else if tok(i + 2) == "{" {
                    group_heads(&toks, i + 2)
                } else {
                    vec![tok(i + 2).to_string()]
                };
                for target in targets {
                    if !matches!(target.as_str(), "" | "self" | "super" | "crate" | "{") {
                        refs.push((here.clone(), target));
                    }
                }
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    refs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read host/src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module → the top-level modules it references.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for e in std::fs::read_dir(src).expect("read host/src") {
        let p = e.expect("dir entry").path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() || (p.extension().is_some_and(|x| x == "rs") && name != "lib") {
            graph.insert(name, BTreeSet::new());
        }
    }
    let mut files = Vec::new();
    rust_files(src, &mut files);
    for f in files {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let mut base: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        if matches!(
            base.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            base.pop();
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        for (here, target) in references(&text, &base) {
            let Some(from) = here.first() else { continue };
            if graph.contains_key(&target) && *from != target && graph.contains_key(from) {
                graph.get_mut(from).unwrap().insert(target);
            }
        }
    }
    graph
}

/// Strongly connected components (Tarjan), each sorted.
fn sccs(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        on: BTreeSet<&'a str>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in &s.graph[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// One cycle inside component `comp`, as `a -> b -> .. -> a`.
fn a_cycle(graph: &Graph, comp: &[String]) -> String {
    let start = &comp[0];
    // Breadth-first from `start` back to `start`, staying inside the component.
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.as_str()]);
    while let Some(v) = queue.pop_front() {
        for w in &graph[v] {
            if !comp.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![start.as_str(), v];
                let mut x = v;
                while x != start {
                    x = prev[x];
                    path.push(x);
                }
                path.reverse();
                return path.join(" -> ");
            }
            if !prev.contains_key(w.as_str()) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    comp.join(" ")
}

#[test]
fn host_modules_form_no_cycle() {
    let graph = module_graph(&host_src());
    assert!(
        graph.len() > 10 && graph.contains_key("train") && graph.contains_key("quantize"),
        "expected the host modules, found {:?}",
        graph.keys().collect::<Vec<_>>()
    );
    let cycles: Vec<String> = sccs(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| format!("{{{}}}, e.g. {}", c.join(", "), a_cycle(&graph, &c)))
        .collect();
    let edges: String = graph
        .iter()
        .map(|(m, d)| {
            format!(
                "  {m} -> {}\n",
                d.iter().cloned().collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "the host modules import each other in a circle: {}\n(see docs/architecture.md for \
         the layering; python3 tools/scripts/module_graph.py prints the same graph)\n{edges}",
        cycles.join("; ")
    );
}

#[test]
fn the_parse_follows_groups_super_and_inline_modules() {
    let text = r##"
use crate::{b, c::{x, y}, self as s};
// crate::zz::foo
/* crate::zz */
const S: &str = "crate::zz::x";
const R: &str = r#"crate::zz"#;
fn f<'a>(x: &'a str) -> char { let c = '"'; crate::d::g(); 'x' }
mod tests { use super::*; use super::super::e; }
"##;
    let refs = references(text, &["a".to_string()]);
    let targets: BTreeSet<&str> = refs.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(targets, BTreeSet::from(["a", "b", "c", "d", "e"]));
    let nested = references(
        "use super::sibling; fn g() { super::super::top::h(); }",
        &["q".to_string(), "inner".to_string()],
    );
    let targets: Vec<&str> = nested.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(targets, ["q", "top"]);
}

/// The libraries have no CLI dependencies: clap and anyhow belong to the binaries
/// (`tools`, and `device`'s bin target behind its `cli` feature).
#[test]
fn no_cli_crates_in_a_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dependencies = |manifest: &str| -> Vec<String> {
        let text = std::fs::read_to_string(root.join(manifest)).unwrap();
        let mut in_deps = false;
        let mut lines = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                in_deps = t == "[dependencies]";
            } else if in_deps && !t.starts_with('#') && !t.is_empty() {
                lines.push(t.to_string());
            }
        }
        lines
    };
    for lib in [
        "protocol/Cargo.toml",
        "device/bundle/Cargo.toml",
        "host/Cargo.toml",
    ] {
        for dep in dependencies(lib) {
            assert!(
                !(dep.starts_with("clap") || dep.starts_with("anyhow")),
                "{lib} depends on {dep}: a library returns typed errors and parses no flags"
            );
        }
    }
    for dep in dependencies("device/Cargo.toml") {
        if dep.starts_with("clap") || dep.starts_with("anyhow") {
            assert!(
                dep.contains("optional = true"),
                "device/Cargo.toml: {dep} must be optional (the `cli` feature of the bin target)"
            );
        }
    }
}
