"""A model or a network file, with the conversion options, as a :class:`~snnexport.network.Network`.

What every command reads first: a network file (.snn) is loaded as it is (only the settings an option
names change); a model (Keras, ONNX) is read, normalized with the calibration data and converted,
with its provenance (file name, sha256, format, producer, Keras and snnexport versions) recorded in
the network.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .errors import SnnexportError
from .network import Network
from .options import CONVERSION_ONLY, NEURON_SETTINGS, SETTINGS


def is_network(model: str) -> bool:
    """Whether ``model`` names a network file (by its suffix, or by its content when it exists)."""
    from .network import is_network_file
    return Path(model).suffix.lower() == ".snn" or (Path(model).is_file() and is_network_file(model))


def is_nir(model: str) -> bool:
    """Whether ``model`` names a NIR graph (``.nir``): a spiking network already, read without conversion."""
    return Path(model).suffix.lower() == ".nir"


def check_model_options(model: str, args: argparse.Namespace) -> None:
    """Refuse conversion options given with a network file: they would be silently ignored."""
    if not (is_network(model) or is_nir(model)):
        return
    given = [f"--{k.replace('_', '-')}" for k in CONVERSION_ONLY if getattr(args, k, None) is not None]
    if given:
        what = "a NIR graph, a spiking network" if is_nir(model) else "a network file, converted"
        raise SnnexportError(f"{model} is {what} already: {', '.join(given)} "
                             f"{'applies' if len(given) == 1 else 'apply'} only to a model "
                             "(--readout, --steps, --clamp, --v-init and --threshold-rule may still be given)")


def option(args: argparse.Namespace, name: str) -> Any:
    """The value of a conversion option or setting: as given, else its default."""
    value = getattr(args, name, None)
    return {**CONVERSION_ONLY, **SETTINGS}[name] if value is None else value


def load_network(model: str, args: argparse.Namespace, quiet: bool = False) -> Network:
    """A Network from a network file, or converted from a model with the conversion options."""
    path = Path(model)
    if not path.exists():
        raise SnnexportError(f"{model}: no such file")
    if path.is_dir():
        raise SnnexportError(f"{model}: is a directory, not a model file")
    check_model_options(model, args)
    if is_network(model) or is_nir(model):
        if is_nir(model):
            from .readers.nir import read_network
            net = read_network(path)
            net.provenance.model_sha256 = sha256_file(path)
        else:
            net = Network.load(path)
        for name in SETTINGS:  # only what was asked for; the rest stays as the file says
            if getattr(args, name, None) is not None:
                setattr(net.settings, name, getattr(args, name))
        for name in NEURON_SETTINGS:
            if getattr(args, name, None) is not None:
                setattr(net.neuron, name, getattr(args, name))
        return net
    net = _convert(path, model, args, quiet)
    for name in NEURON_SETTINGS:  # not given: what the converter chose (the defaults; v_init 0.5 for QuantizedReLU)
        value = getattr(args, name, None)
        if value is not None:
            setattr(net.neuron, name, value)
    return net


def _convert(path: Path, model: str, args: argparse.Namespace, quiet: bool) -> Network:
    from . import data
    from .convert import convert
    from .network import Provenance
    from .readers import READERS, read_model
    graph = read_model(path)
    calib, sha = None, ""
    if args.calibration:
        progress(f"loading calibration data {args.calibration}", quiet)
        calib, _ = data.load_samples(args.calibration, graph.input_shape, "calibration data", True,
                                     args.input_scale, limit=option(args, "calibration_samples"))
        sha = data.sha256_of(calib)
    progress(f"converting {path.name}", quiet)
    fmt = READERS[path.suffix.lower()]
    prov = Provenance(path.name, sha256_file(path), _keras_version() if fmt == "keras" else "", __version__,
                      fmt, graph.producer)
    try:
        net = convert(graph, calib, option(args, "percentile"), option(args, "reset"), option(args, "encoding"),
                      prov, sha, consume=True)
    except SnnexportError as e:  # the converter names the layer; the user also needs the file
        raise type(e)(f"{model}: {e}") from None
    del graph
    s = net.settings
    s.readout, s.steps, s.clamp = option(args, "readout"), option(args, "steps"), option(args, "clamp")
    return net


def _keras_version() -> str:
    import keras
    return keras.__version__


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in blocks (a model can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            h.update(block)
    return h.hexdigest()


def progress(message: str, quiet: bool = False) -> None:
    """A progress line on standard error (the product goes to standard output)."""
    if not quiet:
        print(f"snnexport: {message}", file=sys.stderr)
