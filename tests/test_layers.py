"""The layers of ffcore point down only (docs/design.md, "Layers").

Every module of the package is parsed with `ast` (nothing is imported), and every reference
to another ffcore module counts, wherever it is written:

- an `import` / `from ... import` at module level or inside a function (a lazy import keeps
  start-up light; it may point down, never up), relative imports resolved;
- a module named by a string: the argument of `importlib.import_module`, `__import__`,
  `importlib.util.find_spec` or `pkgutil.resolve_name`, and any string constant (docstrings
  aside) that is a dotted ffcore module name, possibly with `:attribute` (handler strings,
  module lists loaded later).

The argument of `logging.getLogger` is a logger's name, not a module, and does not count.

A unit is a top-level module or subpackage of ffcore (`ffcore.eval`, `ffcore.paths`). A unit
may use its own modules, and units of lower layers; units of one layer may use each other
as long as no cycle forms between them. Inside a unit, its modules (the package's
`__init__` included) may use each other as long as no cycle forms between them either.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ffcore"

# Bottom to top; keep in step with the drawing in docs/design.md. A unit is a top-level module or
# subpackage of ffcore, or one module of a package listed by its dotted name ("report.tex"): the
# reporting package lends its low modules (stamps, LaTeX, figures, tables) to the layers below
# and keeps its chapter modules above the runs they read; such a package's __init__ imports nothing.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("ffcore", "paths", "anchors", "boxes", "preprocess", "postprocess", "losses", "checkpoint",
              "report.provenance", "report.tex", "report.plotting", "report.tables", "report.display")),
    ("models", ("models",)),
    ("data", ("data",)),
    ("eval", ("eval",)),
    ("tools", ("engine", "deploy", "complexity", "bench", "pruning")),
    ("runs", ("runs",)),
    ("report", ("report",)),
    ("study", ("study",)),
    ("cli", ("cli", "__main__")),
)
# Units that are one module of a package, by dotted name relative to ffcore.
MODULE_UNITS = frozenset(unit for _, units in LAYERS for unit in units if "." in unit)

# Calls whose first argument names a module to load.
NAME_LOADERS = {"import_module", "__import__", "find_spec", "resolve_name"}
# Calls whose string argument looks like a module name but is not one (a logger's name).
NOT_MODULE_NAMES = {"getLogger"}

# Packages whose modules still use each other in a cycle, with why the exception stands. Each
# entry must still cycle (the test says when one can go); ffcore.models never belongs here.
KNOWN_CYCLES: dict[str, str] = {}   # unit -> why its cycle is tolerated for now (none is)
# A whole string that is an ffcore module name (optionally `module:attribute`), not prose.
MODULE_STRING = re.compile(r"^ffcore(\.[A-Za-z_]\w*)*(:[A-Za-z_][\w.]*)?$")


@dataclass(frozen=True)
class Reference:
    """`source` (in `path` at `line`) uses `target`, written `how`."""

    path: Path
    line: int
    source: str
    target: str
    how: str        # "at module level", "inside a function", "by name string"


def module_name(path: Path, root: Path) -> str:
    """Dotted name of a file of the package rooted at `root` (the folder named like the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _enclosed_by_function(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    while id(node) in parents:
        node = parents[id(node)]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
    return False


def _string_prefix(node: ast.AST) -> str | None:
    """The literal text of a string argument, or the literal start of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value).rstrip(".")
    return None


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def references(path: Path, root: Path) -> list[Reference]:
    """Every use of an ffcore module written in the file `path` (see the module docstring)."""
    source = module_name(path, root)
    package = root.name
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    docstrings = _docstring_nodes(tree)
    named_by_loader: set[int] = set()
    not_module_names = {id(node.args[0]) for node in ast.walk(tree)
                        if isinstance(node, ast.Call) and _called_name(node) in NOT_MODULE_NAMES and node.args}
    found = []

    def add(node: ast.AST, target: str, how: str | None = None) -> None:
        if how is None:
            how = "inside a function" if _enclosed_by_function(node, parents) else "at module level"
        found.append(Reference(path, node.lineno, source, target, how))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package:
                    add(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: strip one part per level beyond the first, starting from the containing package.
                base = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != package:
                continue
            for alias in node.names:
                # `from ffcore import study`, `from ffcore.models import zoo`: the name is a module.
                submodule = root.parent.joinpath(*f"{target}.{alias.name}".split("."))
                is_module = submodule.is_dir() or submodule.with_suffix(".py").is_file() or target == package
                add(node, f"{target}.{alias.name}" if is_module else target)
        elif isinstance(node, ast.Call) and _called_name(node) in NAME_LOADERS and node.args:
            text = _string_prefix(node.args[0])
            if text is not None and text.split(".")[0].split(":")[0] == package:
                named_by_loader.add(id(node.args[0]))
                add(node, text.split(":")[0], "by name string")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and id(node) not in named_by_loader and id(node) not in not_module_names
              and MODULE_STRING.match(node.value)):
            # ast.walk visits a call before its arguments, so a loader's argument is counted once.
            add(node, node.value.split(":")[0], "by name string")
    return found


def unit_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return parts[0]
    if ".".join(parts[1:3]) in MODULE_UNITS:
        return ".".join(parts[1:3])
    return parts[1]


def layer_index(unit: str, layers=LAYERS) -> int | None:
    for index, (_, units) in enumerate(layers):
        if unit in units:
            return index
    return None


def _where(reference: Reference, repo: Path) -> str:
    try:
        shown = reference.path.relative_to(repo)
    except ValueError:
        shown = reference.path
    return f"{shown}:{reference.line}"


def all_references(root: Path) -> list[Reference]:
    return [ref for path in sorted(root.rglob("*.py")) for ref in references(path, root)]


def layer_violations(root: Path, layers=LAYERS, repo: Path = REPO) -> list[str]:
    """One message per module without a layer and per reference to a unit of a higher layer."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        unit = unit_of(module_name(path, root))
        if layer_index(unit, layers) is None:
            problems.append(f"{path.relative_to(root.parent)}: unit {unit!r} has no layer; add it to LAYERS in "
                            f"tests/test_layers.py and to the drawing in docs/design.md")
    for ref in all_references(root):
        source_unit, target_unit = unit_of(ref.source), unit_of(ref.target)
        if source_unit == target_unit:
            continue
        here, there = layer_index(source_unit, layers), layer_index(target_unit, layers)
        if here is None or there is None or there <= here:
            continue
        allowed = ", ".join(name for name, _ in layers[:here + 1])
        problems.append(f"{_where(ref, repo)}: {ref.source} (layer {layers[here][0]}) uses {ref.target} "
                        f"(layer {layers[there][0]}) {ref.how}; layer {layers[here][0]} may use only "
                        f"{allowed}")
    return problems


def _cycles(edges: dict[str, dict[str, Reference]], repo: Path) -> list[tuple[set[str], str]]:
    """One (group, message) per group of nodes that reach each other through `edges`, the message
    showing one shortest cycle with the reference behind every step."""

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), {}):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reach = {node: reachable(node) for node in edges}
    cycles, reported = [], set()
    for start in sorted(edges):
        if start not in reach[start] or start in reported:
            continue
        group = {u for u in reach[start] if start in reach.get(u, set())}
        reported |= group
        # Shortest way back to `start` inside the group (breadth first), to show one concrete cycle.
        parent: dict[str, str | None] = {start: None}
        queue, closing = [start], None
        for node in queue:
            for nxt in sorted(edges.get(node, {})):
                if nxt == start:
                    closing = node
                    break
                if nxt in group and nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
            if closing is not None:
                break
        back = [closing]
        while parent[back[-1]] is not None:
            back.append(parent[back[-1]])
        loop = back[::-1] + [start]
        steps = "; ".join(f"{_where(edges[a][b], repo)} {a} -> {b}" for a, b in zip(loop, loop[1:]))
        cycles.append((group, f"cycle {' -> '.join(loop)}: {steps}"))
    return cycles


