//! The architecture invariants (ARCHITECTURE.md, "Architecture invariants"), checked on the
//! source: every file of `src/` belongs to a layer, and every path it names (its `use` lines,
//! and `crate::...` or a crate's name written inline) points at its own layer or one below and
//! crosses no "knows nothing of" line. Also: no import cycle between the files of `src/` or of
//! `loadtest/src/`.
//!
//! Test code (`tests.rs` files, `#[cfg(test)]` items) is exempt: a test may build its fixtures
//! from anywhere. Comments and string literals are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom up. A module belongs to the longest entry its path starts with (by whole
/// segments: `fanout::shard` does not hold `fanout::shard_core`).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "L0 (plain data and leaf services)",
        &[
            "model",
            "error",
            "codec",
            "storage",
            "entropy",
            "planted_bugs",
            "config",
            "auth",
            "clock",
            "telemetry",
            "logging",
        ],
    ),
    (
        "L1 (engines: no transport, no actors)",
        &[
            "journal",
            "inventory",
            "checkout",
            "decorate",
            "sources::formats",
            "sources::synthetic",
            "sources::replay",
            "sources::seq_floor",
            "store",
            "bus",
            "protocol",
            "simulation",
        ],
    ),
    ("L2 (fan-out without actors)", &["fanout"]),
    (
        "L3 (the actors)",
        &[
            "sources",
            "sources::sequencer",
            "sources::bus_feed",
            "sources::bus_history",
            "sources::driver",
            "decorate::decorator",
            "fanout::shard",
            "fanout::stock_publisher",
            "sessions",
        ],
    ),
    ("L4 (routes and wiring)", &["http", "server"]),
];

/// The engines: they return plain values and know nothing of the wire.
const ENGINES: &[&str] = &[
    "journal",
    "inventory",
    "checkout",
    "decorate",
    "sources::formats",
    "sources::synthetic",
    "sources::replay",
    "sources::seq_floor",
    "store",
    "bus",
];

/// A "knows nothing of" line: modules `who` (entries of [`LAYERS`]) never name a path starting
/// with one of `forbidden` (whole segments), unless it starts with one of `except`.
struct Rule {
    text: &'static str,
    who: fn(layer: usize, entry: &str) -> bool,
    forbidden: &'static [&'static str],
    except: &'static [&'static str],
}

/// The rule every file obeys, stated for the failure message.
const POINTS_DOWN: &str = "imports point down: a layer uses itself and the layers below it only";

const RULES: &[Rule] = &[
    Rule {
        text: "the engines know nothing of the wire protocol: they return plain values and \
               `protocol` renders them",
        who: |_, entry| ENGINES.contains(&entry),
        forbidden: &["crate::protocol"],
        except: &[],
    },
    Rule {
        text: "the journal knows nothing of what it stores",
        who: |_, entry| entry == "journal",
        forbidden: &["crate::inventory", "crate::checkout"],
        except: &[],
    },
    Rule {
        text: "the inventory knows nothing of checkout or the decorator",
        who: |_, entry| entry == "inventory",
        forbidden: &["crate::checkout", "crate::decorate"],
        except: &[],
    },
    Rule {
        text: "L0, L1 and L2 know nothing of actix, axum or hyper",
        who: |layer, _| layer <= 2,
        forbidden: &["actix", "actix_rt", "axum", "hyper", "hyper_util"],
        except: &[],
    },
    Rule {
        text: "L0, L1 and L2 know tungstenite only for `Utf8Bytes`, the text frame the \
               decorator serialises once and every socket shares by refcount",
        who: |layer, _| layer <= 2,
        forbidden: &["tokio_tungstenite"],
        except: &["tokio_tungstenite::tungstenite::Utf8Bytes"],
    },
    Rule {
        text: "inventory, journal, checkout, the store and the bus know nothing of tungstenite",
        who: |_, entry| ["inventory", "journal", "checkout", "store", "bus"].contains(&entry),
        forbidden: &["tokio_tungstenite"],
        except: &[],
    },
];

/// The one allowlist: violations the code still has, each with the item of issue 12 that
/// removes it. It may only shrink: a new violation fails the tests, and so does an entry here
/// that no longer matches one.
const ALLOWED: &[Allowed] = &[];

