"""Model readers: a trained network file → an ANN :class:`~snnexport.graph.Graph`.

One module per format (its helpers beside it: keras.py uses keras_config.py and keras_graph.py).
Each reader refuses what it cannot convert with one line and never runs code that a model file
brings. :func:`read_model` picks the reader from the file name.
"""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path

from ..errors import SnnexportError
from ..graph import Graph

# file extension → the reader module (imported only when such a file is read)
READERS: dict[str, str] = {
    ".h5": "keras", ".hdf5": "keras", ".keras": "keras",
    ".onnx": "onnx",
}


def file_size(path: Path) -> int:
    """The size of a model file, or a one-line error: missing, a directory, unreadable."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SnnexportError(f"{path}: no such file") from None
    except OSError as e:
        raise SnnexportError(f"{path}: cannot read file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SnnexportError(f"{path}: is a directory, not a model file")
    return st.st_size


def read_model(path: str | os.PathLike[str]) -> Graph:
    """The ANN graph of a model file, read by the reader its extension names."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in READERS:
        raise SnnexportError(f"{p}: unknown model file extension {ext or '(none)'!r}; "
                             f"accepted: {', '.join(sorted(READERS))} (or a network file written by --to network, "
                             "or a NIR graph .nir)")
    module = importlib.import_module(f"{__name__}.{READERS[ext]}")
    return module.read_model(p)
