"""The writer registry: built-in writers plus any installed under the ``snnexport.writers`` entry point.

The one place a back end is named. Each writer class declares its facts (:class:`.base.Writer`:
``runnable``, ``module``, ``requires``, ``extra``, ``distribution``); ``snnexport validate``, the
listing of ``snnexport writers``, the tests and pyproject's extras (checked by a test) take their
lists of simulators from here.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points

from ..errors import SnnexportError
from .base import Writer

# name → "module:Class" of the built-in writers, in the order validate runs and reports them;
# imported only when asked for, so that `snnexport --to network` never imports a simulator.
BUILTIN = {
    "network": "snnexport.writers.network:NetworkWriter",
    "brian2": "snnexport.writers.brian2:Brian2Writer",
    "pynn": "snnexport.writers.pynn:PyNNWriter",
    "nest": "snnexport.writers.nest:NestWriter",
    "nengo": "snnexport.writers.nengo:NengoWriter",
    "nir": "snnexport.writers.nir:NirWriter",
}


def _targets() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group="snnexport.writers"):
        found.setdefault(ep.name, ep.value)
    return found


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available() -> list[str]:
    """Names of the writers that can be loaded here."""
    return sorted(name for name, target in _targets().items() if _module_exists(target.split(":")[0]))


def get(name: str) -> Writer:
    targets = _targets()
    if name not in targets or not _module_exists(targets[name].split(":")[0]):
        raise SnnexportError(f"unknown writer {name!r}; available: {', '.join(available())}")
    module, cls = targets[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def runnable() -> list[str]:
    """Writers whose output is a script ``snnexport validate`` runs, in registration order.

    A writer that fails to load (a broken plugin) is left out: it cannot run anyway.
    """
    names = []
    for name, target in _targets().items():
        if not _module_exists(target.split(":")[0]):
            continue
        try:
            if get(name).runnable:
                names.append(name)
        except Exception:  # noqa: BLE001 - a plugin's import error must not stop the others
            continue
    return names


def missing_modules(name: str) -> list[str]:
    """The modules a writer's scripts need (its ``requires``) that are not installed here."""
    return [module for module in get(name).requires if not _module_exists(module)]


def install_hint(name: str) -> str:
    """How to install what a writer's scripts need."""
    extra = get(name).extra
    return f"pip install 'snnexport[{extra}]'" if extra else "install its simulator"
