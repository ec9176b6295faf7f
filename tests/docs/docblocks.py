"""Fenced code blocks of README.md and docs/*.md, with the doc-test directive of each.

Every fenced block must be preceded by a directive: an HTML comment (invisible when rendered)
whose last line is the last non-blank line before the opening fence, at the fence's
indentation:

    <!-- doctest: KIND [OPTION=VALUE ...] -->
    <!-- doctest: KIND: REASON -->
    <!-- doctest: KIND [OPTION=VALUE ...]
    hidden setup code (the "prelude"), one or more lines
    -->
    <!-- doctest: skip: a REASON too long for one line
    goes on here -->

KIND says how the test suite runs the block (tests/docs/test_docs.py):

  python         run as a Python program; OPTIONs below
  c              a whole C99 program: compiled against an installed qccl as its text says
                 (cc -std=c99 FILE -IP/include -LP/lib -lqccl -pthread, plus -pedantic -Wall
                 -Wextra -Werror) and run
  c-fragment     C statements: compiled (not run) inside a function body, after qccl.h and
                 the prelude, which declares at file scope what the fragment uses
  cpp-fragment   C++ statements of an internal API: compiled (not run) inside a function
                 body after the prelude (which includes the headers, from src/)
  sh             shell commands, run with bash -euo pipefail in an empty temporary directory
  cmake-fragment lines of a CMakeLists.txt: added to a project that builds files=... into
                 `app`, configured with -DCMAKE_PREFIX_PATH=P (an installed qccl), built, run
  usage          a command synopsis: its --flags must be exactly those that `PROGRAM --help`
                 prints, for of=PROGRAM (qccl-master: the build's binary; else a path in the
                 repository)
  text, output   a diagram, a table, sample output, a wire layout: not run. Only for blocks
                 without a code language (or ```text / ```console).
  skip           not run, for a reason that must be given (`skip: REASON`): name what runs it
                 instead (the CI itself, a ctest) or why it cannot run here. Keep them few.
                 Still checked: each "the ctest NAME" of the reason must be a ctest of the
                 build, and the repository paths (scripts/..., benchmarks/...) and build
                 products (build*/.../NAME: a CMake target NAME) that the block names must
                 exist.

OPTIONs (python, c, sh, cmake-fragment):
  peers=N        run N copies of the program in parallel (default 1); each must exit 0
  torchrun=N     (python) run it as `torchrun --standalone --nproc-per-node N FILE` (the
                 torch.distributed launcher), which must exit 0; expect= applies to its
                 output (all ranks)
  timeout=S      the deadline of the whole block, in seconds (default 30)
  expect=TEXT    every copy's stdout must contain TEXT (repeatable; quote TEXT with "...")
  files=A,B      copy tests/docs/fixtures/A, B into the working directory first
  prefix=NAME    make ./NAME a symbolic link to an installed qccl (cmake --install)

A python block (prelude included) or a c block that contains MASTER_HOST:PORT (any port
number) gets a real qccl-master, started by the test on 127.0.0.1 port 0, whose address
replaces the placeholder. The prelude
of a python block runs before it, in the same program (e.g. to create the objects a fragment
uses); that of a c-fragment or cpp-fragment goes at file scope.

A block without a directive, with an unknown KIND or OPTION, or a `skip` without a reason
fails the test: a new block cannot escape it.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import shlex

KINDS_RUN = {"python", "c", "c-fragment", "cpp-fragment", "sh", "cmake-fragment", "usage"}
KINDS_TEXT = {"text", "output"}
KINDS = KINDS_RUN | KINDS_TEXT | {"skip"}
# Languages a text/output block may have: anything else is code and must be run or skipped.
TEXT_LANGUAGES = {"", "text", "console"}
OPTIONS = {"peers", "timeout", "expect", "files", "prefix", "of", "torchrun"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_DIRECTIVE_START = re.compile(r"^\s*<!--\s*doctest:(?P<rest>.*)$")


class DirectiveError(ValueError):
    """A block's directive is missing or malformed; the message names the file and line."""


@dataclasses.dataclass
class Block:
    path: pathlib.Path     # the markdown file
    rel: str               # its path relative to the repository, for messages and ids
    line: int              # 1-based line of the opening fence
    language: str          # the info string's first word ("" if none)
    code: str              # the block's text, with the fence's indentation removed
    kind: str | None = None
    options: dict = dataclasses.field(default_factory=dict)
    reason: str = ""
    prelude: str = ""
    error: str | None = None  # why the directive is wrong (the block then fails)

    @property
    def id(self) -> str:
        return f"{self.rel}:{self.line}"

    @property
    def peers(self) -> int:
        return int(self.options.get("peers", 1))

    @property
    def torchrun(self) -> int:
        return int(self.options.get("torchrun", 0))

    @property
    def timeout(self) -> float:
        return float(self.options.get("timeout", 30))

    @property
    def expect(self) -> list[str]:
        return self.options.get("expect", [])

    @property
    def files(self) -> list[str]:
        value = self.options.get("files", "")
        return [f for f in value.split(",") if f]


