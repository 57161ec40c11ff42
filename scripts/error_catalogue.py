"""Every error message keras_bilevel raises, read from its source, for the Troubleshooting page.

Each `raise SomeError("...")` whose message is written where it is raised (a string or an
f-string) becomes one entry: the exception, the module, and the message with each
interpolated value shown as `‹name›`. Errors re-raised from a message built elsewhere are
listed where that message is written. The messages themselves say what to do; the page
groups them by what the user was doing.

    python scripts/error_catalogue.py          # the markdown, on stdout
"""

import ast
import pathlib
import re
import sys

# (title, the package paths whose errors go under it), first match wins.
AREAS = (
    ("Installing and importing", ("core/stacks", "keras2/legacy_keras", "__init__")),
    ("The command line", ("cli/",)),
    ("Run directories and `--resume`", ("core/run_files",)),
    ("Data sets and image folders", ("core/datasets", "core/image_files", "core/idx_files",
                                     "core/splits", "keras2/data", "keras3/data",
                                     "keras3/streamed", "pipelines/")),
    ("Several workers and devices", ("core/workers", "multi_worker", "keras3/distribution")),
    ("Export", ("export/", "keras3/export", "keras3/_lce", "keras3/plain_model",
                "keras3/subprocess_jobs")),
    ("Quantizers, optimizers, callbacks, models and recipes", ("",)),
)


def _value_name(node):
    """A short name for an interpolated value: `args.dataset` is ‹dataset›."""
    if isinstance(node, ast.Name):
        return node.id.strip("_").lower()
    if isinstance(node, ast.Attribute):
        return node.attr.strip("_").lower()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
            node.func.id not in ("str", "repr", "len", "type", "sorted", "list", "tuple")):
        return node.func.id.strip("_").replace("_", " ")  # install_hint(...): ‹install hint›
    if isinstance(node, (ast.Call, ast.Subscript)):
        inner = node.args[0] if isinstance(node, ast.Call) and node.args else getattr(
            node, "value", None)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                node.func.attr != "join"):
            inner = node.func.value
        if inner is not None:
            return _value_name(inner)
    return "…"


def _text(node, known=None):
    """The message of a string or f-string node, values shown as ‹expression›; else None.

    `known` resolves what the message is built from elsewhere: module-level string
    constants (also `CONSTANT.format(...)`) and functions named `*_message`.
    """
    known = known or {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append(f"‹{_value_name(value.value)}›")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, known), _text(node.right, known)
        if left is not None and right is not None:
            return left + right
    if isinstance(node, ast.Name):
        return known.get(node.id)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "format" and isinstance(
                func.value, ast.Name) and func.value.id in known:
            return _PLACEHOLDER.sub(lambda match: f"‹{match.group(1)}›", known[func.value.id])
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name.endswith("_message"):
            return known.get(name + "()")
    return None


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _known_texts(trees):
    """{constant name: text} per module, and {`name()`: text} of every `*_message` function."""
    functions, constants = {}, {}
    for module, tree in trees.items():
        constants[module] = {}
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)):
                text = _text(node.value)
                if text is not None:
                    constants[module][node.targets[0].id] = text
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_message"):
                returned = [_text(child.value, constants[module]) for child in ast.walk(node)
                            if isinstance(child, ast.Return) and child.value is not None]
                returned = [text for text in returned if text]
                if returned:
                    functions[node.name + "()"] = returned[-1]
    return {module: {**functions, **names} for module, names in constants.items()}


def messages(package_dir):
    """[(module path, exception name, message)] for every message the package raises."""
    package_dir = pathlib.Path(package_dir)
    trees = {path.relative_to(package_dir).with_suffix("").as_posix():
             ast.parse(path.read_text(encoding="utf-8"))
             for path in sorted(package_dir.rglob("*.py"))}
    known = _known_texts(trees)
    found = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                    and node.exc.args):
                continue
            message = _text(node.exc.args[0], known[module])
            if message is None or not message.strip():
                continue
            name = ast.unparse(node.exc.func).rsplit(".", 1)[-1]
            found.append((node.lineno, module, name, " ".join(message.split())))
    found.sort(key=lambda entry: (entry[1], entry[0]))
    unique = []
    for entry in found:
        if entry[1:] not in unique:
            unique.append(entry[1:])
    return unique


def area_of(module):
    return next(title for title, prefixes in AREAS
                if any(module.startswith(prefix) for prefix in prefixes))


def _escaped(message):
    """Markdown-safe text; spans in backticks stay code."""
    pieces = message.split("`")
    for index in range(0, len(pieces), 2):
        for char in "\\*_<[|":
            pieces[index] = pieces[index].replace(char, "\\" + char)
    return "`".join(pieces) if len(pieces) % 2 else "\\`".join(pieces)


def markdown(package_dir):
    entries = messages(package_dir)
    lines = []
    for title, _ in AREAS:
        here = [entry for entry in entries if area_of(entry[0]) == title]
        if not here:
            continue
        lines += [f"### {title}", ""]
        lines += [f"- **{name}** (`keras_bilevel/{module}.py`): {_escaped(message)}"
                  for module, name, message in here]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    root = pathlib.Path(__file__).resolve().parent.parent
    sys.stdout.write(markdown(root / "keras_bilevel"))