def unit_cycles(root: Path, repo: Path = REPO) -> list[str]:
    """One cycle per group of units that use each other (layers point down, so each lies in one
    layer), with the reference behind every step."""
    edges: dict[str, dict[str, Reference]] = {}
    for ref in all_references(root):
        a, b = unit_of(ref.source), unit_of(ref.target)
        if a != b:
            edges.setdefault(a, {}).setdefault(b, ref)
    return [message for _, message in _cycles(edges, repo)]


def module_cycles(root: Path, repo: Path = REPO) -> dict[str, list[str]]:
    """Cycles among the modules of one unit (a package's `__init__` is a module like the others),
    keyed by the unit's dotted name (`ffcore.models`). A reference names the module it loads:
    `from ffcore.models.registry import x` uses `ffcore.models.registry`, not the package."""
    package = root.name
    edges: dict[str, dict[str, Reference]] = {}
    for ref in all_references(root):
        if unit_of(ref.source) == unit_of(ref.target) and ref.source != ref.target:
            edges.setdefault(ref.source, {}).setdefault(ref.target, ref)
    found: dict[str, list[str]] = {}
    for group, message in _cycles(edges, repo):
        unit = f"{package}.{unit_of(min(group))}"
        found.setdefault(unit, []).append(message)
    return found


