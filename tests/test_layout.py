"""The package's layout keeps its promises: a backend-free core, no module over 400
lines, no module that shadows the standard library, every registry entry provided."""

import ast
import json
import os
import pkgutil
import subprocess
import sys

import pytest

import keras_bilevel.core
from keras_bilevel.core import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_bilevel")
FRAMEWORKS = ("tensorflow", "keras", "tf_keras", "larq", "jax", "torch")
CORE_MODULES = sorted(f"keras_bilevel.core.{m.name}"
                      for m in pkgutil.iter_modules(keras_bilevel.core.__path__))


def _package_files():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def test_the_core_imports_no_framework():
    probe = ("import importlib, json, sys\n"
             f"for name in {CORE_MODULES!r}: importlib.import_module(name)\n"
             f"print(json.dumps(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []
    assert len(CORE_MODULES) >= 10


def test_no_core_module_names_a_framework_in_its_imports():
    for path in _package_files():
        if os.sep + "core" + os.sep not in path:
            continue
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue
            assert not set(roots) & set(FRAMEWORKS), f"{path}:{node.lineno} imports {roots}"


def _module_name(path):
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(path, modules):
    """The package modules `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    found.add(submodule)
                elif node.module in modules:
                    found.add(node.module)
    return found


def test_no_import_cycle():
    paths = {_module_name(p): p for p in _package_files()}
    graph = {name: _module_level_imports(path, paths) - {name}
             for name, path in paths.items()}
    done, on_path = set(), []

    def visit(name):
        if name in on_path:
            cycle = on_path[on_path.index(name):] + [name]
            # A package importing its own submodules, which import siblings, is not a
            # cycle; one that leaves the package and comes back is.
            if not all(m.startswith(cycle[0] + ".") or m == cycle[0] for m in cycle):
                raise AssertionError(" -> ".join(cycle))
            return
        if name in done:
            return
        on_path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        on_path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_no_module_is_over_400_lines():
    long = {os.path.relpath(p, ROOT): n for p in _package_files()
            if (n := len(open(p).read().splitlines())) > 400}
    assert long == {}


def test_no_module_shadows_the_standard_library():
    shadows = {os.path.relpath(p, ROOT) for p in _package_files()
               if os.path.basename(p)[:-3] in sys.stdlib_module_names}
    assert shadows == set()


def test_no_text_cites_an_issue_or_the_private_specification():
    found = []
    for path in _package_files():
        for number, line in enumerate(open(path), 1):
            lowered = line.lower()
            if "shared/adaste-math" in lowered or any(
                    f"issue {d}" in lowered for d in "0123456789"):
                found.append(f"{os.path.relpath(path, ROOT)}:{number}")
    assert found == []


@pytest.mark.parametrize("table", ["DATASETS", "MODELS", "METHODS"])
def test_every_registry_entry_names_known_front_ends(table):
    for name, entry in getattr(registry, table).items():
        assert entry.front_ends and set(entry.front_ends) <= set(registry.FRONT_ENDS), name


def test_the_larq_front_end_provides_every_registered_entry():
    from keras_bilevel.keras2 import data, models, recipes

    assert data.DATASETS == registry.names(registry.DATASETS, front_end="larq")
    for name in registry.names(registry.MODELS, front_end="larq"):
        assert callable(getattr(models, registry.MODELS[name].builder)), name
    assert set(recipes.METHODS) == set(registry.names(registry.METHODS, front_end="larq"))


def test_the_command_line_offers_what_the_registries_declare():
    from keras_bilevel.cli import parser

    assert parser.DATASETS == tuple(registry.DATASETS)
    assert parser.MODELS == tuple(registry.MODELS)
    assert parser.METHODS == tuple(registry.METHODS)


@pytest.mark.parametrize("name", list(registry.DATASETS))
def test_every_data_set_entry_says_how_to_read_and_standardise_it(name):
    entry = registry.DATASETS[name]
    assert entry.source in ("scikit-learn", "tfds", "files")
    assert (entry.tfds_name is not None) == (entry.source == "tfds")
    assert entry.augmentation in (None, "crop-and-flip", "resized-crop")
    if entry.streamed:  # ImageNet's statistics, a crop at evaluation
        assert entry.mean is None and 0 < entry.eval_crop <= 1
        assert entry.augmentation == "resized-crop"
    else:
        assert len(entry.mean) == len(entry.std) in (1, 3) and min(entry.std) > 0
        assert entry.image_size is None and entry.eval_crop is None
