"""The import graph runs one way, and the modules a deployment box needs stay TensorFlow-free.

Chain (docs/internals.md, "Layout and import direction"): base modules (``medzoo.errors``,
``fsio``, ``roc``, ``figures``) → ``datasets`` and ``pacs`` beside it → ``zoo`` → ``training`` →
``export`` → ``evaluation`` → ``deploy`` → ``cli``/``demo``. Every ``import`` in every module is
read with ``ast`` — also those inside functions — so a lazy import cannot hide a backward edge.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "medzoo"

# Position of each package in the chain; a module may import only what stands at its position
# or before it. Base modules stand before every package and import none of them.
LAYERS = {"datasets": 1, "pacs": 1, "zoo": 2, "training": 3, "export": 4, "evaluation": 5,
          "deploy": 6, "cli": 7, "commands": 7, "demo": 7, "__main__": 7}
BASE = {"__init__", "errors", "fsio", "roc", "figures"}


def _unit(dotted: str) -> str:
    """Package (or base module) that ``medzoo.<dotted>`` belongs to: its first component."""
    return dotted.split(".")[0] if dotted else "__init__"


def _is_module(dotted: str, root: Path) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _position(unit: str) -> int:
    return 0 if unit in BASE else LAYERS[unit]


def _imports(tree: ast.Module, module: str, root: Path):
    """``(line, target, name)`` for every medzoo import: ``target`` the dotted module under
    ``medzoo`` (``""`` for medzoo itself), ``name`` the imported name or None."""
    package = module.rsplit(".", 1)[0] if "." in module else ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "medzoo" or alias.name.startswith("medzoo."):
                    yield node.lineno, alias.name[len("medzoo."):], None
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = package.split(".") if package else []
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            elif node.module == "medzoo" or (node.module or "").startswith("medzoo."):
                base = node.module[len("medzoo."):] if node.module != "medzoo" else ""
            else:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                if _is_module(sub, root):  # ``from medzoo.x import module``
                    yield node.lineno, sub, None
                else:
                    yield node.lineno, base, alias.name


def _module_aliases(tree: ast.Module, root: Path) -> dict[str, str]:
    """Local names bound to medzoo modules: ``from medzoo.datasets import dicom`` → dicom."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("medzoo"):
            base = node.module[len("medzoo."):] if node.module != "medzoo" else ""
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                if _is_module(sub, root):
                    aliases[alias.asname or alias.name] = sub
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name.startswith("medzoo."):
                    aliases[alias.asname] = alias.name[len("medzoo."):]
    return aliases


def _private(name: str | None) -> bool:
    return bool(name) and name.startswith("_") and not name.startswith("__")


def violations(source: str, module: str, root: Path = ROOT) -> list[str]:
    """What is wrong with the imports of ``medzoo.<module>`` (its text is ``source``)."""
    tree = ast.parse(source)
    here = _unit(module) if "." in module else module
    if here not in BASE and here not in LAYERS:
        return [f"medzoo.{module}: package {here!r} has no place in the chain; add it to "
                "LAYERS in tests/test_imports.py and to docs/internals.md"]
    found = []
    for line, target, name in _imports(tree, module, root):
        there = _unit(target)
        if there not in BASE and there not in LAYERS:
            continue  # reported when that module itself is checked
        shown = f"medzoo.{target}" + (f".{name}" if name else "") if target else f"medzoo.{name}"
        where = f"medzoo.{module} (line {line}) imports {shown}"
        if _position(there) > _position(here):
            found.append(f"{where}: {here} may not import {there}, which stands after it")
        elif there != here and (_private(name) or any(map(_private, target.split(".")))):
            found.append(f"{where}: a private name of {there}")
    for alias, target in _module_aliases(tree, root).items():
        there = _unit(target)
        if there == here:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == alias and _private(node.attr)):
                found.append(f"medzoo.{module} (line {node.lineno}) uses medzoo.{target}."
                             f"{node.attr}: a private name of {there}")
    return found


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        yield dotted.removesuffix(".__init__") if dotted != "__init__" else dotted, path


def test_every_import_runs_one_way_and_avoids_other_packages_private_names():
    found = [v for module, path in _modules() for v in violations(path.read_text(), module)]
    assert not found, "import graph:\n" + "\n".join(found)


@pytest.mark.parametrize("module, source, expected", [
    ("training.fit", "def f():\n    from medzoo.evaluation import metrics\n",
     "medzoo.training.fit (line 2) imports medzoo.evaluation.metrics: training may not import "
     "evaluation, which stands after it"),
    ("export.exporter", "from medzoo.evaluation.evaluate import evaluate\n",
     "medzoo.export.exporter (line 1) imports medzoo.evaluation.evaluate.evaluate: export may not "
     "import evaluation, which stands after it"),
    ("fsio", "import medzoo.datasets.dicom\n",
     "medzoo.fsio (line 1) imports medzoo.datasets.dicom: fsio may not import datasets, which "
     "stands after it"),
    ("pacs.pull", "from medzoo.datasets.dicom import _quiet\n",
     "medzoo.pacs.pull (line 1) imports medzoo.datasets.dicom._quiet: a private name of datasets"),
    ("deploy.predict", "from medzoo.datasets import dicom\nwith dicom._quiet():\n    pass\n",
     "medzoo.deploy.predict (line 2) uses medzoo.datasets.dicom._quiet: a private name of datasets"),
    ("zoo.gan", "from ..training import fit\n",
     "medzoo.zoo.gan (line 1) imports medzoo.training.fit: zoo may not import training, which "
     "stands after it"),
    ("plugins.x", "import os\n",
     "medzoo.plugins.x: package 'plugins' has no place in the chain; add it to LAYERS in "
     "tests/test_imports.py and to docs/internals.md"),
])
def test_the_checker_names_the_module_and_the_import(module, source, expected):
    assert violations(source, module) == [expected]


def test_forward_imports_and_own_private_names_are_allowed():
    source = ("from medzoo import __version__, fsio\nfrom medzoo.datasets import dicom\n"
              "from medzoo.evaluation.metrics import _masks\nfrom medzoo.errors import InputError\n"
              "x = dicom.read_dataset\n")
    assert violations(source, "evaluation.charts") == []
    assert violations("from medzoo.training import fit\n", "evaluation.explain") == []


def test_cli_base_evaluation_and_deploy_modules_import_no_tensorflow():
    """What a deployment box without TensorFlow loads (``--runtime savedmodel`` imports it late)."""
    modules = ["medzoo.cli", "medzoo.roc", "medzoo.figures", "medzoo.evaluation.runtime",
               "medzoo.evaluation.metrics", "medzoo.evaluation.stats", "medzoo.evaluation.charts",
               "medzoo.deploy.predict", "medzoo.deploy.findings", "medzoo.deploy.dicom_seg",
               "medzoo.deploy.send"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120)
    assert out.stdout.strip() == "[]"