# --------------------------------------------------------------------------------------------
# The package as it is
# --------------------------------------------------------------------------------------------

def test_no_module_of_ffcore_uses_a_layer_above_its_own():
    problems = layer_violations(PACKAGE)
    assert not problems, "upward references:\n" + "\n".join(problems)


def test_no_two_units_use_each_other_in_a_cycle():
    cycles = unit_cycles(PACKAGE)
    assert not cycles, "\n".join(cycles)


def test_no_two_modules_of_a_unit_use_each_other_in_a_cycle():
    assert "ffcore.models" not in KNOWN_CYCLES, "the models package has no excuse for a cycle"
    found = module_cycles(PACKAGE)
    unexpected = [message for unit, messages in sorted(found.items()) if unit not in KNOWN_CYCLES
                  for message in messages]
    assert not unexpected, "cycles inside a package:\n" + "\n".join(unexpected)
    gone = sorted(set(KNOWN_CYCLES) - set(found))
    assert not gone, f"{', '.join(gone)} no longer cycle(s): remove from KNOWN_CYCLES in tests/test_layers.py"


def test_a_package_that_lends_modules_to_lower_layers_imports_nothing_itself():
    # Importing ffcore.report.tex runs ffcore/report/__init__.py first: were that file to import
    # a chapter module, every low user of tex would load the layers above it.
    for package in sorted({unit.split(".")[0] for unit in MODULE_UNITS}):
        init = PACKAGE / package / "__init__.py"
        found = references(init, PACKAGE)
        assert not found, f"{init.relative_to(REPO)} must import nothing: {found}"
        tree = ast.parse(init.read_text())
        imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert not imports, f"{init.relative_to(REPO)}:{imports[0].lineno} imports; it must stay empty"


