"""A Griffe extension for the API reference: objects whose docstring is written once, in the core.

The front ends bind what the backend-free core writes once, and their objects carry the
core's docstring at run time:

    class AnnealMu(_callbacks.AnnealMu, _Callback):
        __doc__ = _callbacks.AnnealMu.__doc__

    adaste_reference = bind(_LARQ, _recipes.adaste_reference, __name__)

Griffe reads the source without importing it, so it sees no docstring there. This
extension gives such a class the docstring of the object its `__doc__` names, and such a
binding the docstring of the function it binds, so the reference shows what `help()`
shows. Used by `mkdocs.yml` only.
"""

import ast

import griffe


def _dotted(node):
    """`a.b.c` of a Name/Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _source_of(module, dotted):
    """The full path of `dotted` as imported in `module`
    (`_callbacks.X` -> `keras_bilevel.core.callbacks.X`)."""
    head, _, rest = dotted.partition(".")
    target = module.imports.get(head)
    if target is None:
        return None
    return f"{target}.{rest}" if rest else target


class SharedDocstrings(griffe.Extension):
    def __init__(self):
        self._pending = []  # (object, module, the dotted name whose docstring it takes)

    def on_class_instance(self, *, node, cls, **kwargs):
        for statement in node.body:
            if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and _dotted(statement.targets[0]) == "__doc__"):
                dotted = _dotted(statement.value)
                if dotted and dotted.endswith(".__doc__") and cls.docstring is None:
                    self._pending.append((cls, cls.module, dotted[: -len(".__doc__")]))

    def on_attribute_instance(self, *, node, attr, **kwargs):
        value = getattr(node, "value", None)
        if (isinstance(value, ast.Call) and _dotted(value.func) == "bind"
                and len(value.args) >= 2 and attr.docstring is None):
            dotted = _dotted(value.args[1])
            if dotted:
                self._pending.append((attr, attr.module, dotted))

    def on_package(self, *, pkg, **kwargs):
        for obj, module, dotted in self._pending:
            path = _source_of(module, dotted)
            if path is None:
                continue
            try:
                source = module.modules_collection.get_member(path)
            except (KeyError, ValueError, AttributeError):
                continue
            if source is not None and source.docstring is not None:
                obj.docstring = griffe.Docstring(source.docstring.value, parent=obj)
        self._pending.clear()
