"""Run files written in Python (`configs/*.py`, `configs/sweeps/*.py`): import one, call its factory, check the type.

Every failure is one `ConfigError` that names the file as the user passed it (`label`) and says what to do.
"""

from __future__ import annotations

import importlib.util
import pathlib
from typing import Any

from swapjax.errors import ConfigError


def call_factory(path: str | pathlib.Path, factory: str, expected: type, *, label: str, missing_hint: str,
                 syntax_hint: str = "") -> Any:
    """Imports the file `path` as a module and returns `factory()`, an instance of `expected`.

    `label` names the input in messages (e.g. "config file" or "--sweep"); `missing_hint` ends the message of a
    file that does not exist, `syntax_hint` that of a file that is not valid Python."""
    path = pathlib.Path(path)
    where = f"{label} {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist: {missing_hint}")
    spec = importlib.util.spec_from_file_location(f"swapjax_{factory}_{path.stem}", path)
    if spec is None:  # not a .py file
        raise ConfigError(f"{where} is not a Python file: {missing_hint}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ConfigError(f"{where} is not valid Python (line {err.lineno}: {err.msg}){syntax_hint}") from None
    kind = f"{expected.__module__}.{expected.__qualname__}"
    if not hasattr(module, factory):
        raise ConfigError(f"{where} has no {factory}(): define one returning {kind}")
    made = getattr(module, factory)()
    if not isinstance(made, expected):
        raise ConfigError(f"{where}: {factory}() returned {type(made).__name__}, not {kind}")
    return made
