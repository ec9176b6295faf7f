#!/usr/bin/env python3
"""The layering of src/, checked against the rules of docs/architecture.md §2.

The rules are written once, as two markdown tables in §2 ("## 2. ..." up to the next "## "
heading) of the architecture page, and read from there:

  | module | may include |              one row per directory of src/; the cell lists the
  | --- | --- |                         other modules (`name`, comma separated) or "(nothing)"
  | `wire` | `common` |

  | rule | what | only in | never in |  one row per confined thing; only the `backticked`
  | --- | --- | --- | --- |             tokens of a cell count, the words around them are prose
  | `asio` | `<asio.hpp>`, `<asio/...>` ... | `net/`, ... | `core/communicator.hpp`, the include closure of `capi/` |

What it checks, each violation printed as `file:line: rule: explanation`:

  module-dag        a file of src/M/ includes a file of a module that M's row does not list
  module-cycle      the table has a cycle (a module-dag violation that closes a cycle between
                    the modules' actual includes names that cycle)
  module-table      a directory of src/ without a row, a row without a directory, an unknown
                    module in a row, a source file outside any module directory
  <rule>            (a row of the second table whose `what` are `<headers>`) a file outside
                    `only in`, or inside `never in`, includes one of the headers, directly or
                    through any chain of project includes (the chain is printed)
  <rule>-closure    a file under a `closure of X` entry of `never in` reaches the headers
  <rule>            (a row whose `what` are identifiers) one of the identifiers appears as a
                    word, outside comments, in a file outside `only in` or inside `never in`
  layering-doc      the tables are missing or malformed

Includes: `#include "x"` resolves against src/, then the including file's directory; an
`#include <x>` that names a file of src/ counts too. Anything else is outside the project (the
public header, the standard library, third parties). Includes inside comments are ignored;
includes inside #if blocks count (the check does not preprocess).

Exit status: 0 clean, 1 violations, 2 bad arguments (no such directory or file).
Usage: check_layering.py [--src DIR] [--doc FILE]   (defaults: this repository's src/ and
docs/architecture.md). Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import fnmatch
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
SOURCE_SUFFIXES = {".h", ".hh", ".hpp", ".hxx", ".ipp", ".inl", ".tpp",
                   ".c", ".cc", ".cpp", ".cxx"}


@dataclasses.dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    rule: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.text}"


# --------------------------------------------------------------------------------------------
# The rules, from the doc.

@dataclasses.dataclass
class Confinement:
    name: str
    line: int
    headers: list[str]        # "asio.hpp" (exact) or "asio/" (prefix)
    identifiers: list[str]
    only_in: list[str]        # path patterns relative to src/: "net/" or "master/master_server.*"
    never_in: list[str]
    closures: list[str]       # patterns whose files' include closures must stay clean


@dataclasses.dataclass
class Rules:
    modules: dict[str, list[str]]     # module -> modules it may include, in table order
    module_lines: dict[str, int]      # module -> its row's line in the doc
    table_line: int
    confinements: list[Confinement]


_TICKED = re.compile(r"`([^`]+)`")
_HEADING = re.compile(r"^##\s")
_SECTION_2 = re.compile(r"^##\s+2\.")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _cells(row: str) -> list[str]:
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|"):
        row = row[:-1]
    return [c.strip() for c in row.split("|")]


def _tables(lines: list[tuple[int, str]]) -> list[tuple[int, list[str], list[tuple[int, list[str]]]]]:
    """The markdown tables among (line number, text) lines: (header line, header, rows)."""
    tables = []
    i = 0
    while i < len(lines):
        n, text = lines[i]
        if (text.lstrip().startswith("|") and i + 1 < len(lines)
                and re.fullmatch(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*", lines[i + 1][1])):
            header = [c.lower() for c in _cells(text)]
            rows = []
            i += 2
            while i < len(lines) and lines[i][1].lstrip().startswith("|"):
                rows.append((lines[i][0], _cells(lines[i][1])))
                i += 1
            tables.append((n, header, rows))
        else:
            i += 1
    return tables


def _header_pattern(token: str) -> str | None:
    """`<asio.hpp>` -> "asio.hpp", `<asio/...>` -> "asio/"; None if not a <header>."""
    if not (token.startswith("<") and token.endswith(">")):
        return None
    name = token[1:-1].strip()
    if name.endswith("/..."):
        return name[:-3]
    if name.endswith("..."):
        return None
    return name


def parse_rules(text: str, doc: str) -> tuple[Rules | None, list[Violation]]:
    """The rules of §2 of the doc's text; violations (rule layering-doc) if malformed."""
    errors: list[Violation] = []
    all_lines = text.splitlines()
    section: list[tuple[int, str]] = []
    inside = False
    for n, line in enumerate(all_lines, start=1):
        if _SECTION_2.match(line):
            inside = True
            section.append((n, line))
            continue
        if inside and _HEADING.match(line):
            break
        if inside:
            section.append((n, line))
    if not section:
        return None, [Violation(doc, 1, "layering-doc", "no section '## 2. ...' (the layering rules)")]
    section_line = section[0][0]

    dag = conf = None
    for table in _tables(section):
        if table[1][:2] == ["module", "may include"] and len(table[1]) == 2:
            if dag is not None:
                errors.append(Violation(doc, table[0], "layering-doc", "a second 'module | may include' table"))
            dag = table
        elif table[1] == ["rule", "what", "only in", "never in"]:
            if conf is not None:
                errors.append(Violation(doc, table[0], "layering-doc", "a second 'rule | what | only in | never in' table"))
            conf = table
    if dag is None:
        errors.append(Violation(doc, section_line, "layering-doc",
                                "§2 has no table with the header '| module | may include |'"))
    if conf is None:
        errors.append(Violation(doc, section_line, "layering-doc",
                                "§2 has no table with the header '| rule | what | only in | never in |'"))
    if errors:
        return None, errors

    modules: dict[str, list[str]] = {}
    module_lines: dict[str, int] = {}
    for n, cells in dag[2]:
        if len(cells) != 2:
            errors.append(Violation(doc, n, "layering-doc", f"a row of the module table needs 2 cells, not {len(cells)}"))
            continue
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        if not m or not _MODULE_NAME.match(m.group(1)):
            errors.append(Violation(doc, n, "layering-doc", f"the module cell must be one `name`, not {cells[0]!r}"))
            continue
        name = m.group(1)
        if name in modules:
            errors.append(Violation(doc, n, "layering-doc", f"module {name} has two rows"))
            continue
        allowed: list[str] = []
        cell = cells[1]
        if cell.lower() not in ("(nothing)", "nothing", "-", ""):
            leftover = _TICKED.sub("", cell).replace(",", "").strip()
            if leftover:
                errors.append(Violation(doc, n, "layering-doc",
                                        f"the 'may include' cell must be `module`s separated by commas or "
                                        f"'(nothing)', not {cell!r}"))
                continue
            allowed = _TICKED.findall(cell)
        modules[name] = allowed
        module_lines[name] = n

    confinements: list[Confinement] = []
    for n, cells in conf[2]:
        if len(cells) != 4:
            errors.append(Violation(doc, n, "layering-doc", f"a row of the rule table needs 4 cells, not {len(cells)}"))
            continue
        m = re.fullmatch(r"`([A-Za-z0-9_-]+)`", cells[0])
        if not m:
            errors.append(Violation(doc, n, "layering-doc", f"the rule cell must be one `name`, not {cells[0]!r}"))
            continue
        name = m.group(1)
        headers, identifiers = [], []
        for token in _TICKED.findall(cells[1]):
            h = _header_pattern(token)
            if h is not None:
                headers.append(h)
            elif _IDENTIFIER.match(token):
                identifiers.append(token)
            else:
                errors.append(Violation(doc, n, "layering-doc",
                                        f"rule {name}: {token!r} is neither a <header>, a <dir/...> nor an identifier"))
        if bool(headers) == bool(identifiers):
            errors.append(Violation(doc, n, "layering-doc",
                                    f"rule {name}: 'what' must list either <headers> or identifiers (one kind)"))
            continue
        only_in = _TICKED.findall(cells[2])
        never_in, closures = [], []
        for mm in re.finditer(r"(closure of\s+)?`([^`]+)`", cells[3]):
            (closures if mm.group(1) else never_in).append(mm.group(2))
        if closures and not headers:
            errors.append(Violation(doc, n, "layering-doc",
                                    f"rule {name}: 'closure of' applies to include rules only"))
            continue
        if not only_in:
            errors.append(Violation(doc, n, "layering-doc", f"rule {name}: 'only in' names no place"))
            continue
        confinements.append(Confinement(name, n, headers, identifiers, only_in, never_in, closures))

    if errors:
        return None, errors
    return Rules(modules, module_lines, dag[0], confinements), []


