"""The writer registry: built-in writers plus any installed under the ``snnexport.writers`` entry point."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..errors import SnnexportError
from .base import Writer

# name → "module:Class" of the built-in writers; imported only when asked for, so that
# `snnexport --to network` never imports a simulator.
BUILTIN = {
    "network": "snnexport.writers.network:NetworkWriter",
    "brian2": "snnexport.writers.brian2:Brian2Writer",
    "pynn": "snnexport.writers.pynn:PyNNWriter",
    "nest": "snnexport.writers.nest:NestWriter",
    "nengo": "snnexport.writers.nengo:NengoWriter",
}


def _targets() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group="snnexport.writers"):
        found.setdefault(ep.name, ep.value)
    return found


def _module_exists(target: str) -> bool:
    module = target.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available() -> list[str]:
    """Names of the writers that can be loaded here."""
    return sorted(name for name, target in _targets().items() if _module_exists(target))


def get(name: str) -> Writer:
    targets = _targets()
    if name not in targets or not _module_exists(targets[name]):
        raise SnnexportError(f"unknown writer {name!r}; available: {', '.join(available())}")
    module, cls = targets[name].split(":")
    return getattr(importlib.import_module(module), cls)()
