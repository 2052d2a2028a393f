"""The front ends go through the runtime's API (runtime/api.py): no module under
minicontainer/cli imports a kernel module (minicontainer.kernel...) or a private name
(`_name`) of a runtime module, at the top or inside a function. Checked on the source
(ast), so a lazy import inside a branch counts too."""
from __future__ import annotations

import ast
import pathlib

import minicontainer.cli

CLI = pathlib.Path(minicontainer.cli.__file__).parent


def imports(path: pathlib.Path):
    """(line, module, [names]) of every import in the file; a relative one resolved."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = ["minicontainer", "cli"][:3 - node.level]  # the package, or its parent
                module = ".".join(base + ([module] if module else []))
            yield node.lineno, module, [alias.name for alias in node.names]


def violations(path: pathlib.Path) -> list[str]:
    found = []
    for line, module, names in imports(path):
        where = f"{path.name}:{line}"
        if module == "minicontainer.kernel" or module.startswith("minicontainer.kernel."):
            found.append(f"{where} imports {module}")
        elif module == "minicontainer" and "kernel" in names:
            found.append(f"{where} imports minicontainer.kernel")
        elif module.startswith("minicontainer.runtime"):
            private = [n for n in names if n.startswith("_")]
            private += [p for p in module.split(".")[2:] if p.startswith("_")]
            if private:
                found.append(f"{where} imports {', '.join(private)} from {module}")
    return found


def test_the_cli_imports_no_kernel_module_and_no_private_runtime_name():
    modules = sorted(CLI.glob("*.py"))
    assert len(modules) > 20  # every verb's module is looked at
    assert [v for path in modules for v in violations(path)] == []


def test_the_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from minicontainer.kernel import caps\n"
                   "import minicontainer.kernel.syscalls\n"
                   "def f():\n"
                   "    from minicontainer.runtime.cgroups import _keyed, update\n"
                   "    from minicontainer.runtime import api\n"
                   "    from minicontainer import kernel\n")
    assert violations(bad) == [
        "bad.py:1 imports minicontainer.kernel",
        "bad.py:2 imports minicontainer.kernel.syscalls",
        "bad.py:4 imports _keyed from minicontainer.runtime.cgroups",
        "bad.py:6 imports minicontainer.kernel",
    ]