# --------------------------------------------------------------------------------------------
# The sources.

def strip_comments(text: str) -> str:
    """The text with every comment replaced by spaces (newlines kept, so line numbers hold).

    String and character literals are skipped as such (a "//" in a string is no comment), raw
    strings included; a ' after a number is a digit separator (1'000), not a character literal.
    """
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = i + 2
            while j < n and text[j] != "\n":
                if text[j] == "\\" and j + 1 < n and text[j + 1] == "\n":
                    j += 1          # a continued line comment
                j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "/" and nxt == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            # A raw string: R"delim( ... )delim", the R possibly after u8/u/U/L.
            m = re.match(r'R"([^()\\ \t\n]{0,16})\(', text[i - 1:i + 20]) if i > 0 else None
            if m and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_")
                      or re.search(r"(?:^|[^A-Za-z0-9_])(?:u8|u|U|L)$", text[max(0, i - 4):i - 1])):
                close = ")" + m.group(1) + '"'
                j = text.find(close, i + 1 + len(m.group(1)) + 1)
                j = n if j < 0 else j + len(close)
            else:
                j = i + 1
                while j < n and text[j] != '"' and text[j] != "\n":
                    j += 2 if text[j] == "\\" else 1
                j = min(j + 1, n)
            out.append(text[i:j])
            i = j
        elif c == "'":
            k = i - 1
            while k >= 0 and (text[k].isalnum() or text[k] in "_."):
                k -= 1
            token = text[k + 1:i]
            if token and token[0].isdigit():
                out.append(c)           # digit separator
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != "'" and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.MULTILINE)


