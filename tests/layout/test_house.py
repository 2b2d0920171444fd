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
    """The midiformer modules a file imports. `from pkg import submodule` imports the submodule, like
    `from pkg.submodule import name` (both run pkg/__init__ first, which counts for neither)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("midiformer"):
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in the package's own __init__
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("midiformer"))
    return found & MODULES.keys()


@pytest.mark.parametrize("module", MODULES)
def test_no_module_is_over_400_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= 400, f"{module}: {lines} lines, two concepts in one file"


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (module -> the modules it imports), or None."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for dependency in sorted(graph.get(module, ())):
            if state.get(dependency) == "open":
                return path[path.index(dependency):] + [dependency]
            if dependency not in state and (circle := visit(dependency, path + [dependency])):
                return circle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module, [module])):
            return circle
    return None


def test_no_import_circle():
    circle = find_circle({module: imports_of(path) for module, path in MODULES.items()})
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_check_sees_a_circle(tmp_path):
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from midiformer.data import store\nfrom midiformer.model import MidiGPT\n")
    b.write_text("def f():\n    from midiformer.data import bach\n")  # lazy imports count too
    assert imports_of(a) == {"midiformer.data.store", "midiformer.model"}
    assert imports_of(b) == {"midiformer.data.bach"}


DOC_LINK = re.compile(r"\b(docs[/_][\w./-]+\.md)")



@pytest.mark.parametrize("source", sorted([*CONF_DIR.rglob("*.yaml"), REPO / "README.md",
                                           *(REPO / "docs").glob("*.md")]), ids=lambda p: str(p.relative_to(REPO)))
def test_every_linked_doc_exists(source):
    text = source.read_text()
    named = set(DOC_LINK.findall(text))
    if source.parent.name == "docs":  # docs link to each other by file name: [codec](codec.md)
        named |= {f"docs/{name}" for name in re.findall(r"\]\(([\w-]+\.md)", text)}
    missing = sorted(name for name in named if not (REPO / name).is_file())
    assert not missing, f"{source.relative_to(REPO)} links to {', '.join(missing)}, which do not exist"
