"""Notebook helpers: show library code in the chapter that explains it (one home per function)."""
from __future__ import annotations

import inspect
import textwrap

from IPython.display import Markdown


def show_source(*objects: object) -> Markdown:
    """The source of functions, classes or modules as one highlighted Python block."""
    code = "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)
    return Markdown(f"```python\n{code}\n```")


def show_lines(obj: object, first: str, last: str | None = None) -> Markdown:
    """The lines of `obj`'s source from the first line containing `first` to the next line
    containing `last` (or just that one line): the code one paragraph of a chapter explains.

    Raises ValueError if a marker is missing, so a chapter fails loudly when the code it quotes
    changes.
    """
    lines = inspect.getsource(obj).splitlines()
    start = next((i for i, line in enumerate(lines) if first in line), None)
    if start is None:
        raise ValueError(f"no line of {obj.__qualname__} contains {first!r}")
    end = start
    if last is not None:
        end = next((i for i in range(start, len(lines)) if last in lines[i]), None)
        if end is None:
            raise ValueError(f"no line of {obj.__qualname__} after {first!r} contains {last!r}")
    code = textwrap.dedent("\n".join(lines[start:end + 1]))
    return Markdown(f"```python\n{code}\n```")


def cython_source(path: str, *names: str) -> str:
    """The top-level functions `names` of a .pyx file, each up to the next top-level statement."""
    lines = open(path, encoding="utf-8").read().splitlines()
    blocks = []
    for name in names:
        start = next(i for i, line in enumerate(lines)
                     if line.startswith(("cdef ", "def ", "cpdef ")) and f" {name}(" in line)
        end = start + 1
        while end < len(lines) and (not lines[end] or lines[end][0] in " #)"):
            end += 1
        while lines[end - 1].strip() == "" or lines[end - 1].startswith("#"):
            end -= 1
        blocks.append("\n".join(lines[start:end]))
    return "\n\n\n".join(blocks)


def show_cython(path: str, *names: str) -> Markdown:
    """Functions of a Cython file (fastops/*.pyx) as one highlighted block: the compiled
    kernels have no Python source for `show_source` to find."""
    return Markdown(f"```cython\n{cython_source(path, *names)}\n```")