@dataclasses.dataclass
class Include:
    line: int
    name: str            # as written, without delimiters
    angle: bool
    target: str | None   # the included file of src/ (relative, posix), or None if outside


@dataclasses.dataclass
class Source:
    rel: str             # relative to src/, posix
    module: str | None   # first path component, None for a file directly in src/
    code: str            # comments stripped
    includes: list[Include]


def load_sources(src: pathlib.Path) -> dict[str, Source]:
    files = sorted(p for p in src.rglob("*")
                   if p.is_file() and p.suffix in SOURCE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(src).parts))
    known = {p.relative_to(src).as_posix() for p in files}
    sources: dict[str, Source] = {}
    for p in files:
        rel = p.relative_to(src).as_posix()
        parts = rel.split("/")
        code = strip_comments(p.read_text(encoding="utf-8", errors="replace"))
        includes = []
        for m in _INCLUDE.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            angle, name = m.group(1) == "<", m.group(2).strip()
            target = None
            candidates = [name] if angle else [name, "/".join(parts[:-1] + [name])]
            for cand in candidates:
                norm = _normalize(cand)
                if norm is not None and norm in known:
                    target = norm
                    break
            includes.append(Include(line, name, angle, target))
        sources[rel] = Source(rel, parts[0] if len(parts) > 1 else None, code, includes)
    return sources


def _normalize(path: str) -> str | None:
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None     # leaves src/
            out.pop()
        else:
            out.append(part)
    return "/".join(out)