def test_no_module_imports_a_private_name_of_another():
    # A name with a leading underscore is its module's own; one that another module needs is
    # public (or moves to where both can reach it).
    crossing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE.name:
                crossing += [f"{path.relative_to(REPO)}:{node.lineno} imports {alias.name} from {node.module}"
                             for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not crossing, "\n".join(crossing)


def test_the_checker_sees_every_kind_of_reference_in_the_real_tree():
    # Guards the guard: the package holds references of all three kinds (lazy imports for
    # start-up time, `ffcore.data`'s lazy exports loaded by name), so a checker blind to one
    # kind would fail here rather than pass the two tests above.
    found = all_references(PACKAGE)
    assert {r.how for r in found} == {"at module level", "inside a function", "by name string"}
    pairs = {(r.source, r.target) for r in found}
    assert ("ffcore.models", "ffcore.models.pruned") in pairs            # registers the pruned variants
    assert ("ffcore.eval.protocol", "ffcore.data.ground_truth") in pairs  # eval reads data's ground truth


def test_design_doc_draws_every_layer_and_unit():
    drawing = (REPO / "docs" / "design.md").read_text().split("## Layers", 1)
    assert len(drawing) == 2, "docs/design.md has no '## Layers' section"
    section = drawing[1].split("\n## ", 1)[0]
    for name, units in LAYERS:
        assert name in section, f"docs/design.md, Layers: layer {name!r} missing"
        for unit in units:
            assert unit in section, f"docs/design.md, Layers: unit {unit!r} of layer {name!r} missing"


# --------------------------------------------------------------------------------------------
# Planted violations: the checker fails on each way of pointing up
# --------------------------------------------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "ffcore"
    for name in ("__init__.py", "models/__init__.py", "data/__init__.py", "eval/__init__.py", "study/__init__.py",
                 "paths.py", "deploy/__init__.py", "bench/__init__.py", "report/__init__.py",
                 "cli/__init__.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.mark.parametrize("name, text, line, words", [
    ("models/zoo.py", "import torch\nfrom ffcore.study import open_study\n", 2,
     "ffcore.models.zoo (layer models) uses ffcore.study (layer study) at module level; "
     "layer models may use only base, models"),
    ("data/validation.py", "def index():\n    from ffcore.eval.ground_truth import load_ground_truth\n", 2,
     "uses ffcore.eval.ground_truth (layer eval) inside a function; layer data may use only base, models, data"),
    ("models/__init__.py", "import importlib\nfor m in ('a',):\n    importlib.import_module('ffcore.pruning')\n", 3,
     "uses ffcore.pruning (layer tools) by name string"),
    ("models/registry.py", "def load():\n    return __import__('ffcore.cli')\n", 2,
     "uses ffcore.cli (layer cli) by name string"),
    ("paths.py", 'HANDLERS = ("ffcore.study.context:open_study",)\n', 1,
     "ffcore.paths (layer base) uses ffcore.study.context (layer study) by name string"),
    ("eval/plots.py", "def f():\n    from ..study import figures\n", 2,
     "ffcore.eval.plots (layer eval) uses ffcore.study (layer study) inside a function"),
    ("data/synth.py", "from ffcore import engine\n", 1,
     "ffcore.data.synth (layer data) uses ffcore.engine (layer tools) at module level"),
    ("data/__init__.py", "import importlib\ndef get(n):\n    return importlib.import_module(f'ffcore.eval.{n}')\n", 3,
     "ffcore.data (layer data) uses ffcore.eval (layer eval) by name string"),
])
def test_an_upward_reference_is_reported_with_file_line_and_rule(tmp_path, name, text, line, words):
    root = _tree(tmp_path, {name: text})
    problems = layer_violations(root, repo=tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"ffcore/{name}:{line}: "), problems[0]
    assert words in problems[0]


def test_downward_lazy_imports_docstrings_and_own_names_are_allowed(tmp_path):
    root = _tree(tmp_path, {
        "study/figures.py": '"""Uses ffcore.cli.main in prose only: a docstring is not a reference."""\n'
                            "def f():\n    from ffcore.eval import evaluate\n    from ffcore.models import zoo\n",
        "data/annotations.py": 'import logging\nlog = logging.getLogger("ffcore.data")\n',
        "cli/__init__.py": 'HANDLER = "ffcore.study.figures:f"\n',
        "eval/predict.py": "def g():\n    from ffcore.data.layout import WiderFaceLayout\n",
    })
    assert layer_violations(root, repo=tmp_path) == []
    assert unit_cycles(root, repo=tmp_path) == []


