"""The one exception type a user sees: the CLI prints its message as a single line and exits non-zero."""


class SnnexportError(Exception):
    """A problem with the user's input (model, data, options) that we can name in one line."""


class UnsupportedLayerError(SnnexportError):
    """The model holds a layer (or a layer setting) that the converter refuses."""
