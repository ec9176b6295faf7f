"""The doc test's own parser (docblocks.py): directives are found, read and enforced."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import docblocks  # noqa: E402


def parse(text: str):
    return docblocks.parse(text, pathlib.Path("x.md"), "x.md")


def test_a_block_without_a_directive_fails():
    (b,) = parse("Some text.\n\n```python\nprint(1)\n```\n")
    assert b.error and "no directive" in b.error
    assert b.line == 3 and b.language == "python" and b.code == "print(1)\n"


def test_a_block_without_language_needs_a_directive_too():
    (b,) = parse("```\nls\n```\n")
    assert b.error and "no directive" in b.error


def test_an_unrelated_comment_is_no_directive():
    (b,) = parse("<!-- a note -->\n```sh\nls\n```\n")
    assert b.error and "no directive" in b.error


def test_kind_options_and_quoted_expectations():
    (b,) = parse('<!-- doctest: python peers=3 timeout=12 expect="a b" expect=c -->\n'
                 "```python\nx = 1\n```\n")
    assert b.error is None
    assert (b.kind, b.peers, b.timeout, b.expect) == ("python", 3, 12.0, ["a b", "c"])


def test_blank_lines_between_directive_and_fence_are_allowed():
    (b,) = parse("<!-- doctest: sh -->\n\n```sh\ntrue\n```\n")
    assert b.error is None and b.kind == "sh"


def test_a_multi_line_directive_carries_a_prelude():
    (b,) = parse("<!-- doctest: c-fragment\nstatic int x;\nstatic int y;\n-->\n```c\nx = y;\n```\n")
    assert b.error is None and b.kind == "c-fragment"
    assert b.prelude == "static int x;\nstatic int y;\n"


def test_indented_fences_in_list_items():
    (b,) = parse("- item:\n  <!-- doctest: text -->\n  ```\n  a | b\n  ```\n")
    assert b.error is None and b.kind == "text" and b.code == "a | b\n"


def test_skip_needs_a_reason():
    (b,) = parse("<!-- doctest: skip -->\n```sh\nmake world\n```\n")
    assert b.error and "reason" in b.error
    (b,) = parse("<!-- doctest: skip: the ctest x runs it -->\n```sh\nmake world\n```\n")
    assert b.error is None and b.reason == "the ctest x runs it"


def test_a_skip_reason_may_be_wrapped():
    (b,) = parse("<!-- doctest: skip: the ctest x\n  runs it\n-->\n```sh\nmake world\n```\n")
    assert b.error is None and b.reason == "the ctest x runs it" and b.prelude == ""


def test_code_cannot_hide_as_text():
    (b,) = parse("<!-- doctest: text -->\n```python\nprint(1)\n```\n")
    assert b.error and "is code" in b.error
    (b,) = parse("<!-- doctest: output: sample -->\n```\nok\n```\n")
    assert b.error is None


def test_unknown_kinds_and_options_fail():
    (b,) = parse("<!-- doctest: rust -->\n```rust\nfn main() {}\n```\n")
    assert b.error and "unknown kind" in b.error
    (b,) = parse("<!-- doctest: python nodes=2 -->\n```python\npass\n```\n")
    assert b.error and "unknown option" in b.error
    (b,) = parse("<!-- doctest: python peers=zero -->\n```python\npass\n```\n")
    assert b.error and "positive" in b.error
    (b,) = parse("<!-- doctest: usage -->\n```sh\nx [--y]\n```\n")
    assert b.error and "of=" in b.error


def test_an_unclosed_fence_fails():
    (b,) = parse("<!-- doctest: sh -->\n```sh\ntrue\n")
    assert b.error and "never closed" in b.error


def test_longer_fences_and_tildes():
    blocks = parse("<!-- doctest: text -->\n````\n```\ninner\n```\n````\n"
                   "<!-- doctest: text -->\n~~~\nx\n~~~\n")
    assert [b.code for b in blocks] == ["```\ninner\n```\n", "x\n"]
    assert all(b.error is None for b in blocks)


def test_the_repository_docs_are_all_collected():
    source = pathlib.Path(__file__).resolve().parents[2]
    files = {str(p.relative_to(source)) for p in docblocks.doc_files(source)}
    assert "README.md" in files and "docs/c_api.md" in files and "docs/python.md" in files
    assert {b.rel for b in docblocks.collect(source)} <= files
