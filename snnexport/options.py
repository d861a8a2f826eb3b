"""Command-line options shared by ``snnexport`` and ``snnexport validate``: the parser with one-line
errors, range-checked number types, and the conversion options with their defaults."""

from __future__ import annotations

import argparse
import math
import re
from typing import Callable

from .errors import SnnexportError

MAX_STEPS = 2 ** 24 - 1  # spike counts stay exact float32 integers below 2**24
MAX_SEED = 2 ** 32 - 1

# Options of the conversion itself: a network file (.snn) is converted already, so they are refused
# with one. Defaults here, not in argparse, so that an explicit value can be told from none.
CONVERSION_ONLY = {"calibration": None, "calibration_samples": 1000, "percentile": 99.9, "reset": "subtract",
                   "encoding": "analog"}
# Settings a network file holds and an option may change (default: the file's; for a model: these).
SETTINGS = {"readout": "count", "steps": 100, "clamp": 0}
# The neuron's settings that an option may change, for a model or a network file alike (docs/semantics.md).
NEURON_SETTINGS = {"v_init": 0.0, "threshold_rule": "ge"}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a usage problem is a SnnexportError like any other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        m = re.match(r"argument ([^:]+): (.*)$", message, re.S)
        if m and any(m.group(2).startswith(name) for name in m.group(1).split("/")):
            message = m.group(2)  # our type checks name the option themselves
        raise SnnexportError(f"{message} (see `{self.prog} --help`)")


def int_range(name: str, lo: int, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi] (no upper bound when hi is None); errors name the option."""
    rule = f"at least {lo}" if hi is None else f"from {lo} to {hi}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer ({rule}), got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{name} must be {rule}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number_range(name: str, lo: float, hi: float | None = None, lo_open: bool = True) -> Callable[[str], float]:
    """argparse type: a finite number above ``lo`` (or from it, when not lo_open), at most ``hi``."""
    if hi is None:
        rule = f"a finite number {'>' if lo_open else '≥'} {lo:g}"
    else:
        rule = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {rule}, got {text!r}") from None
        if not (math.isfinite(value) and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)):
            raise argparse.ArgumentTypeError(f"{name} must be {rule}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def fraction(name: str) -> Callable[[str], float]:
    """argparse type: a number in [0, 1); errors name the option."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number in [0, 1), got {text!r}") from None
        if not 0 <= value < 1:  # NaN fails too
            raise argparse.ArgumentTypeError(f"{name} must be a number in [0, 1), got {text}")
        return value

    parse.__name__ = "number"
    return parse


def add_decision_options(p: argparse.ArgumentParser) -> None:
    """``--early-decision`` and ``--decision-margin``, as ``snnexport simulate`` and ``validate`` take them
    (the rule: docs/semantics.md, "Early decision")."""
    p.add_argument("--early-decision", action="store_true",
                   help="decide each sample's class at the first step no other class can still catch up "
                        "(the results record the step; operations are counted to it)")
    p.add_argument("--decision-margin", type=int_range("--decision-margin", 1), metavar="M",
                   help="decide at the first step the leading class is M spikes ahead (or cannot be caught up)")


def add_conversion_options(p: argparse.ArgumentParser) -> None:
    """The options :func:`snnexport.loading.load_network` reads (defaults in CONVERSION_ONLY and SETTINGS)."""
    g = p.add_argument_group("conversion (a model only; refused with a network file)")
    g.add_argument("--calibration", metavar="FILE",
                   help="inputs for weight normalization (.npy, or .npz with x / x_train / x_test)")
    g.add_argument("--calibration-samples", type=int_range("--calibration-samples", 1), metavar="N",
                   help="use at most N calibration samples (default 1000)")
    g.add_argument("--percentile", type=number_range("--percentile", 0, 100), metavar="P",
                   help="normalize by the P-th percentile of activations (default 99.9; 100 is max-norm)")
    g.add_argument("--reset", choices=("subtract", "zero"), help="reset by subtraction (default) or to zero")
    g.add_argument("--encoding", choices=("analog", "poisson"),
                   help="input: constant analog current (default) or Poisson spikes")
    g = p.add_argument_group("settings (for a network file: default the file's own)")
    g.add_argument("--readout", choices=("count", "membrane", "softmax"), help="output readout (default count)")
    g.add_argument("--steps", type=int_range("--steps", 1, MAX_STEPS),
                   help="default time steps of the exported network (default 100)")
    g.add_argument("--clamp", type=int_range("--clamp", 0), metavar="D",
                   help="hold population l's membrane at its initial value for the first D*l steps (default 0)")
    g.add_argument("--v-init", type=fraction("--v-init"), metavar="FRACTION",
                   help="initial membrane potential as a fraction of the threshold, in [0, 1) (default 0; 0.5 "
                        "starts at θ/2, so that rates round instead of floor)")
    g.add_argument("--threshold-rule", choices=("ge", "gt"),
                   help="fire where V >= θ (ge, default, the paper's) or where V > θ (gt, NIR's IF)")
    p.add_argument("--input-scale", type=number_range("--input-scale", 0), metavar="S",
                   help="multiply data by S before use (default: 1/255 for uint8 data, else 1; needed for "
                        "integer data outside 0..255)")
