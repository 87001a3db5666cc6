"""The hash of what a Python source file *means*, not of its bytes.

:func:`meaning_hash` parses the file and hashes its syntax tree with every docstring removed, so
comments, blank lines, formatting and docstrings do not count; a changed statement, name,
constant, default or import does. The tree's printed form is Python's ``ast.dump``, which can
differ between Python minor versions: a run made under another Python counts as other code.
"""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

_WITH_BODY = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def strip_docstrings(tree: ast.AST) -> ast.AST:
    """Remove the docstring (a first statement that is a string literal) of the module and of
    every class and function, in place."""
    for node in ast.walk(tree):
        if isinstance(node, _WITH_BODY) and node.body and _is_docstring(node.body[0]):
            node.body = node.body[1:]
    return tree


def meaning(source: str, filename: str = "<source>") -> str:
    """The canonical text of ``source``'s syntax tree without docstrings."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as err:
        raise SyntaxError(f"{filename}: cannot parse to hash it: {err}") from None
    return ast.dump(strip_docstrings(tree), annotate_fields=True, include_attributes=False)


def meaning_hash(path: str | os.PathLike) -> str:
    """sha256 of :func:`meaning` of the file at ``path``."""
    path = Path(path)
    return hashlib.sha256(meaning(path.read_text(encoding="utf-8"), str(path)).encode()).hexdigest()