def test_a_cycle_between_units_of_one_layer_is_reported_with_both_references(tmp_path):
    root = _tree(tmp_path, {
        "deploy/export.py": "from ffcore.bench.ladder import deploy_ladder\n",
        "bench/ladder.py": "def check():\n    from ffcore.deploy.export import sample_batch\n",
    })
    assert layer_violations(root, repo=tmp_path) == []        # same layer: only the cycle is wrong
    cycles = unit_cycles(root, repo=tmp_path)
    assert len(cycles) == 1, cycles
    assert ("ffcore/bench/ladder.py:2 bench -> deploy" in cycles[0]
            and "ffcore/deploy/export.py:1 deploy -> bench" in cycles[0])


def test_a_module_unit_keeps_its_own_layer_apart_from_its_package(tmp_path):
    # report.tex sits in the base layer and data may use it; report.tex may not use the
    # report package's chapter, which sits above runs.
    root = _tree(tmp_path, {
        "report/tex.py": "def f():\n    from ffcore.report.chapter import build_chapter\n",
        "report/chapter.py": "from ffcore.report.tex import escape\n",
        "data/synth.py": "from ffcore.report.tex import escape\n",
    })
    (problem,) = layer_violations(root, repo=tmp_path)
    assert problem.startswith("ffcore/report/tex.py:2: ffcore.report.tex (layer base) uses ffcore.report.chapter "
                              "(layer report) inside a function"), problem


@pytest.mark.parametrize("files, words", [
    # Two siblings, one of them through a lazy import.
    ({"models/zoo.py": "from ffcore.models.registry import register_model\n",
      "models/registry.py": "def create_model(name):\n    from ffcore.models.zoo import BUILDERS\n"},
     ["ffcore/models/registry.py:2 ffcore.models.registry -> ffcore.models.zoo",
      "ffcore/models/zoo.py:1 ffcore.models.zoo -> ffcore.models.registry"]),
    # Through the package itself: its __init__ imports a module that imports the package back.
    ({"models/__init__.py": "from ffcore.models.registry import create_model\n",
      "models/registry.py": "def _ensure_builtin_models():\n    import ffcore.models\n"},
     ["ffcore/models/__init__.py:1 ffcore.models -> ffcore.models.registry",
      "ffcore/models/registry.py:2 ffcore.models.registry -> ffcore.models"]),
    # Relative imports, three modules round.
    ({"eval/a.py": "from .b import f\n", "eval/b.py": "from . import c\n", "eval/c.py": "def g():\n    from .a import h\n"},
     ["ffcore/eval/a.py:1 ffcore.eval.a -> ffcore.eval.b", "ffcore/eval/b.py:1 ffcore.eval.b -> ffcore.eval.c",
      "ffcore/eval/c.py:2 ffcore.eval.c -> ffcore.eval.a"]),
])
def test_a_cycle_inside_a_unit_is_reported_with_every_reference(tmp_path, files, words):
    root = _tree(tmp_path, files)
    assert layer_violations(root, repo=tmp_path) == [] and unit_cycles(root, repo=tmp_path) == []
    found = module_cycles(root, repo=tmp_path)
    unit = "ffcore." + next(iter(files)).split("/")[0]
    assert list(found) == [unit], found
    (message,) = found[unit]
    for step in words:
        assert step in message, message


def test_no_cycle_inside_a_unit_from_one_way_imports_or_a_logger_name(tmp_path):
    root = _tree(tmp_path, {
        "engine/__init__.py": "from ffcore.engine.supervised import train\n",
        "engine/supervised.py": 'import logging\nfrom ffcore.engine.config import C\nlog = logging.getLogger("ffcore.engine")\n',
        "engine/config.py": "C = 1\n",
    })
    assert module_cycles(root, repo=tmp_path) == {}


def test_a_module_outside_every_layer_is_reported(tmp_path):
    root = _tree(tmp_path, {"figures.py": "import os\n"})
    (problem,) = layer_violations(root, repo=tmp_path)
    assert problem.startswith("ffcore/figures.py: unit 'figures' has no layer")
