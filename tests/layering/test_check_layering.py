"""The layering check (check_layering.py) on small fake trees: each kind of violation is
reported, exactly it, and a clean tree passes. Run by the ctest layering_selftest."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import check_layering  # noqa: E402

REPO = HERE.parents[1]

# The rules of docs/architecture.md §2, in the same format (the real tables may change; these
# stay fixed so that each test knows what to expect).
TABLE = {
    "common": [],
    "wire": ["common"],
    "net": ["common", "wire"],
    "quant": ["common"],
    "collectives": ["common", "quant", "wire"],
    "state": ["common", "wire", "net"],
    "peer": ["common", "wire", "net"],
    "master": ["common", "wire", "net"],
    "core": ["common", "wire", "net", "quant", "collectives", "peer", "state"],
    "capi": ["common", "quant", "collectives", "core"],
    "apps": ["common", "wire", "net", "master"],
}
ASIO_ROW = ("| `asio` | `<asio.hpp>`, `<asio/...>`, and every project header that includes one "
            "| `net/`, `peer/`, `state/`, `master/master_server.*`, `apps/`, `core/` "
            "| `core/communicator.hpp`, the include closure of `capi/` |")
HEADER_ROW = ("| `wire-data-header` | `P2PDataHeader`, `encode_data_header`, `decode_data_header`, "
              "`kP2PDataHeaderSize` | `wire/`, `peer/` | |")


def doc_text(table=None, rows=(ASIO_ROW, HEADER_ROW)) -> str:
    table = TABLE if table is None else table
    lines = ["# arch", "", "## 1. Before", "", "| module | may include |", "| --- | --- |",
             "| `nope` | `common` |", "", "## 2. Modules", "", "Prose.", "",
             "| module | may include |", "| --- | --- |"]
    for m, allowed in table.items():
        lines.append(f"| `{m}` | " + (", ".join(f"`{a}`" for a in allowed) or "(nothing)") + " |")
    lines += ["", "| rule | what | only in | never in |", "| --- | --- | --- | --- |", *rows,
              "", "| module | what it is |", "| --- | --- |", "| `common` | Status. |",
              "", "## 3. After", ""]
    return "\n".join(lines) + "\n"


# A clean tree: every module, each file including what its row allows.
CLEAN = {
    "CMakeLists.txt": "add_subdirectory(common)\n",
    "common/status.hpp": "#pragma once\n#include <string>\n",
    "wire/frame.hpp": '#pragma once\n#include "common/status.hpp"\nstruct P2PDataHeader {};\n',
    "wire/codec.cpp": '#include "wire/frame.hpp"\nint encode_data_header();\n',
    "net/asio_common.hpp": '#pragma once\n#include <asio.hpp>\n#include "wire/frame.hpp"\n',
    "net/io_thread.hpp": '#pragma once\n#include <asio/io_context.hpp>\n',
    "quant/dtype.hpp": '#pragma once\n#include "common/status.hpp"\n',
    "collectives/ring.hpp": '#pragma once\n#include "quant/dtype.hpp"\n#include "wire/frame.hpp"\n',
    "state/server.hpp": '#pragma once\n#include "net/asio_common.hpp"\n',
    "peer/data_links.hpp": '#pragma once\n#include "net/asio_common.hpp"\n',
    "peer/data_links.cpp": '#include "data_links.hpp"\nint n = kP2PDataHeaderSize;\n',
    "master/membership.hpp": '#pragma once\n#include "wire/frame.hpp"\n',
    "master/master_server.hpp": '#pragma once\n#include "common/status.hpp"\n',
    "master/master_server.cpp": '#include "master/master_server.hpp"\n#include "net/io_thread.hpp"\n',
    "core/communicator.hpp": '#pragma once\n#include "collectives/ring.hpp"\n',
    "core/communicator.cpp": ('#include "core/communicator.hpp"\n#include "peer/data_links.hpp"\n'
                              '#include "state/server.hpp"\n'),
    "capi/c_api.cpp": '#include "qccl/qccl.h"\n#include "core/communicator.hpp"\n',
    "apps/main.cpp": '#include "master/master_server.hpp"\n#include <asio.hpp>\n',
}


def make_tree(tmp_path: pathlib.Path, changes=None, table=None, rows=None) -> tuple[pathlib.Path, pathlib.Path]:
    files = dict(CLEAN)
    files.update(changes or {})
    src = tmp_path / "src"
    for rel, text in files.items():
        if text is None:
            continue
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    doc = tmp_path / "docs" / "architecture.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(doc_text(table) if rows is None else doc_text(table, rows))
    return src, doc


def run(tmp_path, changes=None, table=None, rows=None) -> list[tuple[str, int, str]]:
    src, doc = make_tree(tmp_path, changes, table, rows)
    return [(v.path, v.line, v.rule) for v in check_layering.check(src, doc)]


def test_a_clean_tree_passes(tmp_path):
    assert run(tmp_path) == []


def test_the_command_line_prints_file_line_rule_and_exits_1(tmp_path):
    src, doc = make_tree(tmp_path, {"common/bad.hpp": '#pragma once\n\n#include "wire/frame.hpp"\n'})
    r = subprocess.run([sys.executable, str(HERE / "check_layering.py"), "--src", str(src), "--doc", str(doc)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert r.stdout == ("src/common/bad.hpp:3: module-dag: common may include nothing but itself; "
                        "wire/frame.hpp is in wire; a cycle: common -> wire -> common (wire/frame.hpp:2)\n")
    src2, doc2 = make_tree(tmp_path / "clean")
    r = subprocess.run([sys.executable, str(HERE / "check_layering.py"), "--src", str(src2), "--doc", str(doc2)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    r = subprocess.run([sys.executable, str(HERE / "check_layering.py"), "--src", str(tmp_path / "none"),
                        "--doc", str(doc2)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2


# a. Module DAG ---------------------------------------------------------------------------------

def test_an_upward_include_is_reported(tmp_path):
    assert run(tmp_path, {"quant/kernels.cpp": '#include "quant/dtype.hpp"\n#include "collectives/ring.hpp"\n'}) \
        == [("src/quant/kernels.cpp", 2, "module-dag")]


def test_a_sideways_include_is_reported(tmp_path):
    assert run(tmp_path, {"net/x.cpp": '#include "common/status.hpp"\n#include "quant/dtype.hpp"\n'}) \
        == [("src/net/x.cpp", 2, "module-dag")]


def test_an_include_relative_to_the_file_resolves_to_its_module(tmp_path):
    # "../core/communicator.hpp" from capi/ is core; "dtype.hpp" from quant/ is quant.
    assert run(tmp_path, {"wire/x.cpp": '#include "../core/communicator.hpp"\n',
                          "quant/k.cpp": '#include "dtype.hpp"\n'}) \
        == [("src/wire/x.cpp", 1, "module-dag")]


def test_an_angle_include_of_a_project_header_counts(tmp_path):
    assert run(tmp_path, {"common/x.cpp": "#include <wire/frame.hpp>\n"}) \
        == [("src/common/x.cpp", 1, "module-dag")]


def test_includes_in_comments_do_not_count(tmp_path):
    text = ('// #include "core/communicator.hpp"\n/* #include "peer/data_links.hpp"\n'
            '#include <asio.hpp> */\nconst char* s = "// not a comment"; // P2PDataHeader\n'
            "int k = 1'000'000; char q = '\"'; char e = '\\'';\n"
            'const char* r = R"(")"; // P2PDataHeader\n'
            'const char* u = u8R"d(")d"; /* kP2PDataHeaderSize */\n'
            '#include "common/status.hpp"\n')
    assert run(tmp_path, {"quant/c.cpp": text}) == []


def test_a_header_outside_src_is_no_module(tmp_path):
    assert run(tmp_path, {"common/x.cpp": '#include "qccl/qccl.h"\n#include "fmt/format.h"\n'}) == []


# b. asio --------------------------------------------------------------------------------------

def test_asio_directly_outside_its_places_is_reported(tmp_path):
    assert run(tmp_path, {"quant/x.cpp": "#include <vector>\n#include <asio/post.hpp>\n"}) \
        == [("src/quant/x.cpp", 2, "asio")]


def test_asio_through_an_allowed_include_is_reported_with_its_chain(tmp_path):
    # master may include net (the table allows it), but only master_server.* may see asio.
    src, doc = make_tree(tmp_path, {"master/membership.cpp": '#include "master/membership.hpp"\n'
                                                             '#include "net/io_thread.hpp"\n'})
    (v,) = check_layering.check(src, doc)
    assert (v.path, v.line, v.rule) == ("src/master/membership.cpp", 2, "asio")
    assert v.text.endswith("here: master/membership.cpp:2 -> net/io_thread.hpp:2 -> <asio/io_context.hpp>")


def test_asio_in_the_facade_header_is_reported_and_so_is_capi(tmp_path):
    changes = {"core/communicator.hpp": '#pragma once\n#include "collectives/ring.hpp"\n#include "core/sync.hpp"\n',
               "core/sync.hpp": '#pragma once\n#include "peer/data_links.hpp"\n'}
    src, doc = make_tree(tmp_path, changes)
    vs = check_layering.check(src, doc)
    assert [(v.path, v.line, v.rule) for v in vs] == [
        ("src/capi/c_api.cpp", 2, "asio-closure"),
        ("src/core/communicator.hpp", 3, "asio"),
    ]
    assert vs[0].text.endswith("capi/c_api.cpp:2 -> core/communicator.hpp:3 -> core/sync.hpp:2 -> "
                               "peer/data_links.hpp:2 -> net/asio_common.hpp:2 -> <asio.hpp>")


def test_the_capi_closure_may_not_reach_asio_through_any_other_core_header(tmp_path):
    # core/other.hpp may include asio itself, but capi includes it: only capi is reported.
    changes = {"core/other.hpp": '#pragma once\n#include "net/io_thread.hpp"\n',
               "capi/handles.hpp": '#pragma once\n#include "common/status.hpp"\n#include "core/other.hpp"\n'}
    assert run(tmp_path, changes) == [("src/capi/handles.hpp", 3, "asio-closure")]


def test_every_allowed_place_may_use_asio(tmp_path):
    changes = {f: "#include <asio.hpp>\n" for f in
               ["net/a.cpp", "peer/a.cpp", "state/a.cpp", "master/master_server.cpp", "apps/a.cpp", "core/a.cpp"]}
    assert run(tmp_path, changes) == []


# c. Wire data headers ---------------------------------------------------------------------------

def test_a_data_header_identifier_outside_wire_and_peer_is_reported(tmp_path):
    text = ("// P2PDataHeader in a comment is fine\n"
            "auto b = wire::encode_data_header(h);\n"
            "/* decode_data_header */ int x = wire::kP2PDataHeaderSize + kP2PDataHeaderSize;\n"
            "int my_kP2PDataHeaderSize_copy = 0;\n")
    assert run(tmp_path, {"core/op.cpp": text}) == [("src/core/op.cpp", 2, "wire-data-header"),
                                                    ("src/core/op.cpp", 3, "wire-data-header")]


def test_a_data_header_identifier_in_a_string_counts(tmp_path):
    assert run(tmp_path, {"collectives/x.cpp": 'const char* s = "P2PDataHeader";\n'}) \
        == [("src/collectives/x.cpp", 1, "wire-data-header")]


# d. Cycles, and the table against the directories ------------------------------------------------

def test_a_cycle_in_the_table_is_reported(tmp_path):
    table = dict(TABLE, common=["quant"])
    vs = check_layering.check(*make_tree(tmp_path, table=table))
    assert [(v.path, v.rule) for v in vs] == [("docs/architecture.md", "module-cycle")]
    assert vs[0].text == "the module table has a cycle: common -> quant -> common"


def test_a_forbidden_include_that_closes_a_cycle_names_it(tmp_path):
    changes = {"peer/back.cpp": '#include "core/communicator.hpp"\n'}
    vs = check_layering.check(*make_tree(tmp_path, changes))
    assert [(v.path, v.line, v.rule) for v in vs] == [("src/peer/back.cpp", 1, "module-dag")]
    assert vs[0].text.endswith("; a cycle: peer -> core -> peer (core/communicator.cpp:2)")


def test_a_directory_without_a_row_is_reported(tmp_path):
    assert run(tmp_path, {"ops/barrier.cpp": '#include "common/status.hpp"\n'}) \
        == [("docs/architecture.md", 13, "module-table")]


def test_a_row_without_a_directory_is_reported(tmp_path):
    table = dict(TABLE, extra=["common"])
    assert run(tmp_path, table=table) == [("docs/architecture.md", 26, "module-table")]


def test_a_row_naming_an_unknown_module_is_reported(tmp_path):
    table = dict(TABLE, apps=["common", "wire", "net", "master", "ghost"])
    assert run(tmp_path, table=table) == [("docs/architecture.md", 25, "module-table")]


def test_a_source_file_outside_any_module_is_reported(tmp_path):
    assert run(tmp_path, {"stray.cpp": "int x;\n"}) == [("src/stray.cpp", 1, "module-table")]


# The doc ------------------------------------------------------------------------------------------

def test_a_doc_without_the_tables_is_reported(tmp_path):
    src, doc = make_tree(tmp_path)
    doc.write_text("# arch\n\n## 2. Modules\n\nNo tables.\n\n## 3. Next\n")
    assert [(v.line, v.rule) for v in check_layering.check(src, doc)] == [(3, "layering-doc"), (3, "layering-doc")]
    doc.write_text("# arch\n\n## 1. Other\n")
    assert [(v.line, v.rule) for v in check_layering.check(src, doc)] == [(1, "layering-doc")]


def test_a_malformed_row_is_reported(tmp_path):
    table = dict(TABLE)
    src, doc = make_tree(tmp_path, table=table)
    doc.write_text(doc.read_text().replace("| `wire` | `common` |", "| `wire` | common and more |"))
    assert [(v.line, v.rule) for v in check_layering.check(src, doc)] == [(16, "layering-doc")]


def test_the_rules_are_read_from_the_doc(tmp_path):
    # Another confinement row, another module row: the check follows the doc, nothing is built in.
    rows = (ASIO_ROW, HEADER_ROW, "| `no-spdlog` | `<spdlog/...>` | `common/` | |")
    assert run(tmp_path, {"quant/x.cpp": "#include <spdlog/spdlog.h>\n"}, rows=rows) \
        == [("src/quant/x.cpp", 1, "no-spdlog")]
    table = dict(TABLE, quant=["common", "wire"])
    assert run(tmp_path / "b", {"quant/x.cpp": '#include "wire/frame.hpp"\n'}, table=table) == []


@pytest.mark.parametrize("doc", ["docs/architecture.md"])
def test_the_real_doc_has_well_formed_rules(doc):
    rules, errors = check_layering.parse_rules((REPO / doc).read_text(), doc)
    assert errors == []
    assert set(rules.modules) == {p.name for p in (REPO / "src").iterdir() if p.is_dir()}
    assert {c.name for c in rules.confinements} >= {"asio", "wire-data-header"}