def matches(rel: str, pattern: str) -> bool:
    """`x/` is a directory (everything under it); anything else a glob over the path."""
    if pattern.endswith("/"):
        return rel.startswith(pattern)
    return fnmatch.fnmatchcase(rel, pattern)


# --------------------------------------------------------------------------------------------
# The checks.

def _find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One cycle (as [a, b, ..., a]) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, []):
            if w == v:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    for v in list(graph):
        if v not in index:
            strong(v)

    cycles = []
    for comp in sccs:
        members = set(comp)
        start = min(comp)
        # Shortest path back to start inside the component.
        prev: dict[str, str] = {}
        queue = collections.deque([start])
        seen = {start}
        end = None
        while queue and end is None:
            v = queue.popleft()
            for w in graph.get(v, []):
                if w not in members or w == v:
                    continue
                if w == start:
                    end = v
                    break
                if w not in seen:
                    seen.add(w)
                    prev[w] = v
                    queue.append(w)
        path = [start]
        v = end
        back = []
        while v is not None and v != start:
            back.append(v)
            v = prev.get(v)
        path += list(reversed(back)) + [start]
        cycles.append(path)
    return sorted(cycles)


def check(src: pathlib.Path, doc: pathlib.Path) -> list[Violation]:
    root = src.resolve().parent

    def show(p: pathlib.Path) -> str:
        try:
            return p.resolve().relative_to(root).as_posix()
        except ValueError:
            return str(p)

    doc_name = show(doc)
    src_name = show(src)
    rules, errors = parse_rules(doc.read_text(encoding="utf-8"), doc_name)
    if rules is None:
        return errors

    def at(rel: str) -> str:
        return f"{src_name}/{rel}"

    sources = load_sources(src)
    violations: list[Violation] = []

    # The table against the directories, and against itself.
    dirs = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    for d in dirs:
        if d not in rules.modules:
            violations.append(Violation(doc_name, rules.table_line, "module-table",
                                        f"{src_name}/{d}/ has no row in the module table (add one: "
                                        f"what it may include)"))
    for m, allowed in rules.modules.items():
        if m not in dirs:
            violations.append(Violation(doc_name, rules.module_lines[m], "module-table",
                                        f"module {m} has no directory {src_name}/{m}/"))
        for a in allowed:
            if a not in rules.modules:
                violations.append(Violation(doc_name, rules.module_lines[m], "module-table",
                                            f"module {m} may include {a}, which has no row"))
    for cycle in _find_cycles({m: [a for a in al if a in rules.modules] for m, al in rules.modules.items()}):
        violations.append(Violation(doc_name, rules.module_lines[cycle[0]], "module-cycle",
                                    "the module table has a cycle: " + " -> ".join(cycle)))

    # a. Module DAG, on direct includes. A forbidden include that closes a cycle between the
    # modules' actual includes says so (with an acyclic table, every such cycle has one).
    actual: dict[str, dict[str, tuple[str, int]]] = collections.defaultdict(dict)
    forbidden: list[tuple[Source, Include, str]] = []
    for s in sources.values():
        if s.module is None:
            violations.append(Violation(at(s.rel), 1, "module-table",
                                        "a source file outside any module directory"))
            continue
        for inc in s.includes:
            if inc.target is None:
                continue
            other = sources[inc.target].module
            if other is None or other == s.module:
                continue
            actual[s.module].setdefault(other, (s.rel, inc.line))
            if s.module in rules.modules and other not in rules.modules[s.module]:
                forbidden.append((s, inc, other))
    for s, inc, other in forbidden:
        allowed = rules.modules[s.module]
        may = ", ".join(allowed) if allowed else "nothing but itself"
        text = f"{s.module} may include {may}; {inc.target} is in {other}"
        back = _module_path(actual, other, s.module)
        if back:
            hops = " -> ".join(f"{b} ({actual[a][b][0]}:{actual[a][b][1]})" for a, b in zip(back, back[1:]))
            text += f"; a cycle: {s.module} -> {other} -> {hops}"
        violations.append(Violation(at(s.rel), inc.line, "module-dag", text))

    # b, c. Confinements.
    for c in rules.confinements:
        def allowed_here(rel: str) -> bool:
            return (any(matches(rel, p) for p in c.only_in)
                    and not any(matches(rel, p) for p in c.never_in))

        places = ", ".join(c.only_in)
        if c.never_in:
            places += " (not " + ", ".join(c.never_in) + ")"

        if c.headers:
            def hit(inc: Include) -> bool:
                return inc.target is None and any(
                    inc.name.startswith(h) if h.endswith("/") else inc.name == h for h in c.headers)

            for s in sources.values():
                chain = _chain_to(s.rel, sources, hit)
                if chain is None:
                    continue
                shown = " -> ".join(f"{rel}:{line}" for rel, line, _ in chain)
                last = chain[-1][2]
                via = f"{shown} -> {'<' + last.name + '>' if last.angle else chr(34) + last.name + chr(34)}"
                roots = [p for p in c.closures if matches(s.rel, p)]
                if roots:
                    violations.append(Violation(at(s.rel), chain[0][1], f"{c.name}-closure",
                                                f"the include closure of {', '.join(roots)} must not contain "
                                                f"{c.name}; here: {via}"))
                elif not allowed_here(s.rel):
                    violations.append(Violation(at(s.rel), chain[0][1], c.name,
                                                f"{c.name} is allowed only in {places}; here: {via}"))
        else:
            word = re.compile(r"\b(" + "|".join(map(re.escape, c.identifiers)) + r")\b")
            for s in sources.values():
                if allowed_here(s.rel):
                    continue
                for n, text in enumerate(s.code.split("\n"), start=1):
                    found = list(dict.fromkeys(word.findall(text)))
                    if found:
                        violations.append(Violation(at(s.rel), n, c.name,
                                                    f"{', '.join(found)} may appear only in {places}"))

    return sorted(set(violations))