/// An entry of [`ALLOWED`].
enum Allowed {
    /// `file` (as `src/...`) naming a path that starts with `path`, against a layer or a rule.
    #[allow(dead_code)] // None left; the variant stays for the next one found.
    Import {
        file: &'static str,
        path: &'static str,
        removed_by: &'static str,
    },
    /// An import cycle between files, as [`Crate::file_cycles`] prints it.
    #[allow(dead_code)] // None left; the variant stays for the next one found.
    Cycle {
        files: &'static str,
        removed_by: &'static str,
    },
}

impl Allowed {
    /// Why the entry is there, for the failure message of a stale one.
    fn removed_by(&self) -> &'static str {
        match self {
            Allowed::Import { removed_by, .. } | Allowed::Cycle { removed_by, .. } => removed_by,
        }
    }
}

#[test]
fn every_import_in_src_points_down_a_layer_and_crosses_no_knows_nothing_of_line() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let crate_ = Crate::read(&src);
    let mut violations = Vec::new();
    for file in &crate_.files {
        let Some((layer, entry)) = layer_of(&file.module) else {
            violations.push(format!(
                "{}: module `{}` is in no layer: add it to LAYERS (and to ARCHITECTURE.md)",
                file.shown,
                file.module.join("::")
            ));
            continue;
        };
        for path in &file.paths {
            if let Some(target) = path.strip_prefix("crate::") {
                let segments: Vec<String> = target.split("::").map(str::to_owned).collect();
                match layer_of(&segments) {
                    Some((to, to_entry)) if to > layer => violations.push(format!(
                        "{}: `{path}` points up: `{entry}` is {}, `{to_entry}` is {}; rule: {POINTS_DOWN}",
                        file.shown, LAYERS[layer].0, LAYERS[to].0
                    )),
                    Some(_) => {}
                    None => violations.push(format!(
                        "{}: `{path}` names a module in no layer: add it to LAYERS",
                        file.shown
                    )),
                }
            }
            for rule in RULES {
                if (rule.who)(layer, entry)
                    && rule.forbidden.iter().any(|f| starts_with(path, f))
                    && !rule.except.iter().any(|e| starts_with(path, e))
                {
                    violations.push(format!("{}: `{path}`; rule: {}", file.shown, rule.text));
                }
            }
        }
    }
    let mut unexplained = Vec::new();
    let mut used = BTreeSet::new();
    for violation in &violations {
        let allowed = ALLOWED.iter().position(|allowed| match allowed {
            Allowed::Import { file, path, .. } => {
                violation.starts_with(&format!("{file}: `{path}"))
                    && violation[file.len() + 3 + path.len()..].starts_with(['`', ':'])
            }
            Allowed::Cycle { .. } => false,
        });
        match allowed {
            Some(index) => {
                used.insert(index);
            }
            None => unexplained.push(violation.as_str()),
        }
    }
    let stale: Vec<String> = ALLOWED
        .iter()
        .enumerate()
        .filter(|(index, _)| !used.contains(index))
        .filter_map(|(_, allowed)| match allowed {
            Allowed::Import { file, path, .. } => {
                Some(format!("{file}: `{path}` ({})", allowed.removed_by()))
            }
            Allowed::Cycle { .. } => None,
        })
        .collect();
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "layering violations:\n  {}\n\nALLOWED entries that no longer match a violation (remove them):\n  {}",
        unexplained.join("\n  "),
        stale.join("\n  ")
    );
}

#[test]
fn no_two_files_of_src_import_each_other_even_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let cycles = Crate::read(&src).file_cycles();
    let allowed: Vec<(String, &str)> = ALLOWED
        .iter()
        .filter_map(|allowed| match allowed {
            Allowed::Cycle { files, .. } => Some((
                files.split_whitespace().collect::<Vec<_>>().join(" "),
                allowed.removed_by(),
            )),
            Allowed::Import { .. } => None,
        })
        .collect();
    let new: Vec<&String> = cycles
        .iter()
        .filter(|c| !allowed.iter().any(|(a, _)| a == *c))
        .collect();
    let stale: Vec<String> = allowed
        .iter()
        .filter(|(a, _)| !cycles.contains(a))
        .map(|(a, why)| format!("{a} ({why})"))
        .collect();
    assert!(
        new.is_empty() && stale.is_empty(),
        "import cycles between files of src/:\n  {}\n\nALLOWED entries that no longer match a cycle (remove them):\n  {}",
        new.iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        stale
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn no_two_files_of_the_loadtest_import_each_other_even_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/src");
    let cycles = Crate::read(&src).file_cycles();
    assert!(
        cycles.is_empty(),
        "import cycles between files of loadtest/src/:\n  {}",
        cycles.join("\n  ")
    );
}

