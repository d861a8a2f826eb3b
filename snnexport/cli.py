"""The ``snnexport`` command.

    snnexport MODEL [--calibration FILE] [--percentile P] [--reset subtract|zero] [--to WRITER] [-o OUT]
    snnexport info FILE
    snnexport simulate MODEL_OR_NETWORK --data FILE [-n N] [--steps T] [--batch B] [--out results.npz]
    snnexport validate MODEL --calibration FILE --data FILE [--sim ...] --report DIR
    snnexport writers

Errors are one line on stderr and a non-zero exit; output files are written atomically, so a
failed run leaves none behind. Progress goes to stderr, the product to stdout or ``-o``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from . import __version__
from .errors import SnnexportError

SUBCOMMANDS = ("info", "simulate", "validate", "writers")
EXIT_USER_ERROR = 1
EXIT_INTERNAL = 3


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        return convert_command(argv)
    except SnnexportError as e:
        print(f"snnexport: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("snnexport: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_USER_ERROR
    except MemoryError:
        print("snnexport: error: out of memory", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:  # a bug of ours: still one line, the traceback only on request
        if os.environ.get("SNNEXPORT_DEBUG"):
            raise
        print(f"snnexport: internal error: {type(e).__name__}: {_one_line(str(e))} "
              "(set SNNEXPORT_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown problem"


# --- conversion -------------------------------------------------------------------------------------

def _convert_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="snnexport", description="Convert a trained Keras CNN into a spiking network and export it "
        "for a simulator. Other commands: " + ", ".join(SUBCOMMANDS) + " (snnexport COMMAND --help).")
    p.add_argument("model", nargs="?",
                   help="Keras model (.h5 or .keras), or a network file (.snn) written by --to network")
    add_conversion_options(p)
    p.add_argument("--to", default="network", metavar="WRITER",
                   help="what to write: a writer name (see `snnexport writers`); default: network")
    p.add_argument("-o", "--output", help="output file (default: standard output)")
    p.add_argument("--samples", help="samples to bundle in a script as its default input (.npy/.npz); "
                                     "default: the first 10 calibration samples")
    p.add_argument("--embed-limit", type=float, default=8.0, metavar="MB",
                   help="largest encoded weights embedded in a script; above it they go to a .npz "
                        "beside -o (default 8)")
    p.add_argument("--capabilities", action="store_true", help="print the writer's capability table and exit")
    p.add_argument("--version", action="version", version=f"snnexport {__version__}")
    return p


def add_conversion_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", metavar="FILE",
                   help="inputs for weight normalization (.npy, or .npz with x / x_train / x_test)")
    p.add_argument("--calibration-samples", type=int, default=1000, metavar="N",
                   help="use at most N calibration samples (default 1000)")
    p.add_argument("--percentile", type=float, default=99.9, metavar="P",
                   help="normalize by the P-th percentile of activations (default 99.9; 100 is max-norm)")
    p.add_argument("--reset", choices=("subtract", "zero"), default="subtract",
                   help="reset by subtraction (default) or to zero")
    p.add_argument("--encoding", choices=("analog", "poisson"), default="analog",
                   help="input: constant analog current (default) or Poisson spikes")
    p.add_argument("--readout", choices=("count", "membrane", "softmax"), default="count",
                   help="output readout (default count)")
    p.add_argument("--steps", type=int, default=100, help="default time steps of the exported network (100)")
    p.add_argument("--clamp", type=int, default=0, metavar="D",
                   help="hold population l's membrane at 0 for the first D*l steps (default 0)")
    p.add_argument("--input-scale", type=float, default=None, metavar="S",
                   help="multiply data by S before use (default: 1/255 for uint8 data, else 1)")


def load_network(model: str, args: argparse.Namespace, quiet: bool = False):
    """A Network from a network file, or converted from a Keras model with the conversion options."""
    from .network import Network, Provenance, is_network_file
    path = Path(model)
    if not path.exists():
        raise SnnexportError(f"{model}: no such file")
    if path.is_dir():
        raise SnnexportError(f"{model}: is a directory, not a model file")
    if is_network_file(path):
        net = Network.load(path)
    else:
        from . import data
        from .convert import convert
        from .readers import read_model
        graph = read_model(path)
        calib, sha = None, ""
        if getattr(args, "calibration", None):
            _progress(f"loading calibration data {args.calibration}", quiet)
            calib, _ = data.load_samples(args.calibration, graph.input_shape, "calibration data", True,
                                         args.input_scale)
            calib = calib[: args.calibration_samples]
            sha = data.sha256_of(calib)
        _progress(f"converting {path.name}", quiet)
        import keras
        prov = Provenance(path.name, _sha256_file(path), keras.__version__, __version__)
        net = convert(graph, calib, args.percentile, args.reset, args.encoding, prov, sha, consume=True)
        del graph
    s = net.settings
    s.readout, s.steps, s.clamp = args.readout, args.steps, args.clamp
    if s.steps < 1:
        raise SnnexportError("--steps must be at least 1")
    return net


def convert_command(argv: list[str]) -> int:
    args = _convert_parser().parse_args(argv)
    from . import writers
    from .writers.base import WriteOptions
    writer = writers.get(args.to)
    if args.capabilities:
        print_capabilities(writer)
        return 0
    if args.model is None:
        raise SnnexportError("no model given (usage: snnexport MODEL [--calibration FILE] [--to WRITER] [-o OUT])")
    out = Path(args.output) if args.output else None
    if out is None and writer.binary and sys.stdout.isatty():
        raise SnnexportError(f"the {writer.name} writer writes a binary file: give -o FILE or redirect stdout")
    net = load_network(args.model, args)
    samples, labels = _bundled_samples(args, net)
    rendered = writer.render(net, WriteOptions(out, samples, labels, int(args.embed_limit * 2 ** 20)))
    if out is None:
        if callable(rendered.main):
            rendered.main(sys.stdout.buffer)
        else:
            sys.stdout.buffer.write(rendered.main)
        sys.stdout.flush()
    else:
        files = {out: rendered.main, **{out.parent / name: data for name, data in rendered.beside.items()}}
        write_atomically(files)
        _progress(f"wrote {', '.join(str(f) for f in files)}", False)
    return 0


def _bundled_samples(args: argparse.Namespace, net):
    from . import data
    source = args.samples or args.calibration
    if not source:
        return None, None
    x, y = data.load_samples(source, net.input.shape, "samples", False, args.input_scale)
    return x[:10], (y[:10] if y is not None else None)


def print_capabilities(writer) -> None:
    from .writers.base import FEATURES
    print(f"{writer.name}: {writer.summary}")
    for feature in FEATURES:
        status, how = writer.capabilities.get(feature, ("refused", "not implemented"))
        print(f"  {feature:18s} {status:13s} {how}")


def write_atomically(files: dict[Path, bytes | Callable[[BinaryIO], None]]) -> None:
    """Write all files or none: each goes to a temporary file first, then all are renamed."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, content in files.items():
            if path.parent and not path.parent.exists():
                raise SnnexportError(f"{path.parent}: no such directory")
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                if callable(content):
                    content(f)
                else:
                    f.write(content)
        for tmp, path in temps:
            os.replace(tmp, path)
        temps = []
    except OSError as e:
        raise SnnexportError(f"cannot write output: {e}") from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            h.update(block)
    return h.hexdigest()


