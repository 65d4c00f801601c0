"""Show a library object's source in a chapter, highlighted, from its single definition.

The chapters show the code a student must understand (the network, the loss, the transform,
the post-processing) right after the paper's description of it, without copying it into the
notebook: :func:`show_source` renders the source of classes and functions of
:mod:`lessons_lib` as a Markdown code block, which JupyterLab and the book both highlight.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable

from IPython.display import Markdown


def source_of(obj: type | Callable, docstring: bool = False) -> str:
    """The source of a class or function, dedented, without its docstring by default.

    Args:
        obj: A class, function or method.
        docstring: Keep the docstrings (of the object and of the methods of a class).

    Returns:
        The source text.

    Raises:
        TypeError: ``obj`` has no Python source (a builtin, an instance).
    """
    try:
        text = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError) as err:
        raise TypeError(f"no source for {obj!r}: pass a class or a function ({err})") from None
    if docstring:
        return text
    lines = text.splitlines()
    cut: list[tuple[int, int]] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if is_doc and isinstance(first.value.value, str) and len(node.body) > 1:
                cut.append((first.lineno - 1, first.end_lineno))
    for start, end in sorted(cut, reverse=True):
        del lines[start:end]
    return "\n".join(lines) + "\n"


def show_source(*objects: type | Callable, docstring: bool = False) -> Markdown:
    """Display the source of ``objects`` as one highlighted Python block.

    Args:
        *objects: Classes and functions, shown in the order given.
        docstring: Keep their docstrings (off by default: the chapter's prose explains them).

    Returns:
        An IPython ``Markdown`` object; the last expression of a cell displays it.
    """
    if not objects:
        raise TypeError("show_source needs at least one class or function")
    body = "\n\n".join(source_of(obj, docstring).rstrip() for obj in objects)
    where = sorted({f"`{obj.__module__}`" for obj in objects})
    return Markdown(f"```python\n{body}\n```\n\n<small>Source: {', '.join(where)}</small>")