/// The checker checks what it should: a made-up file that breaks each rule is caught.
#[test]
fn the_reader_finds_grouped_nested_relative_and_inline_paths_but_not_comments_or_strings() {
    let code = r#"
        //! use crate::doc_comment;
        use crate::a::{self, b::{C, d as e}, f::*};
        use super::sibling::Thing;
        use self::child::Item;
        pub(crate) use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
        fn f() {
            let s = "crate::in_a_string // not a comment";
            let c = '"';
            crate::inline::call(); // crate::trailing_comment
            /* crate::block /* nested */ comment */
            actix::spawn(async {});
        }
        #[cfg(test)]
        mod tests {
            use crate::only_in_tests;
        }
        fn after<'a>(x: &'a str) -> &'a str { crate::after_tests::g(x) }
    "#;
    let paths = paths_in(code, &["m".to_owned(), "n".to_owned()], &BTreeSet::new());
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "actix::spawn",
            "crate::a",
            "crate::a::b::C",
            "crate::a::b::d",
            "crate::a::f",
            "crate::after_tests::g",
            "crate::inline::call",
            "crate::m::n::child::Item",
            "crate::m::sibling::Thing",
            "tokio_tungstenite::tungstenite::Message",
            "tokio_tungstenite::tungstenite::Utf8Bytes",
        ]
    );
}

/// One file of a crate: where it is, its module path, and the paths it names.
struct File {
    /// The path as shown in messages, e.g. `src/fanout/shard.rs`.
    shown: String,
    module: Vec<String>,
    /// Every path the file names, absolute (`crate::...` or an external crate's name first).
    paths: BTreeSet<String>,
    /// What its `pub use` lines re-export: the name to the absolute path it stands for.
    reexports: BTreeMap<String, String>,
}

struct Crate {
    files: Vec<File>,
}

impl Crate {
    /// Reads every non-test `.rs` file under `src` (the crate root: `lib.rs` or `main.rs`).
    fn read(src: &Path) -> Crate {
        let mut found = Vec::new();
        walk(src, &mut found);
        let modules: BTreeMap<Vec<String>, PathBuf> = found
            .iter()
            .filter_map(|path| module_of(src, path).map(|module| (module, path.clone())))
            .collect();
        let module_set: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
        let base = src.parent().unwrap_or(src);
        let files = modules
            .iter()
            .filter(|(module, _)| !module.is_empty() && module.last().is_some_and(|m| m != "tests"))
            .map(|(module, path)| {
                let code = fs::read_to_string(path).expect("read a source file");
                File {
                    shown: path
                        .strip_prefix(base)
                        .unwrap_or(path)
                        .display()
                        .to_string(),
                    module: module.clone(),
                    paths: paths_in(&code, module, &module_set),
                    reexports: reexports_in(&code, module, &module_set),
                }
            })
            .collect();
        Crate { files }
    }

    /// Cycles in the graph of files naming items of other files (an item named through a
    /// `pub use` counts as the file that defines it). A module's root file (`mod.rs`) declares
    /// its children and re-exports their items; its edges to its own children are not
    /// imports, so they do not count.
    fn file_cycles(&self) -> Vec<String> {
        let mut edges: BTreeMap<&Vec<String>, BTreeSet<&Vec<String>>> = BTreeMap::new();
        for file in &self.files {
            let out = edges.entry(&file.module).or_default();
            for path in &file.paths {
                let Some(to) = self.file_of(path, 0) else {
                    continue;
                };
                let own_child = to.len() > file.module.len() && to.starts_with(&file.module);
                if *to != file.module && !own_child {
                    out.insert(to);
                }
            }
        }
        strongly_connected(&edges)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let names: Vec<String> = component.iter().map(|m| m.join("::")).collect();
                names.join(" <-> ")
            })
            .collect()
    }
}

impl Crate {
    /// The module of the file that defines what `path` names: the longest module the path
    /// starts with, followed through that file's `pub use` re-exports (a few steps at most).
    fn file_of(&self, path: &str, depth: usize) -> Option<&Vec<String>> {
        let segments: Vec<&str> = path.strip_prefix("crate::")?.split("::").collect();
        let (file, used) = (1..=segments.len()).rev().find_map(|n| {
            let file = self.files.iter().find(|f| {
                f.module
                    .iter()
                    .map(String::as_str)
                    .eq(segments[..n].iter().copied())
            })?;
            Some((file, n))
        })?;
        let followed = segments
            .get(used)
            .and_then(|name| file.reexports.get(*name))
            .filter(|_| depth < 4)
            .map(|target| {
                let rest = &segments[used + 1..];
                if rest.is_empty() {
                    target.clone()
                } else {
                    format!("{target}::{}", rest.join("::"))
                }
            });
        followed
            .and_then(|target| self.file_of(&target, depth + 1))
            .or(Some(&file.module))
    }
}

