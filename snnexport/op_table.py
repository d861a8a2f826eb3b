"""A table per concern (lowering, op counting, normalization, features) of how it handles each op class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .ops import Op

F = TypeVar("F", bound=Callable)


class OpTable(dict):
    """How one concern (lowering, op counting, normalization, features) handles each op class.

    Entries are added with the decorator ``table.add(Dense, ...)`` (Nengo's ``Builder.register`` is
    the model); tests/test_registries.py checks that each table covers every op class it must.
    """

    def __init__(self, missing: str):
        super().__init__()
        self.missing = missing  # what an op without an entry is, for the message

    def add(self, *classes: type["Op"], make: Callable[[Any], Any] = lambda fn: fn) -> Callable[[F], F]:
        """Decorator: ``make(fn)`` becomes the entry of every class given."""
        def decorate(fn: F) -> F:
            for cls in classes:
                self[cls] = make(fn)
            return fn
        return decorate

    def of(self, op: "Op") -> Any:
        """The entry of ``op``'s class."""
        entry = self.get(type(op))
        if entry is None:
            from .errors import SnnexportError
            raise SnnexportError(f"op {op.kind!r} {self.missing}")
        return entry