def _module_path(graph: dict[str, dict[str, tuple[str, int]]], start: str, goal: str) -> list[str] | None:
    """The shortest path start -> ... -> goal in the modules' include graph, or None."""
    prev: dict[str, str] = {}
    queue = collections.deque([start])
    seen = {start}
    while queue:
        v = queue.popleft()
        if v == goal:
            path = [v]
            while path[0] != start:
                path.insert(0, prev[path[0]])
            return path
        for w in sorted(graph.get(v, {})):
            if w not in seen:
                seen.add(w)
                prev[w] = v
                queue.append(w)
    return None


def _chain_to(start: str, sources: dict[str, Source], hit) -> list[tuple[str, int, Include]] | None:
    """The shortest include chain from start to an include for which hit() holds:
    [(file, line, include), ...], each include leading to the next file; None if none."""
    prev: dict[str, tuple[str, int, Include]] = {}
    queue = collections.deque([start])
    seen = {start}
    while queue:
        rel = queue.popleft()
        for inc in sources[rel].includes:
            if hit(inc):
                chain = [(rel, inc.line, inc)]
                while chain[0][0] != start:
                    chain.insert(0, prev[chain[0][0]])
                return chain
        for inc in sources[rel].includes:
            if inc.target is not None and inc.target not in seen:
                seen.add(inc.target)
                prev[inc.target] = (rel, inc.line, inc)
                queue.append(inc.target)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=pathlib.Path, default=REPO / "src", help="the source tree (default: src/)")
    ap.add_argument("--doc", type=pathlib.Path, default=REPO / "docs" / "architecture.md",
                    help="the page whose §2 holds the rules (default: docs/architecture.md)")
    args = ap.parse_args(argv)
    if not args.src.is_dir():
        print(f"check_layering: {args.src}: not a directory", file=sys.stderr)
        return 2
    if not args.doc.is_file():
        print(f"check_layering: {args.doc}: no such file", file=sys.stderr)
        return 2
    violations = check(args.src, args.doc)
    for v in violations:
        print(v)
    if violations:
        print(f"check_layering: {len(violations)} violation(s) of the rules in {args.doc}",
              file=sys.stderr)
        return 1
    print(f"check_layering: {args.src}: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