def _parse_directive(lines: list[str], end: int) -> tuple[str, str] | None:
    """If lines[end] closes a doctest comment, returns (first-line text, body); else None.

    The comment may span lines; it starts at the nearest line above `end` (inclusive) that
    opens `<!-- doctest:`.
    """
    if not lines[end].rstrip().endswith("-->"):
        return None
    for start in range(end, -1, -1):
        m = _DIRECTIVE_START.match(lines[start])
        if m:
            break
        if "<!--" in lines[start]:
            return None  # some other comment
    else:
        return None
    if start == end:
        rest = m.group("rest").rstrip()
        return rest[: -len("-->")].strip(), ""
    first = m.group("rest").strip()
    body = "\n".join(lines[start + 1 : end] + [lines[end].rstrip()[: -len("-->")]])
    return first, body.strip("\n") + "\n" if body.strip() else ""


def _apply_directive(block: Block, first: str, body: str) -> None:
    head, _, tail = first.partition(" ")
    if head.endswith(":"):  # `KIND: REASON`
        block.kind, block.reason = head[:-1], tail.strip()
    else:
        block.kind = head
        try:
            tokens = shlex.split(tail)
        except ValueError as e:
            block.error = f"malformed options {tail!r}: {e}"
            return
        for token in tokens:
            key, eq, value = token.partition("=")
            if not eq or key not in OPTIONS:
                block.error = f"unknown option {token!r} (known: {', '.join(sorted(OPTIONS))})"
                return
            if key == "expect":
                block.options.setdefault("expect", []).append(value)
            else:
                block.options[key] = value
    if block.kind in KINDS_TEXT | {"skip"}:
        # Nothing runs: more lines continue the reason (so that it can be wrapped).
        block.reason = " ".join([block.reason] + body.split()).strip()
    else:
        block.prelude = body
    if block.kind not in KINDS:
        block.error = f"unknown kind {block.kind!r} (known: {', '.join(sorted(KINDS))})"
    elif block.kind == "skip" and not block.reason:
        block.error = "`skip` needs a reason: <!-- doctest: skip: what runs it instead -->"
    elif block.kind in KINDS_TEXT and block.language not in TEXT_LANGUAGES:
        block.error = (f"a ```{block.language} block is code: run it (python, c, sh, ...) or "
                       f"`skip: reason`, not `{block.kind}`")
    elif block.kind == "usage" and "of" not in block.options:
        block.error = "`usage` needs of=PROGRAM"
    else:
        for key in ("peers", "timeout", "torchrun"):
            if key in block.options:
                try:
                    ok = float(block.options[key]) > 0
                except ValueError:
                    ok = False
                if not ok:
                    block.error = f"{key}={block.options[key]!r} is not a positive number"


def parse(text: str, path: pathlib.Path, rel: str) -> list[Block]:
    """Every fenced block of one markdown text, with its directive (or its error)."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m.group("indent"), m.group("fence")
        language = m.group("info").strip().split(" ")[0] if m.group("info").strip() else ""
        j = i + 1
        body: list[str] = []
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if (close and close.group("fence")[0] == fence[0]
                    and len(close.group("fence")) >= len(fence)
                    and not close.group("info").strip()):
                break
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        block = Block(path=path, rel=rel, line=i + 1, language=language,
                      code="\n".join(body) + "\n")
        if j >= len(lines):
            block.error = "the fence is never closed"
        # The directive: the nearest non-blank line above the fence closes it.
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        directive = _parse_directive(lines, k) if k >= 0 else None
        if block.error is None:
            if directive is None:
                block.error = ("no directive: put <!-- doctest: KIND ... --> on the line before "
                               "the fence (tests/docs/docblocks.py lists the kinds)")
            else:
                _apply_directive(block, *directive)
        blocks.append(block)
        i = j + 1
    return blocks


def doc_files(source: pathlib.Path) -> list[pathlib.Path]:
    """README.md and every docs/*.md of the repository at `source`."""
    return [source / "README.md"] + sorted((source / "docs").glob("*.md"))


def collect(source: pathlib.Path) -> list[Block]:
    blocks: list[Block] = []
    for path in doc_files(source):
        blocks += parse(path.read_text(encoding="utf-8"), path, str(path.relative_to(source)))
    return blocks
