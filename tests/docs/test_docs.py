"""The doc test: every fenced block of README.md and docs/*.md, run as its text says.

Each block is one test (id FILE:LINE). How a block runs is set by the directive before it;
tests/docs/docblocks.py describes the syntax and the kinds. A block without a directive fails.

Environment (the ctest `docs_test` sets both):
  QCCL_DOCS_SOURCE_DIR  the repository (default: two levels above this file)
  QCCL_DOCS_BUILD_DIR   a build tree with the library, qccl-master and the Python package
                        (-DQCCL_BUILD_PYTHON=ON); default SOURCE/build

Every process a block starts runs in its own session with a deadline (the block's timeout);
at the deadline every one of them is SIGKILLed by its process group and the block fails,
showing each process's output.
"""

from __future__ import annotations

import os
import pathlib
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import docblocks  # noqa: E402

SOURCE = pathlib.Path(os.environ.get("QCCL_DOCS_SOURCE_DIR",
                                     pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("QCCL_DOCS_BUILD_DIR", SOURCE / "build"))
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
MASTER_BIN = BUILD / "src" / "apps" / "qccl-master"
PLACEHOLDER = re.compile(r"MASTER_HOST:\d+")

BLOCKS = docblocks.collect(SOURCE)


# ---- processes ------------------------------------------------------------------------------

class Proc:
    """One child process in its own session, output to files (no pipe can fill up)."""

    def __init__(self, argv, cwd, env, name):
        self.argv, self.name = argv, name
        self.out_path = pathlib.Path(cwd) / f"{name}.stdout"
        self.err_path = pathlib.Path(cwd) / f"{name}.stderr"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=err, start_new_session=True)
        self.timed_out = False

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.p.wait()

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def describe(self) -> str:
        rc = "killed at the deadline" if self.timed_out else f"exit {self.p.returncode}"
        return (f"--- {self.name}: {' '.join(map(str, self.argv))}: {rc}\n"
                f"stdout:\n{self.out[-4000:]}\nstderr:\n{self.err[-4000:]}")


def run_all(argvs, cwd, env, timeout, names):
    """Starts every argv at once and waits for all of them, killing them at the deadline."""
    procs = [Proc(a, cwd, env, n) for a, n in zip(argvs, names)]
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            try:
                p.p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.timed_out = True
    finally:
        for p in procs:
            p.kill()
    return procs


def check_procs(block, procs, what):
    bad = [p for p in procs if p.timed_out or p.p.returncode != 0]
    if not bad:
        for text in block.expect:
            bad += [p for p in procs if text not in p.out]
    if bad:
        expects = "".join(f"\n  expected on stdout: {t!r}" for t in block.expect)
        pytest.fail(f"{block.id}: {what} failed{expects}\n" +
                    "\n".join(p.describe() for p in procs), pytrace=False)