/// Tarjan's algorithm, written for clarity over speed (a few hundred files).
fn strongly_connected<'a>(
    edges: &BTreeMap<&'a Vec<String>, BTreeSet<&'a Vec<String>>>,
) -> Vec<Vec<&'a Vec<String>>> {
    struct State<'a> {
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        components: Vec<Vec<&'a Vec<String>>>,
    }
    fn visit<'a>(
        node: &'a Vec<String>,
        edges: &BTreeMap<&'a Vec<String>, BTreeSet<&'a Vec<String>>>,
        state: &mut State<'a>,
    ) {
        let index = state.index.len();
        state.index.insert(node, index);
        state.low.insert(node, index);
        state.stack.push(node);
        state.on_stack.insert(node);
        for &next in edges.get(node).into_iter().flatten() {
            if !state.index.contains_key(next) {
                visit(next, edges, state);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top);
                if top == node {
                    break;
                }
            }
            state.components.push(component);
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &node in edges.keys() {
        if !state.index.contains_key(node) {
            visit(node, edges, &mut state);
        }
    }
    state.components
}

/// The layer index and the [`LAYERS`] entry of a module path (longest entry first).
fn layer_of(module: &[String]) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, &'static str)> = None;
    for (layer, (_, entries)) in LAYERS.iter().enumerate() {
        for &entry in entries.iter() {
            let parts: Vec<&str> = entry.split("::").collect();
            let holds =
                parts.len() <= module.len() && parts.iter().zip(module).all(|(p, m)| p == m);
            if holds && best.is_none_or(|(_, b)| parts.len() > b.split("::").count()) {
                best = Some((layer, entry));
            }
        }
    }
    best
}

