"""The layer rules of docs/architecture.md, checked on every import statement of the source tree
(module level and inside functions), plus what the shipped entry points actually load."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Import package -> folder (setup.py's mapping).
FOLDERS = {"gpufleet": "gpufleet", "gpufleet.scheduler": "scheduler", "gpufleet.autoscaler": "autoscaler",
           "gpufleet.proto": "proto"}

# (rule, modules it applies to (prefixes), forbidden imports (prefixes))
RULES = [
    ("core is the bottom layer: it imports no other gpufleet package",
     ["gpufleet.core"], ["gpufleet.scheduler", "gpufleet.autoscaler", "gpufleet.proto", "gpufleet.cli",
                         "numpy", "numba", "grpc"]),
    ("the scheduler never imports the autoscaler", ["gpufleet.scheduler"], ["gpufleet.autoscaler"]),
    ("model, kernels and policies import no HTTP, Kubernetes, gRPC or trace code",
     ["gpufleet.scheduler.model", "gpufleet.scheduler.kernels", "gpufleet.scheduler.reference",
      "gpufleet.scheduler.workload", "gpufleet.scheduler.policies"],
     ["gpufleet.scheduler.extender", "gpufleet.scheduler.localcluster", "gpufleet.scheduler.trace",
      "gpufleet.core.kube", "gpufleet.proto", "kubernetes", "grpc", "urllib3", "http", "requests"]),
    ("the decision cores (reclaim, cost) are pure: no Kubernetes, gRPC or HTTP",
     ["gpufleet.autoscaler.reclaim", "gpufleet.autoscaler.cost"],
     ["gpufleet.core.kube", "gpufleet.proto", "gpufleet.autoscaler.controller", "gpufleet.autoscaler.agent",
      "gpufleet.scheduler.extender", "gpufleet.scheduler.localcluster", "kubernetes", "grpc", "urllib3", "http"]),
    ("the agent imports no numpy, numba or scheduler code",
     ["gpufleet.autoscaler.agent", "gpufleet.autoscaler.gpu", "gpufleet.autoscaler.kubelet"],
     ["numpy", "numba", "gpufleet.scheduler"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports, absolute (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _edge(module: str) -> bool:
    """Command-line modules are edges: they may reach any layer."""
    return module.rsplit(".", 1)[-1] in ("cli", "__main__")


def test_the_source_tree_is_found() -> None:
    found = modules()
    assert {"gpufleet.core.clock", "gpufleet.scheduler.kernels", "gpufleet.autoscaler.agent.app",
            "gpufleet.proto.build"} <= set(found)


@pytest.mark.parametrize(("rule", "sources", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_layer_rule(rule: str, sources: list[str], forbidden: list[str]) -> None:
    broken = [f"{module} imports {name}" for module, path in modules().items()
              if _under(module, sources) and not _edge(module)
              for name in sorted(imports(module, path)) if _under(name, forbidden)]
    assert broken == [], f"{rule}:\n" + "\n".join(broken)


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from ..extender import service\n    import numpy as np\n")
    found = imports("gpufleet.scheduler.policies.bad", path)
    assert "gpufleet.scheduler.extender.service" in found and "numpy" in found


def test_every_subcommand_module_exists_and_has_the_cli_contract() -> None:
    from gpufleet.cli import SUBCOMMANDS

    found = modules()
    for name, (module, _) in SUBCOMMANDS.items():
        assert module in found, f"gpufleet {name}: no module {module}"
        tree = ast.parse(found[module].read_text())
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert {"add_arguments", "run"} <= functions, f"{module} lacks add_arguments/run"


def _loaded_by(argv: list[str]) -> set[str]:
    code = ("import sys, runpy\n"
            f"sys.argv = {['gpufleet', *argv]!r}\n"
            "from gpufleet import cli\n"
            "try:\n    cli.parse_args(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('\\n'.join(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return {line.split(".")[0] for line in out.stdout.splitlines()}


def test_gpufleet_help_imports_no_subcommand() -> None:
    loaded = _loaded_by(["--help"])
    assert not loaded & {"numpy", "numba", "grpc", "kubernetes"}


def test_the_agent_entry_point_never_loads_numpy_or_numba() -> None:
    code = ("import sys, threading\n"
            "from gpufleet import cli\n"
            "args = cli.parse_args(['agent', '--simulate', '--listen', '127.0.0.1:0', '--metrics-listen', "
            "'127.0.0.1:0', '--pod-resources-socket', ''])\n"
            "threading.Timer(2.0, lambda: __import__('os').kill(__import__('os').getpid(), 15)).start()\n"
            "args._module.run(args)\n"
            "print('\\n'.join(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    loaded = {line.split(".")[0] for line in out.stdout.splitlines()}
    assert "grpc" in loaded, out.stderr[-2000:]  # it did run the agent
    assert not loaded & {"numpy", "numba"}
