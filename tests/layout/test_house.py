"""The house rules that a reader checks by eye, checked here: no module over 400 lines, no import
circle among midiformer's modules (lazy imports inside functions included), every doc a YAML comment
or the README links to exists."""
from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import CONF_DIR, REPO

PACKAGE = REPO / "midiformer"
MODULES = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("midiformer"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("midiformer"))
    return found & MODULES.keys()


@pytest.mark.parametrize("module", MODULES)
def test_no_module_is_over_400_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= 400, f"{module}: {lines} lines, two concepts in one file"


def test_no_import_circle():
    graph = {module: imports_of(path) for module, path in MODULES.items()}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dependency in sorted(graph[module]):
            if state.get(dependency) == "open":
                circle = path[path.index(dependency):] + [dependency]
                pytest.fail("import circle: " + " -> ".join(circle))
            if dependency not in state:
                visit(dependency, path + [dependency])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_the_circle_check_sees_a_circle(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from midiformer.data import store\n")
    b.write_text("def f():\n    from midiformer.data import bach\n")  # lazy imports count too
    assert imports_of(a) == {"midiformer.data", "midiformer.data.store"}
    assert imports_of(b) == {"midiformer.data", "midiformer.data.bach"}


DOC_LINK = re.compile(r"\b(docs[/_][\w./-]+\.md)")
# Written on other branches at the time of writing (codec, SLURM, generation, scale, the quality benchmark):
# a link to them is allowed until they land, and test_the_docs_of_other_branches_have_landed then
# fails (XPASS, strict) to say that this set must be emptied.
# docs/quality.md: linked by conf/model/*.yaml (beat_phase) from main, found in no worktree on 2026-12-01.
WRITTEN_ELSEWHERE = {"docs/codec.md", "docs/slurm.md", "docs/generation.md", "docs/scale.md", "docs/benchmarks.md",
                     "docs/quality.md"}


@pytest.mark.parametrize("source", sorted([*CONF_DIR.rglob("*.yaml"), REPO / "README.md",
                                           *(REPO / "docs").glob("*.md")]), ids=lambda p: str(p.relative_to(REPO)))
def test_every_linked_doc_exists(source):
    text = source.read_text()
    named = set(DOC_LINK.findall(text))
    if source.parent.name == "docs":  # docs link to each other by file name: [codec](codec.md)
        named |= {f"docs/{name}" for name in re.findall(r"\]\(([\w-]+\.md)", text)}
    missing = sorted(name for name in named if not (REPO / name).is_file() and name not in WRITTEN_ELSEWHERE)
    assert not missing, f"{source.relative_to(REPO)} links to {', '.join(missing)}, which do not exist"


@pytest.mark.xfail(strict=True, reason="docs written on other branches; once all have landed, empty WRITTEN_ELSEWHERE")
def test_the_docs_of_other_branches_have_landed():
    assert all((REPO / name).is_file() for name in WRITTEN_ELSEWHERE)