/// Whether `path` starts with `prefix` by whole segments.
fn starts_with(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with("::"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; the crate root is the empty path.
fn module_of(src: &Path, path: &Path) -> Option<Vec<String>> {
    let relative = path.strip_prefix(src).ok()?.with_extension("");
    let mut module: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if module.last().is_some_and(|last| last == "mod") {
        module.pop();
    }
    if module.len() == 1 && (module[0] == "lib" || module[0] == "main") {
        module.clear();
    }
    Some(module)
}

/// Every path `code` (the file of `module`) names outside its comments, strings and test
/// items, made absolute: `crate::...` for this crate's items, else the external crate first.
/// `modules` tells a bare child-module name (`use writer::X` in `journal/mod.rs`) from a crate.
fn paths_in(code: &str, module: &[String], modules: &BTreeSet<Vec<String>>) -> BTreeSet<String> {
    let code = without_test_items(&code_only(code));
    let mut paths = BTreeSet::new();
    let mut rest = String::with_capacity(code.len());
    let mut cursor = 0;
    while let Some(found) = find_word(&code, "use", cursor) {
        let Some(end) = code[found..].find(';').map(|e| found + e) else {
            break;
        };
        rest.push_str(&code[cursor..found]);
        let mut tree = Vec::new();
        expand("", &normalise_tree(&code[found + 3..end]), &mut tree);
        for path in tree {
            if let Some(path) = absolute(&path, module, modules) {
                paths.insert(path);
            }
        }
        cursor = end + 1;
    }
    rest.push_str(&code[cursor..]);
    // Inline paths: `crate::x::y` and `some_crate::x` written in code.
    let bytes = rest.as_bytes();
    let mut at = 0;
    while let Some(offset) = rest[at..].find("::") {
        let sep = at + offset;
        let mut start = sep;
        while start > 0 && is_ident(bytes[start - 1]) {
            start -= 1;
        }
        let preceded_by_path = start >= 1 && (bytes[start - 1] == b':' || bytes[start - 1] == b'$');
        let mut end = sep;
        while end < bytes.len() && (is_ident(bytes[end]) || bytes[end] == b':') {
            end += 1;
        }
        if start < sep && !preceded_by_path {
            let path = rest[start..end].trim_end_matches(':');
            if let Some(path) = absolute(path, module, modules) {
                paths.insert(path);
            }
        }
        at = end.max(sep + 2);
    }
    paths
}

/// What `code`'s `pub use` lines (any `pub(...)` too) re-export: each name to the absolute
/// path it stands for (`as` renames are not followed).
fn reexports_in(
    code: &str,
    module: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> BTreeMap<String, String> {
    let code = without_test_items(&code_only(code));
    let mut reexports = BTreeMap::new();
    let mut cursor = 0;
    while let Some(found) = find_word(&code, "use", cursor) {
        let Some(end) = code[found..].find(';').map(|e| found + e) else {
            break;
        };
        let before = code[..found].trim_end();
        if before.ends_with("pub") || before.ends_with(')') && before.contains("pub(") {
            let mut tree = Vec::new();
            expand("", &normalise_tree(&code[found + 3..end]), &mut tree);
            for path in tree {
                if let Some(path) = absolute(&path, module, modules)
                    && let Some(name) = path.rsplit("::").next()
                {
                    reexports.insert(name.to_owned(), path.clone());
                }
            }
        }
        cursor = end + 1;
    }
    reexports
}

/// Which crates and roots a path may start with to be worth checking.
const EXTERNAL_ROOTS: &[&str] = &[
    "actix",
    "actix_rt",
    "axum",
    "hyper",
    "hyper_util",
    "tokio_tungstenite",
];

/// `path` as seen from `module`, made absolute; `None` for paths the rules do not concern
/// (std, other crates, local variables' associated items).
fn absolute(path: &str, module: &[String], modules: &BTreeSet<Vec<String>>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let first = *segments.first()?;
    let mut base: Vec<String> = match first {
        "crate" => {
            segments.remove(0);
            Vec::new()
        }
        "self" | "super" => {
            let mut base = module.to_vec();
            while let Some(&head) = segments.first() {
                match head {
                    "self" => {}
                    "super" => {
                        base.pop();
                    }
                    _ => break,
                }
                segments.remove(0);
            }
            base
        }
        _ if EXTERNAL_ROOTS.contains(&first) => return Some(segments.join("::")),
        _ => {
            let mut child = module.to_vec();
            child.push(first.to_owned());
            if !modules.contains(&child) {
                return None;
            }
            module.to_vec()
        }
    };
    base.extend(segments.iter().map(|s| (*s).to_owned()));
    if base.is_empty() {
        return None;
    }
    Some(format!("crate::{}", base.join("::")))
}

/// A use tree with its whitespace and `as` renames removed.
fn normalise_tree(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut out = String::new();
    let mut skip_next = false;
    for word in words {
        if skip_next {
            skip_next = false;
            // The alias, perhaps followed by `,` or `}`.
            out.push_str(word.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'));
        } else if word == "as" {
            skip_next = true;
        } else {
            out.push_str(word);
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into whole paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    for part in split_top(tree) {
        if part.is_empty() {
            continue;
        }
        match part.find('{') {
            Some(open) => {
                let inner = &part[open + 1..part.len() - 1];
                expand(&format!("{prefix}{}", &part[..open]), inner, out);
            }
            None if part == "self" => out.push(prefix.trim_end_matches("::").to_owned()),
            None if part == "*" => out.push(prefix.trim_end_matches("::").to_owned()),
            None => out.push(format!("{prefix}{}", part.trim_end_matches("::*"))),
        }
    }
}

/// Splits at the commas outside braces.
fn split_top(tree: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    parts
}

/// The next `word` at or after `from` that stands alone (not part of a longer identifier).
fn find_word(code: &str, word: &str, from: usize) -> Option<usize> {
    let bytes = code.as_bytes();
    let mut at = from;
    while let Some(offset) = code[at..].find(word) {
        let start = at + offset;
        let end = start + word.len();
        let before = start == 0 || !is_ident(bytes[start - 1]);
        let after = end < bytes.len() && bytes[end].is_ascii_whitespace();
        if before && after {
            return Some(start);
        }
        at = end;
    }
    None
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// `code` with every comment and the inside of every string and char literal blanked out
/// (newlines kept), so only code is read.
fn code_only(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i)
        {
            // A raw string: r"..." or r#"..."#, ended by a quote and as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the first is skipped.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                out.push_str("' '");
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// `code` (comments and strings already blanked) without its `#[cfg(test)]` items: each runs
/// from the attribute to its first `;` or its closing brace, whichever ends it.
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}
