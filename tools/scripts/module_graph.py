#!/usr/bin/env python3
"""The module dependency graph of the host crate, at top-level module granularity.

Reads every host/src/**/*.rs, finds `use crate::X`, `crate::X::...`, `use crate::{X, ...}`
and `super::` references (comments and string literals ignored; inline `mod NAME { ... }`
blocks followed so that `super::` resolves to the right module) and maps each to the
top-level module it names: host/src/<name>.rs or host/src/<name>/. Prints the edges and
every strongly connected component of more than one module; exits 1 when there is one
(a cycle), 0 otherwise.

The same parse runs as a test: tests/tests/architecture.rs (`cargo test -p e2e --test architecture`).

Usage: python3 tools/scripts/module_graph.py [HOST_SRC_DIR]
"""

import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text):
    """Blanks out comments, string and char literals (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if text[i] == "\n" else "")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 300]) and not re.match(r"[A-Za-z0-9_]", text[i - 1:i] or " "):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:i + 12])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def file_module_path(src, path):
    """host/src/a/b.rs -> ["a", "b"]; a/mod.rs -> ["a"]; lib.rs -> []."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def tokens(text):
    """Identifiers, `::`, `{`, `}`, `,` and `;` of stripped source (the rest dropped)."""
    return re.findall(IDENT + r"|::|[{},;]", text)


def group_heads(toks, i):
    """First segment of each item of the `{...}` group opening at toks[i]; the index after it."""
    heads, depth, expect = [], 0, True
    while i < len(toks):
        t = toks[i]
        if t == "{":
            depth += 1
            expect = depth == 1
        elif t == "}":
            depth -= 1
            if depth == 0:
                return heads, i + 1
        elif depth == 1 and t == ",":
            expect = True
        elif depth == 1 and expect and t not in ("::", ";"):
            heads.append(t)
            expect = False
        i += 1
    return heads, i


def references(text, base):
    """(module path, referenced top-level module) for every crate/super reference."""
    toks = tokens(strip_comments_and_strings(text))
    refs = []
    stack = []  # (brace depth at which an inline `mod NAME {` opened, NAME)
    depth = 0
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "mod" and i + 2 < len(toks) and toks[i + 2] == "{":
            depth += 1
            stack.append((depth, toks[i + 1]))
            i += 3
            continue
        if t == "{":
            depth += 1
        elif t == "}":
            if stack and stack[-1][0] == depth:
                stack.pop()
            depth -= 1
        elif t in ("crate", "super") and i + 1 < len(toks) and toks[i + 1] == "::":
            here = base + [name for _, name in stack]
            if t == "crate":
                path = []
            else:
                ups = 1
                while toks[i + 2 * ups: i + 2 * ups + 2] == ["super", "::"]:
                    ups += 1
                i += 2 * (ups - 1)
                if ups > len(here):
                    i += 1
                    continue
                path = here[: len(here) - ups]
            nxt = toks[i + 2] if i + 2 < len(toks) else ""
            if path:
                targets = [path[0]]
            elif nxt == "{":
                targets, _ = group_heads(toks, i + 2)
            else:
                targets = [nxt]
            for target in targets:
                if re.fullmatch(IDENT, target) and target not in ("self", "super", "crate"):
                    refs.append((here, target))
            i += 2
            continue
        i += 1
    return refs


def module_graph(src):
    modules = set()
    for name in os.listdir(src):
        p = os.path.join(src, name)
        if name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
            modules.add(name[:-3])
        elif os.path.isdir(p):
            modules.add(name)
    edges = {m: set() for m in modules}
    for root, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            base = file_module_path(src, path)
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            for here, target in references(text, base):
                if not here or here[0] not in modules:
                    continue
                if target in modules and target != here[0]:
                    edges[here[0]].add(target)
    return edges


def sccs(edges):
    """Tarjan's strongly connected components, each sorted, in a stable order."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "host", "src")
    edges = module_graph(src)
    for m in sorted(edges):
        deps = " ".join(sorted(edges[m])) or "-"
        print(f"{m} -> {deps}")
    cycles = [c for c in sccs(edges) if len(c) > 1]
    for c in cycles:
        print("cycle (strongly connected component): " + " ".join(c))
    if not cycles:
        print("no cycles")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
