"""What a writer is: a named renderer of a Network into files, with a capability table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from ..network import Network
from ..ops import (Activation, Add, Affine, AvgPool, Concat, Conv2D, ConvTranspose, Dense, Embed, MaxPool, Op,
                   Pad, Reshape, Scale, Transpose)
from ..op_table import OpTable

NATIVE, APPROXIMATED, REFUSED = "native", "approximated", "refused"

# The features a writer declares, in the order `--capabilities` prints them.
FEATURES = (
    "reset_subtract", "reset_zero", "analog_input", "poisson_input", "bias", "delay_step",
    "conv2d", "depthwise_conv", "conv_transpose", "dense", "avgpool", "padding", "permute", "concatenate", "add",
    "maxpool_gate", "readout_count", "readout_membrane", "readout_softmax", "clamp", "negative_spikes",
    "v_init", "threshold_gt",
)


@dataclass
class WriteOptions:
    output: Path | None = None  # where the main file goes; None: standard output
    samples: np.ndarray | None = None  # bundled default inputs (N, *input_shape) float32
    labels: np.ndarray | None = None  # their labels, or None
    embed_limit: int = 8 * 2 ** 20  # compressed bytes of weights embedded in a script at most
    extra: dict[str, object] = field(default_factory=dict)  # writer-specific options


@dataclass
class Rendered:
    main: bytes | Callable[[BinaryIO], None]  # the content, or a function that streams it into a file
    beside: dict[str, bytes] = field(default_factory=dict)  # file name → content, next to the main file

    def writes(self, output: Path) -> dict[Path, Callable[[BinaryIO], None]]:
        """Every file, the main one at ``output``, as {path: write(fileobj)} for
        :func:`snnexport.scriptlib.outputs.write_outputs` (which writes all of them or none)."""
        def put(content: bytes | Callable[[BinaryIO], None]) -> Callable[[BinaryIO], None]:
            return content if callable(content) else (lambda f: f.write(content))
        return {output: put(self.main), **{output.parent / name: put(data) for name, data in self.beside.items()}}


class Writer:
    """Subclasses set the class attributes and implement :meth:`render`.

    The facts (``runnable`` … ``distribution``) are the one place a back end's simulator is named:
    the registry (:mod:`snnexport.writers`) derives from them what ``snnexport validate`` runs, what
    it reports as not installed and how to install it; a test checks them against pyproject's extras.
    """
    name: str = ""
    summary: str = ""
    suffix: str = ".py"
    binary: bool = False  # binary output is never written to a terminal
    capabilities: dict[str, tuple[str, str]] = {}  # feature → (native|approximated|refused, how)
    # facts
    runnable: bool = False  # its output is a script `snnexport validate` runs (--input, --out, the results file)
    module: str = ""  # the simulator module the script imports, e.g. "brian2"
    requires: tuple[str, ...] = ()  # every module needed to run the script
    extra: str = ""  # the pip extra of snnexport that installs them
    distribution: str = ""  # the distribution whose version the script's header and validate report
    mpi: bool = False  # its script runs under mpirun -np N (one simulation spread over N processes)

    def render(self, net: Network, options: WriteOptions) -> Rendered:
        raise NotImplementedError

    def check(self, net: Network) -> list[str]:
        """Approximations this network needs from this writer (they go to the header and stderr).

        Raises FeatureRefused for a feature it refuses, SnnexportError for a network that breaks the
        schema (``network_check``): a writer renders only networks every simulator can run.
        """
        from ..errors import FeatureRefused
        from ..network import check_network
        check_network(net)
        notes = []
        for feature in features_used(net):
            status, how = self.capabilities.get(feature, (REFUSED, "not implemented"))
            if status == REFUSED:
                raise FeatureRefused(self.name, feature,
                                     f"the {self.name} writer cannot express {feature.replace('_', ' ')}: {how}")
            if status == APPROXIMATED:
                notes.append(f"{feature.replace('_', ' ')}: {how}")
        return notes


def features_used(net: Network) -> list[str]:
    """The FEATURES a network needs, with its default settings."""
    from ..network import Gate
    used = {f"reset_{net.neuron.reset}", f"{net.input.encoding}_input", "delay_step",
            f"readout_{net.settings.readout}"}
    if any(np.any(p.bias != 0) for p in net.populations):
        used.add("bias")
    if any(isinstance(n, Gate) for n in net.nodes):
        used.add("maxpool_gate")
    if net.settings.clamp:
        used.add("clamp")
    if any(p.activation == "sign" for p in net.populations):
        used.add("negative_spikes")
    if net.neuron.v_init:
        used.add("v_init")
    if net.neuron.threshold_rule == "gt":
        used.add("threshold_gt")
    targets: dict[str, int] = {}
    for proj in net.projections:
        targets[proj.target] = targets.get(proj.target, 0) + 1
        for op in proj.ops:
            used.update(op_features(op))
    if any(n > 1 for n in targets.values()):
        used.add("add")
    return [f for f in FEATURES if f in used]


# --- the FEATURES each op class needs, registered with ``needs`` (every op: tests/test_registries.py) ---

OP_FEATURES = OpTable("has no feature entry")
needs = OP_FEATURES.add  # @needs(Dense, ...): the decorated f(op) -> set of FEATURES


def op_features(op: Op) -> set[str]:
    """The FEATURES one op needs wherever it sits."""
    return OP_FEATURES.of(op)(op)


def _padded(op: Conv2D | AvgPool) -> set[str]:
    return {"padding"} if op.padding != ((0, 0), (0, 0)) else set()


@needs(Conv2D)
def _conv2d(op: Conv2D) -> set[str]:
    return {"depthwise_conv" if op.groups > 1 else "conv2d"} | _padded(op)


@needs(ConvTranspose)
def _conv_transpose(op: ConvTranspose) -> set[str]:
    return {"conv_transpose"}  # also nearest upsampling and cropping


@needs(Transpose)
def _transpose(op: Transpose) -> set[str]:
    return {"permute"}


@needs(AvgPool)
def _avgpool(op: AvgPool) -> set[str]:
    return {"avgpool"} | _padded(op)


@needs(Dense)
def _dense(op: Dense) -> set[str]:
    return {"dense"}


@needs(Pad)
def _pad(op: Pad) -> set[str]:
    return {"padding"}


@needs(Embed, Concat)
def _concatenate(op: Op) -> set[str]:
    return {"concatenate"}


@needs(Add)
def _add(op: Add) -> set[str]:
    return {"add"}  # in a network: two projections into one population


@needs(MaxPool)
def _maxpool(op: MaxPool) -> set[str]:
    return {"maxpool_gate"}  # in a network: a Gate node


@needs(Reshape, Affine, Scale, Activation)
def _nothing(op: Op) -> set[str]:
    return set()  # element moves and per-channel or global factors; an Activation is a population
