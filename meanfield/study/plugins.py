"""User code: plugin files and packages that register experiments, distributions, models, ...

A plugin is a ``.py`` file or an importable module that calls the public ``register_*`` functions
when imported (``meanfield.register_experiment``, ``meanfield.data.register_distribution``,
``meanfield.register_activation``, ...). It is found through ``--plugin PATH_OR_MODULE``
(repeatable, on every subcommand) or the entry-point group ``meanfield.plugins`` of an installed
package, and is then indistinguishable from a built-in: sweeps hand the same plugin list to their
local worker processes and Dask workers, which load it before computing a point.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

__all__ = ["load_plugins", "load_entry_points", "resolve_plugin_specs", "loaded_plugins"]

ENTRY_POINT_GROUP = "meanfield.plugins"
_LOADED: dict[str, str] = {}   # spec (absolute path or module name) -> module name
_ENTRY_POINTS_DONE = False


def resolve_plugin_specs(specs: Iterable[str]) -> list[str]:
    """Plugin specs made absolute (files) so that worker processes find the same ones.

    Raises:
        ValueError: a spec that is neither an existing ``.py`` file nor a module name.
    """
    out = []
    for s in specs or ():
        if not isinstance(s, str) or not s.strip():
            raise ValueError(f"--plugin expects a .py file or a module name, got {s!r}")
        p = Path(s).expanduser()
        if s.endswith(".py") or p.exists():
            if not p.is_file() or p.suffix != ".py":
                raise ValueError(f"--plugin {s}: no such .py file")
            out.append(str(p.resolve()))
        else:
            if not all(part.isidentifier() for part in s.split(".")):
                raise ValueError(f"--plugin {s!r} is neither an existing .py file nor a module name")
            out.append(s)
    return out


def load_plugins(specs: Iterable[str]) -> list[str]:
    """Import every plugin once per process (later calls with the same spec do nothing).

    Returns:
        the module names imported by this call.

    Raises:
        ValueError: a missing file or module, or an error raised while importing it (named).
    """
    done = []
    for spec in resolve_plugin_specs(specs):
        if spec in _LOADED:
            continue
        if spec.endswith(".py"):
            path = Path(spec)
            name = f"meanfield_plugin_{path.stem}_{hashlib.sha1(spec.encode()).hexdigest()[:8]}"
            mspec = importlib.util.spec_from_file_location(name, path)
            if mspec is None or mspec.loader is None:
                raise ValueError(f"--plugin {spec}: cannot be imported as a Python file")
            mod = importlib.util.module_from_spec(mspec)
            sys.modules[name] = mod
            try:
                mspec.loader.exec_module(mod)
            except Exception as e:  # noqa: BLE001 - the user's code: say where it failed
                sys.modules.pop(name, None)
                raise ValueError(f"plugin {spec} failed while loading: {type(e).__name__}: {e}") from e
        else:
            name = spec
            try:
                importlib.import_module(spec)
            except ImportError as e:
                raise ValueError(f"--plugin {spec}: module not found ({e})") from None
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"plugin {spec} failed while loading: {type(e).__name__}: {e}") from e
        _LOADED[spec] = name
        done.append(name)
    return done


def load_entry_points() -> list[str]:
    """Load the installed packages' ``meanfield.plugins`` entry points (once per process).

    An entry point names a module (imported) or a callable (imported and called with no
    arguments).
    """
    global _ENTRY_POINTS_DONE
    if _ENTRY_POINTS_DONE:
        return []
    _ENTRY_POINTS_DONE = True
    names = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"plugin entry point {ep.name} ({ep.value}) failed: "
                             f"{type(e).__name__}: {e}") from e
        names.append(ep.name)
    return names


def loaded_plugins() -> list[str]:
    """The plugin specs loaded in this process (to hand to worker processes)."""
    return list(_LOADED)
