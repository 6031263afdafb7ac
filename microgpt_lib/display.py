"""Notebook helpers: show library code in the chapter that explains it (one home per function)."""
from __future__ import annotations

import inspect

from IPython.display import Markdown


def show_source(*objects: object) -> Markdown:
    """The source of functions, classes or modules as one highlighted Python block."""
    code = "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)
    return Markdown(f"```python\n{code}\n```")
