"""The exception types a user sees: the CLI prints their message as a single line and exits non-zero."""

from __future__ import annotations

import contextlib
from typing import Iterator


class SnnexportError(Exception):
    """A problem with the user's input (model, data, options) that we can name in one line."""


class UnsupportedLayerError(SnnexportError):
    """The model holds a layer (or a layer setting) that the converter refuses."""


class FeatureRefused(SnnexportError):
    """A writer cannot express a feature (or a combination of features) the network needs.

    ``writer`` is the writer's name, ``feature`` a name from ``snnexport.writers.base.FEATURES`` or,
    for a combination, those names joined by " + ". Callers tell a refusal from a failure by this type.
    """

    def __init__(self, writer: str, feature: str, message: str) -> None:
        super().__init__(message)
        self.writer = writer
        self.feature = feature


@contextlib.contextmanager
def user_errors(*types: type[Exception]) -> Iterator[None]:
    """Exceptions of ``types`` (default ValueError) as SnnexportError with the same one-line message.

    For code that must not import this module, e.g. the runtime embedded verbatim in every exported
    script, which reports bad input as a ValueError.
    """
    try:
        yield
    except types or (ValueError,) as e:
        raise SnnexportError(str(e)) from None
