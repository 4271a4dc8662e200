"""The library's layers import downward only, and no module imports itself back.

Read from the source (every ``import`` statement, lazy and TYPE_CHECKING ones included),
so the test sees what a reader sees, not what happened to be imported at run time.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bottom to top: a module may import its own layer and the layers before it.
LAYERS = ("common", "model", "env", "learn", "run", "report")
# Public names kept for users (README): above every layer, imported by none.
FACADES = ("rldarts", "rldarts.cells")


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def library_modules() -> dict[str, str]:
    """Module name -> file, for every .py file under rldarts/."""
    out = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "rldarts")):
        for f in files:
            if f.endswith(".py"):
                out[_module_name(os.path.join(folder, f))] = os.path.join(folder, f)
    return out


def imported_modules(path: str, modules) -> set[str]:
    """Every first-party module the file imports (``from pkg import mod`` names the
    module when ``pkg.mod`` is one), plus any import of experiments/ or launch/."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m.split(".")[0] in ("rldarts", "experiments", "launch")}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def import_graph() -> dict[str, set[str]]:
    modules = library_modules()
    return {m: imported_modules(path, modules) - {m} for m, path in modules.items()}


def upward_imports(graph) -> list[str]:
    bad = []
    for module, imports in graph.items():
        for target in imports:
            if target.split(".")[0] != "rldarts":
                bad.append(f"{module} imports {target} (outside the library)")
            elif target in FACADES and module not in FACADES:
                bad.append(f"{module} imports the facade {target}")
            elif module not in FACADES and layer_of(module) is None:
                bad.append(f"{module} is in no layer {LAYERS}")
            elif module not in FACADES and layer_of(target) is None:
                bad.append(f"{module} imports {target}, which is in no layer")
            elif module not in FACADES and layer_of(target) > layer_of(module):
                bad.append(f"{module} imports upward: {target}")
    return sorted(bad)


def cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_upward_or_outside_imports():
    assert upward_imports(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_every_layer_is_a_package():
    modules = library_modules()
    assert {f"rldarts.{layer}" for layer in LAYERS} <= set(modules)
    assert len(LAYERS) >= 3


@pytest.mark.parametrize(
    "graph, expect_upward, expect_cycle",
    [
        ({"rldarts.model.a": {"rldarts.learn.b"}, "rldarts.learn.b": set()}, True, False),
        ({"rldarts.model.a": {"rldarts.model.b"}, "rldarts.model.b": {"rldarts.model.a"}}, 0, 1),
        ({"rldarts.run.a": {"experiments.configs.base"}}, True, False),
        ({"rldarts.learn.a": {"rldarts.model.b"}, "rldarts.model.b": set()}, False, False),
    ],
)
def test_the_checks_catch_what_they_should(graph, expect_upward, expect_cycle):
    """The two checks on small hand-made graphs: one upward import, one cycle, one import
    of the binaries' package, and a clean downward import."""
    assert bool(upward_imports(graph)) == bool(expect_upward)
    assert bool(cycles(graph)) == bool(expect_cycle)


def test_public_cells_import_keeps_its_names():
    import rldarts.cells as cells
    from rldarts.model import cells as model_cells
    from rldarts.model import edges, genotypes, methods

    sources = (model_cells, edges, genotypes, methods)
    for name in cells.__all__:
        if name == "METHODS":
            assert cells.METHODS == tuple(methods.METHODS) == ("darts", "gdas", "pc_darts")
            continue
        source = next(m for m in sources if hasattr(m, name))
        assert getattr(cells, name) is getattr(source, name)


def test_the_protocols_agent_names_are_the_registrys():
    """experiments/configs/protocol.py names the agents without importing JAX; the names
    must be the registry's."""
    from experiments.configs import protocol
    from rldarts.learn import agents

    assert protocol.AGENTS == tuple(agents.AGENTS)