def _progress(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"snnexport: {message}", file=sys.stderr)


# --- other commands -----------------------------------------------------------------------------------

def info_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="snnexport info", description="Summarize a network file or a Keras model.")
    p.add_argument("file")
    add_conversion_options(p)
    args = p.parse_args(argv)
    net = load_network(args.file, args, quiet=True)
    from .summary import describe
    print(describe(net))
    return 0


def writers_command(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="snnexport writers", description="List the available writers.").parse_args(argv)
    from . import writers
    for name in writers.available():
        try:
            print(f"{name:8s} {writers.get(name).summary}")
        except Exception as e:  # a writer whose module fails to import is still listed, with why
            print(f"{name:8s} (unavailable: {_one_line(str(e))})")
    return 0


def simulate_command(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="snnexport simulate",
                                description="Run the reference simulator on samples and report ANN and SNN accuracy.")
    p.add_argument("model", help="Keras model or network file (.snn)")
    p.add_argument("--data", required=True, help="samples (.npy, or .npz with x/y or x_test/y_test)")
    p.add_argument("-n", type=int, default=None, help="use the first N samples")
    p.add_argument("--batch", type=int, default=100, help="samples simulated at once (default 100)")
    p.add_argument("--delay", choices=("step", "zero"), default="step",
                   help="one step per population (default, as every exported script) or the paper's zero latency")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the results file (.npz, the layout of the exported scripts)")
    add_conversion_options(p)
    args = p.parse_args(argv)
    from . import data, runtime
    from .simulator import ann_activations, simulate
    net = load_network(args.model, args)
    x, y = data.load_samples(args.data, net.input.shape, "data", False, args.input_scale)
    if args.n is not None:
        x, y = x[: args.n], (y[: args.n] if y is not None else None)
    ann = ann_activations(net, x)
    ann_pred = ann[net.output].reshape(len(x), -1).argmax(axis=1)
    _progress(f"simulating {len(x)} samples for {net.settings.steps} steps", False)
    res = simulate(net, x, y, steps=net.settings.steps, batch=args.batch, delay=args.delay,
                   seed=args.seed, progress=True)
    snn_pred = res["predictions"]
    print(f"samples: {len(x)}, steps: {net.settings.steps}, delay: {args.delay}")
    if y is not None:
        print(f"ANN accuracy: {100 * float((ann_pred == y).mean()):.2f} %")
        print(f"SNN accuracy: {100 * float((snn_pred == y).mean()):.2f} %")
    print(f"SNN agrees with the ANN on {100 * float((snn_pred == ann_pred).mean()):.2f} % of samples")
    from .compare import population_counts, rate_fit
    print("firing rate (spikes/step) vs normalized ANN activation, per hidden population:")
    for name, counts in population_counts(res).items():
        if name != net.output:
            fit = rate_fit(counts / net.settings.steps, ann[name])
            print(f"  {name!r}: Pearson r {fit['pearson']:.4f}, slope {fit['slope']:.3f}, RMSE {fit['rmse']:.4f}")
    if args.out:
        runtime.save_results(args.out, res, {"simulator": "reference", "snnexport_version": __version__,
                                             "steps": net.settings.steps, "seed": args.seed,
                                             "delay": args.delay, "readout": net.settings.readout,
                                             "reset": net.neuron.reset, "encoding": net.input.encoding})
        _progress(f"wrote {args.out}", False)
    return 0


def validate_command(argv: list[str]) -> int:
    from .validate import validate_main
    return validate_main(argv)


COMMANDS = {"info": info_command, "simulate": simulate_command, "validate": validate_command,
            "writers": writers_command}
