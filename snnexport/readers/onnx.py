"""Read an ONNX model (.onnx) into an ANN :class:`~snnexport.graph.Graph`: the way in for PyTorch.

    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), "model.onnx")
    snnexport model.onnx --calibration x.npz --to brian2 -o net.py

Safety: an ONNX file is a protobuf and reading it runs no code; nothing in it is ever executed,
and no operator is run but the few constant folders of :mod:`~snnexport.readers.onnx_fold`.

The reader in steps, one module each: :mod:`~snnexport.readers.onnx_check` parses the file and
checks the whole model (sizes, domains, operators, external data) before anything is converted;
models older than opset 11 are brought to it by ``onnx.version_converter`` (here);
:mod:`~snnexport.readers.onnx_convert` walks the nodes, folding constant subgraphs and calling
the handlers of :mod:`~snnexport.readers.onnx_ops` (operators that compute) and
:mod:`~snnexport.readers.onnx_shape` (operators that move elements).

Layout: ONNX tensors are NCHW (NCL for 1-D) with (O, I/group, kH, kW) kernels; the graph is
channels-last (``ops.py``). The conversion happens once, in the handlers; how a flattened
convolution output keeps its NCHW order until the next Gemm/MatMul folds it into its weights is
told in :mod:`~snnexport.readers.onnx_layout`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import SnnexportError, UnsupportedLayerError
from ..graph import Graph
from .keras_config import first_line
from .onnx_check import ACCEPTED_EXTENSIONS, MIN_OPSET, SUPPORTED_OPS, check_model, load, onnx_module, opset_of

__all__ = ["read_model", "SUPPORTED_OPS", "ACCEPTED_EXTENSIONS"]

MAX_PRODUCER = 100  # characters of the file's producer name and version kept in the provenance


def read_model(path: str | os.PathLike[str]) -> Graph:
    """Read an ONNX model into a Graph, refusing (one line) anything we cannot convert exactly."""
    p = Path(path)
    model = load(p)
    check_model(model, p)
    opset = opset_of(model, p)
    from onnx import defs
    newest = defs.onnx_opset_version()
    if opset > newest:
        raise UnsupportedLayerError(f"{p}: the model uses ONNX opset {opset}, newer than the {newest} "
                                    "this onnx package knows; upgrade onnx")
    producer = _producer(model, opset)
    if opset < MIN_OPSET:
        model, opset = _upgrade(model, p, opset)
    from .onnx_convert import Converter
    try:
        graph = Converter(model, p, opset).run()
        graph.producer = producer
        return graph
    except SnnexportError:
        raise
    except Exception as e:  # a model shape we did not foresee: still one line, never a traceback
        raise SnnexportError(f"{p}: cannot convert the model: {type(e).__name__}: {first_line(e)} "
                             "(please report this)") from None


def _upgrade(model: Any, path: Path, opset: int) -> tuple[Any, int]:
    """An opset < 11 model converted to opset 11 by onnx.version_converter (it rewrites attributes to inputs)."""
    onnx_module()
    from onnx import version_converter
    try:
        converted = version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:
        raise UnsupportedLayerError(f"{path}: the model uses ONNX opset {opset}, and onnx could not "
                                    f"convert it to opset {MIN_OPSET} ({first_line(e)})") from None
    return converted, opset_of(converted, path)


def _producer(model: Any, opset: int) -> str:
    """What the file says wrote it, and its opset: "pytorch 2.9.0, opset 18" (the file's text, shortened)."""
    tool = " ".join(t for t in (model.producer_name, model.producer_version) if t)[:MAX_PRODUCER]
    return f"{tool or 'producer not named'}, opset {opset}"