class Master:
    """A real qccl-master on 127.0.0.1, port 0 (the build's binary)."""

    def __init__(self, cwd):
        self.err_path = pathlib.Path(cwd) / "master.stderr"
        with open(self.err_path, "wb") as err:
            self.p = subprocess.Popen([str(MASTER_BIN), "--listen", "127.0.0.1:0",
                                       "--log-level", "info"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=err, start_new_session=True)
        line = b""
        deadline = time.monotonic() + 20
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([self.p.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(self.p.stdout.fileno(), 256)
                if not chunk:
                    break
                line += chunk
        m = re.match(rb"qccl-master listening on (\S+)", line)
        if not m:
            self.stop()
            pytest.fail(f"qccl-master did not start: {line!r}\n{self.err_path.read_text()}")
        self.address = m.group(1).decode()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.p.stdout.close()

    @property
    def log(self) -> str:
        return self.err_path.read_text(errors="replace")[-4000:]


# ---- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def prefix(tmp_path_factory):
    """An installed qccl (cmake --install of the build tree), as README.md's P."""
    p = tmp_path_factory.mktemp("install") / "P"
    r = subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(p)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"cmake --install failed:\n{r.stdout}{r.stderr}"
    return p


def _env(**extra):
    env = dict(os.environ)
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1",
               QCCL_LOG_LEVEL=os.environ.get("QCCL_DOCS_LOG_LEVEL", "warn"))
    env.update(extra)
    return env


def _prepare_dir(block, cwd, prefix_dir):
    for name in block.files:
        shutil.copy(FIXTURES / name, cwd / name)
    if "prefix" in block.options:
        (cwd / block.options["prefix"]).symlink_to(prefix_dir)


def _needs_prefix(block) -> bool:
    return block.kind in ("c", "c-fragment", "cmake-fragment") or "prefix" in block.options


# ---- the kinds --------------------------------------------------------------------------------

def run_python(block, cwd):
    source = block.prelude + block.code
    master = Master(cwd) if PLACEHOLDER.search(source) else None
    try:
        if master:
            source = PLACEHOLDER.sub(master.address, source)
        (cwd / "snippet.py").write_text(source)
        pythonpath = os.pathsep.join(filter(None, [str(BUILD / "python"),
                                                   os.environ.get("PYTHONPATH")]))
        launch = [sys.executable, "snippet.py"]
        if block.torchrun:  # as the text says: torchrun --standalone --nproc-per-node N
            launch[1:1] = ["-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", str(block.torchrun)]
        procs = run_all([launch] * block.peers, cwd,
                        _env(PYTHONPATH=pythonpath), block.timeout,
                        [f"peer{i}" for i in range(block.peers)])
    finally:
        if master:
            master.stop()
    what = f"{block.peers} process(es) of {cwd / 'snippet.py'}"
    if master:
        what += f" against qccl-master {master.address} (its log:\n{master.log})"
    check_procs(block, procs, what)


def _compile(block, argv, cwd, timeout=60):
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        pytest.fail(f"{block.id}: {' '.join(map(str, argv))} failed:\n{r.stdout}{r.stderr}",
                    pytrace=False)


def run_c(block, cwd, prefix_dir):
    # The file name the block's first comment gives ("/* two_peers.c: ..."), else prog.c.
    m = re.match(r"\s*/\*\s*([\w.-]+\.c)\b", block.code)
    name = m.group(1) if m else "prog.c"
    source = block.code
    master = Master(cwd) if PLACEHOLDER.search(source) else None
    try:
        if master:
            source = PLACEHOLDER.sub(master.address, source)
        (cwd / name).write_text(source)
        (cwd / "P").symlink_to(prefix_dir)
        _compile(block, ["cc", "-std=c99", name, "-IP/include", "-LP/lib", "-lqccl", "-pthread",
                         "-pedantic", "-Wall", "-Wextra", "-Werror", "-o", "prog"], cwd)
        procs = run_all([["./prog"]] * block.peers, cwd,
                        _env(LD_LIBRARY_PATH=str(prefix_dir / "lib")), block.timeout,
                        [f"peer{i}" for i in range(block.peers)])
    finally:
        if master:
            master.stop()
    check_procs(block, procs, f"{block.peers} process(es) of {cwd / name}")


FRAGMENT_WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wno-unused-variable",
                     "-Wno-unused-but-set-variable", "-Wno-unused-label",
                     "-Wno-unused-parameter", "-Wno-unused-function"]


def run_c_fragment(block, cwd, prefix_dir):
    source = ("#include <qccl/qccl.h>\n#include <stddef.h>\n#include <stdint.h>\n\n"
              f"{block.prelude}\n"
              "void doctest_fragment(void);\nvoid doctest_fragment(void) {\n"
              f"#line {block.line + 1} \"{block.rel}\"\n{block.code}\n;\n}}\n")
    (cwd / "fragment.c").write_text(source)
    _compile(block, ["cc", "-std=c99", "-pedantic", *FRAGMENT_WARNINGS,
                     f"-I{prefix_dir / 'include'}", "-c", "fragment.c", "-o", "fragment.o"], cwd)


def run_cpp_fragment(block, cwd):
    source = (f"{block.prelude}\n"
              "void doctest_fragment();\nvoid doctest_fragment() {\n"
              f"#line {block.line + 1} \"{block.rel}\"\n{block.code}\n}}\n")
    (cwd / "fragment.cpp").write_text(source)
    _compile(block, ["c++", "-std=c++20", "-pedantic", *FRAGMENT_WARNINGS,
                     f"-I{SOURCE / 'src'}", "-fsyntax-only", "fragment.cpp"], cwd)


def run_sh(block, cwd):
    (cwd / "block.sh").write_text(block.code)
    procs = run_all([["bash", "-euo", "pipefail", "block.sh"]] * block.peers, cwd, _env(),
                    block.timeout, [f"sh{i}" for i in range(block.peers)])
    check_procs(block, procs, f"bash {cwd / 'block.sh'}")


def run_cmake_fragment(block, cwd, prefix_dir):
    sources = " ".join(f for f in block.files if f.endswith(".c"))
    (cwd / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.20)\nproject(app C)\n"
        f"add_executable(app {sources})\n{block.code}")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    _compile(block, ["cmake", "-S", ".", "-B", "b", *generator, f"-DCMAKE_PREFIX_PATH={prefix_dir}",
                     "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF"], cwd, timeout=block.timeout)
    _compile(block, ["cmake", "--build", "b"], cwd, timeout=block.timeout)
    procs = run_all([["b/app"]], cwd, _env(), block.timeout, ["app"])
    check_procs(block, procs, "the program built by the fragment")


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def run_usage(block):
    of = block.options["of"]
    program = MASTER_BIN if of == "qccl-master" else SOURCE / of
    r = subprocess.run([str(program), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{program} --help: exit {r.returncode}\n{r.stdout}{r.stderr}"
    documented = set(FLAG.findall(block.code))
    actual = set(FLAG.findall(r.stdout + r.stderr)) - {"--help", "--version"}
    missing, stale = sorted(actual - documented), sorted(documented - actual)
    if missing or stale:
        pytest.fail(f"{block.id}: the synopsis of {of} disagrees with its --help: "
                    f"flags it lacks {missing}, flags --help does not know {stale}",
                    pytrace=False)


# A skipped block is not run, but the repository files and build products it names must
# exist: a renamed script or target fails the test even there.
REPO_PATH = re.compile(r"(?<![\w./-])((?:benchmarks|cmake|docs|examples|include|python|scripts|src|"
                       r"tests)/[\w./-]*[\w])")
BUILD_PRODUCT = re.compile(r"(?<![\w./-])build[\w-]*/(?:[\w.-]+/)*([\w.-]+)")


def cmake_targets() -> set[str]:
    names = set()
    for path in SOURCE.rglob("CMakeLists.txt"):
        if path.relative_to(SOURCE).parts[0].startswith("build"):
            continue
        names |= set(re.findall(r"\(\s*([A-Za-z_][\w-]*)", path.read_text(errors="replace")))
    return names


_ctests: set[str] | None = None


def ctest_names() -> set[str]:
    global _ctests
    if _ctests is None:
        r = subprocess.run(["ctest", "--test-dir", str(BUILD), "-N"], capture_output=True,
                           text=True, timeout=60)
        _ctests = set(re.findall(r"Test\s+#\d+: (\S+)", r.stdout))
    return _ctests


def check_named_paths(block):
    # "the ctest NAME" in the reason must be a test of this build.
    unknown = [n for n in re.findall(r"\bthe ctest (\w+)", block.reason)
               if n not in ctest_names()]
    if unknown:
        pytest.fail(f"{block.id}: the skip reason names ctests this build does not have: "
                    f"{unknown}", pytrace=False)
    text = block.code
    missing = [p for p in REPO_PATH.findall(text) if not (SOURCE / p).exists()]
    products = BUILD_PRODUCT.findall(text)
    if products:
        targets = cmake_targets()
        missing += [f"build target {n}" for n in products if n not in targets]
    if missing:
        pytest.fail(f"{block.id}: the block names what does not exist: {sorted(set(missing))}",
                    pytrace=False)


# ---- the tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block(block, tmp_path, request):
    if block.error:
        pytest.fail(f"{block.id}: {block.error}", pytrace=False)
    if block.kind == "skip":
        check_named_paths(block)
        pytest.skip(f"{block.id}: {block.reason}")
    if block.kind in docblocks.KINDS_TEXT:
        return  # a diagram, a layout or sample output: nothing to run
    prefix_dir = request.getfixturevalue("prefix") if _needs_prefix(block) else None
    _prepare_dir(block, tmp_path, prefix_dir)
    if block.kind == "python":
        run_python(block, tmp_path)
    elif block.kind == "c":
        run_c(block, tmp_path, prefix_dir)
    elif block.kind == "c-fragment":
        run_c_fragment(block, tmp_path, prefix_dir)
    elif block.kind == "cpp-fragment":
        run_cpp_fragment(block, tmp_path)
    elif block.kind == "sh":
        run_sh(block, tmp_path)
    elif block.kind == "cmake-fragment":
        run_cmake_fragment(block, tmp_path, prefix_dir)
    elif block.kind == "usage":
        run_usage(block)
    else:  # docblocks.KINDS and this function disagree
        pytest.fail(f"{block.id}: kind {block.kind} has no runner")

