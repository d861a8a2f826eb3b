"""The ``snnexport`` command.

    snnexport MODEL [--calibration FILE] [--percentile P] [--reset subtract|zero] [--to WRITER] [-o OUT]
    snnexport info FILE
    snnexport simulate MODEL_OR_NETWORK --data FILE [-n N] [--steps T] [--batch B] [--out results.npz]
                       [--devices D] [--shard I/N]
    snnexport merge SHARD.npz... --out results.npz
    snnexport validate MODEL --calibration FILE --data FILE [--sim ...] --report DIR
    snnexport writers

Errors are one line on stderr and a non-zero exit; every option and output path is checked before
any work starts; output files are written by :func:`snnexport.scriptlib.outputs.write_outputs` (atomically, in
the umask's mode), so a failed or interrupted run leaves none behind. Progress goes to stderr, the
product to stdout or ``-o``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import stat
import sys
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from . import __version__
from .errors import SnnexportError, user_errors
from .loading import load_network, progress
from .options import MAX_SEED, Parser, add_conversion_options, add_decision_options, int_range, number_range
from .scriptlib import outputs, runtime

SUBCOMMANDS = ("info", "simulate", "merge", "validate", "writers")
EXIT_USER_ERROR = 1
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """The command; ``argv`` None means the real process (sys.argv), which Ctrl-C ends at once."""
    process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        if argv and argv[0] in SUBCOMMANDS:
            code = COMMANDS[argv[0]](argv[1:])
        else:
            code = convert_command(argv)
        _flush_stdout()
        return code
    except SnnexportError as e:
        return _fail(_one_line(str(e)))
    except KeyboardInterrupt:
        # Temporary files are gone (removed on the way up). End without interpreter teardown: JAX
        # worker threads still running at teardown crashed the process (segfault) after Ctrl-C.
        if process:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the exit
        print("snnexport: interrupted", file=sys.stderr, flush=True)
        if process:
            _flush_stdout_quietly()
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (e.g. `| head`): not worth a message
        _silence_stdout()
        return EXIT_USER_ERROR
    except MemoryError:
        return _fail("out of memory")
    except OSError as e:  # the system refused a read or write: the file and the reason, no traceback
        where = f"{e.filename}: " if e.filename else ""
        return _fail(f"{where}{e.strerror or _one_line(str(e))}")
    except Exception as e:  # a bug of ours: still one line, the traceback only on request
        if os.environ.get("SNNEXPORT_DEBUG"):
            raise
        print(f"snnexport: internal error: {type(e).__name__}: {_one_line(str(e))} "
              "(set SNNEXPORT_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        _flush_stdout_quietly()
        return EXIT_INTERNAL


def _fail(message: str) -> int:
    _flush_stdout_quietly()
    print(f"snnexport: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown problem"


@contextlib.contextmanager
def stdout_errors() -> Iterator[None]:
    """A failed write to standard output (a full disk, a device that refuses) becomes one line."""
    try:
        yield
    except BrokenPipeError:  # the reader went away (`| head`): main ends quietly
        raise
    except OSError as e:
        _silence_stdout()
        raise SnnexportError(f"cannot write to standard output: {e.strerror or e}") from None


def say(text: str = "") -> None:
    """A line of the product on standard output."""
    with stdout_errors():
        print(text)


def _flush_stdout() -> None:
    with stdout_errors():
        sys.stdout.flush()


def _flush_stdout_quietly() -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null, so that Python's flush at exit does not print a second error."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass


# --- options --------------------------------------------------------------------------------------

def check_output(path: str | os.PathLike[str], inputs: Iterable[object], what: str) -> None:
    """:func:`snnexport.scriptlib.outputs.check_output_path` as a SnnexportError."""
    with user_errors():
        outputs.check_output_path(path, tuple(i for i in inputs if i), what)


def check_stdout(inputs: Iterable[object]) -> None:
    """Refuse a standard output redirected onto one of the inputs (``>>`` would append to it)."""
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return  # not a real file descriptor (e.g. captured in tests)
    if not stat.S_ISREG(st.st_mode):
        return
    for source in inputs:
        try:
            other = os.stat(source) if source else None
        except (OSError, ValueError):
            continue
        if other is not None and (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            raise SnnexportError(f"standard output is the input file {source}; writing it would destroy that input")


# --- conversion -------------------------------------------------------------------------------------

def _convert_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="snnexport", description="Convert a trained Keras CNN into a spiking network and export it "
        "for a simulator. Other commands: " + ", ".join(SUBCOMMANDS) + " (snnexport COMMAND --help).")
    p.add_argument("model", nargs="?",
                   help="Keras (.h5, .keras) or ONNX (.onnx) model, or a network file (.snn)/NIR graph (.nir)")
    add_conversion_options(p)
    p.add_argument("--to", default="network", metavar="WRITER",
                   help="what to write: a writer name (see `snnexport writers`); default: network")
    p.add_argument("-o", "--output", help="output file (default: standard output); never one of the inputs, "
                   "nor a script named like a module it imports (brian2.py, nest.py, …)")
    p.add_argument("--samples", help="samples to bundle in a script as its default input (.npy/.npz); "
                                     "default: the first 10 calibration samples")
    p.add_argument("--embed-limit", type=number_range("--embed-limit", 0), default=8.0, metavar="MB",
                   help="largest encoded weights embedded in a script; above it they go to a .npz "
                        "beside -o (default 8)")
    p.add_argument("--nir-approximate", action="append", default=[], metavar="WHAT",
                   help="--to nir only: write a stand-in NIR lacks, recorded in the graph: maxpool=avgpool, "
                        "softmax=count (repeatable)")
    p.add_argument("--capabilities", action="store_true", help="print the writer's capability table and exit")
    p.add_argument("--layers", action="store_true", help="print the Keras layers and activations that convert, and exit")
    p.add_argument("--version", action="version", version=f"snnexport {__version__}")
    return p


def _shadowed_module(out: Path, writer) -> str | None:
    """The module a script written to ``out`` imports and would shadow (Python puts the script's
    folder first on sys.path, so `brian2.py` importing brian2 imports itself), or None."""
    template = getattr(writer, "template", "")
    if out.suffix != ".py" or not template:
        return None
    from .scriptlib import connectivity
    from .writers.script import TEMPLATES
    sources, todo = [], [template]
    while todo:  # the template and those it extends or includes
        text = (TEMPLATES / todo.pop()).read_text(encoding="utf-8")
        sources.append(text)
        todo += re.findall(r"{%-?\s*(?:extends|include|import)\s+[\"']([^\"']+)[\"']", text)
    for module in (runtime, connectivity):  # embedded in every script
        sources.append(Path(module.__file__).read_text(encoding="utf-8"))
    imported = set()
    for text in sources:
        for m in re.finditer(r"^\s*(?:from\s+([A-Za-z_]\w*)[\w.]*\s+import\b|import\s+([^#\n;]+))", text, re.M):
            names = [m.group(1)] if m.group(1) else [n.split()[0] for n in m.group(2).strip(" ()").split(",") if n.strip()]
            imported.update(n.split(".")[0] for n in names)
        imported.update(re.findall(r"import_module\(\s*[\"']([A-Za-z_]\w*)", text))  # e.g. "pyNN." + backend
    return out.stem if out.stem in imported else None


def convert_command(argv: list[str]) -> int:
    args = _convert_parser().parse_args(argv)
    from . import writers
    from .writers.base import WriteOptions
    writer = writers.get(args.to)
    if args.layers:
        from .readers.keras_config import supported_text
        print(supported_text())
        return 0
    if args.capabilities:
        print_capabilities(writer)
        return 0
    if args.nir_approximate and writer.name != "nir":
        raise SnnexportError("--nir-approximate applies only to --to nir")
    if args.model is None:
        raise SnnexportError("no model given (usage: snnexport MODEL [--calibration FILE] [--to WRITER] [-o OUT])")
    inputs = (args.model, args.calibration, args.samples)
    out = Path(args.output) if args.output else None
    if out is not None:
        check_output(args.output, inputs, "-o")  # the text as given: Path() drops a trailing slash
        shadowed = _shadowed_module(out, writer)
        if shadowed:
            raise SnnexportError(f"-o {out}: a script named {out.name} would shadow the module {shadowed!r} "
                                 f"it imports (Python looks in the script's own folder first); choose another "
                                 f"name, e.g. snn_{out.name}")
    else:
        check_stdout(inputs)
        if writer.binary and sys.stdout.isatty():
            raise SnnexportError(f"the {writer.name} writer writes a binary file: give -o FILE or redirect stdout")
    net = load_network(args.model, args)
    samples, labels = _bundled_samples(args, net)
    extra = {"nir_approximate": tuple(args.nir_approximate)} if args.nir_approximate else {}
    rendered = writer.render(net, WriteOptions(out, samples, labels, int(args.embed_limit * 2 ** 20), extra))
    if out is None:
        write_stdout(rendered.main)
    else:
        if rendered.beside and out.exists() and not out.is_file():
            raise SnnexportError(f"-o {out} is not a regular file, so nothing can lie beside it: the weights are "
                                 f"too large to embed ({', '.join(rendered.beside)} would go beside the script)")
        files = rendered.writes(out)
        for path in files:  # the weights beside the script may not replace an input either
            check_output(path, inputs, "output")
        with user_errors():
            outputs.write_outputs(files)  # all or none
        progress(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def write_stdout(content: bytes | Callable[[BinaryIO], None]) -> None:
    """The product on standard output: a device or pipe gets it as a stream (no seeking)."""
    target = sys.stdout.buffer
    try:
        if not stat.S_ISREG(os.fstat(target.fileno()).st_mode):
            target = outputs.as_stream(target)
    except (OSError, ValueError, AttributeError):
        pass
    with stdout_errors():
        if callable(content):
            content(target)
        else:
            target.write(content)
        sys.stdout.flush()


def _bundled_samples(args: argparse.Namespace, net):
    from . import data
    source = args.samples or args.calibration
    if not source:
        return None, None
    return data.load_samples(source, net.input.shape, "samples", False, args.input_scale, limit=10)


def print_capabilities(writer) -> None:
    from .writers.base import FEATURES
    say(f"{writer.name}: {writer.summary}")
    if writer.requires:
        say(f"  runs with {', '.join(writer.requires)}{_missing_note(writer.name)}")
    for feature in FEATURES:
        status, how = writer.capabilities.get(feature, ("refused", "not implemented"))
        say(f"  {feature:18s} {status:13s} {how}")


# --- other commands -----------------------------------------------------------------------------------

def info_command(argv: list[str]) -> int:
    p = Parser(prog="snnexport info", description="Summarize a network file or a model (Keras, ONNX).")
    p.add_argument("file")
    add_conversion_options(p)
    args = p.parse_args(argv)
    net = load_network(args.file, args, quiet=True)
    from .summary import describe
    say(describe(net))
    return 0


def writers_command(argv: list[str]) -> int:
    Parser(prog="snnexport writers", description="List the available writers.").parse_args(argv)
    from . import writers
    for name in writers.available():
        try:
            summary = writers.get(name).summary + _missing_note(name)
        except Exception as e:  # a writer whose module fails to import is still listed, with why
            summary = f"(unavailable: {_one_line(str(e))})"
        say(f"{name:8s} {summary}")
    return 0


def _missing_note(name: str) -> str:
    """What a writer's scripts need and this installation lacks, or ""."""
    from . import writers
    missing = writers.missing_modules(name)
    return f" [not installed here: {', '.join(missing)}; {writers.install_hint(name)}]" if missing else ""


def simulate_command(argv: list[str]) -> int:
    p = Parser(prog="snnexport simulate",
               description="Run the reference simulator on samples and report ANN and SNN accuracy.")
    p.add_argument("model", help="Keras or ONNX model, or network file (.snn), or NIR graph (.nir)")
    p.add_argument("--data", required=True, help="samples (.npy, or .npz with x/y or x_test/y_test)")
    p.add_argument("-n", type=int_range("-n", 1), default=None, help="use the first N samples (only these are read)")
    p.add_argument("--batch", type=int_range("--batch", 1), default=100, help="samples simulated at once (default 100)")
    p.add_argument("--delay", choices=("step", "zero"), default="step",
                   help="one step per population (default, as every exported script) or the paper's zero latency")
    p.add_argument("--seed", type=int_range("--seed", 0, MAX_SEED), default=0,
                   help="seed of Poisson input and the spiking softmax (default 0)")
    p.add_argument("--out", help="write the results file (.npz, the layout of the exported scripts)")
    _add_spread_options(p)
    add_decision_options(p)
    add_conversion_options(p)
    args = p.parse_args(argv)
    shard = _shard_option(args)
    if args.out:
        check_output(args.out, (args.model, args.data, args.calibration), "--out")
    from . import data
    from .simulator import ann_activations, results_meta, simulate
    net = load_network(args.model, args)
    if shard:
        x, y, where = _shard_samples(args, net, *shard)
    else:
        x, y = data.load_samples(args.data, net.input.shape, "data", False, args.input_scale, limit=args.n)
        where = None
    ann = ann_activations(net, x)
    ann_pred = ann[net.output].reshape(len(x), -1).argmax(axis=1)
    progress(f"simulating {len(x)} samples for {net.settings.steps} steps")
    res = simulate(net, x, y, steps=net.settings.steps, batch=args.batch, delay=args.delay,
                   seed=args.seed, progress=True, devices=args.devices, first=where["start"] if where else 0,
                   early_decision=args.early_decision, decision_margin=args.decision_margin)
    snn_pred = res["predictions"]
    if where:
        say(f"shard {where['index']}/{where['count']}: samples {where['start']}–{where['stop'] - 1} "
            f"of {where['total']}")
    say(f"samples: {len(x)}, steps: {net.settings.steps}, delay: {args.delay}")
    if y is not None:
        say(f"ANN accuracy: {100 * float((ann_pred == y).mean()):.2f} %")
        say(f"SNN accuracy: {100 * float((snn_pred == y).mean()):.2f} %")
    say(f"SNN agrees with the ANN on {100 * float((snn_pred == ann_pred).mean()):.2f} % of samples")
    decision = None
    if "decision_steps" in res:
        from .opcount import snn_ops
        decision = {"margin": args.decision_margin}
        d = sorted(int(v) for v in res["decision_steps"])
        ops = snn_ops(net, res, x, args.seed)
        say(f"early decision: at step {sum(d) / len(d):.1f} of {net.settings.steps} on average (median "
            f"{d[len(d) // 2]}); SNN operations to it {float(ops['decided'].mean()):,.0f} per sample, "
            f"{float(ops['decided'].mean()) / ops['ann']:.3f} x the ANN's {ops['ann']:,}")
    from .compare import population_counts, rate_fit
    say("firing rate (spikes/step) vs normalized ANN activation, per hidden population:")
    for name, counts in population_counts(res).items():
        if name != net.output:
            fit = rate_fit(counts / net.settings.steps, ann[name])
            if fit["silent"]:
                say(f"  {name!r}: silent (no spikes in any sample: r undefined), RMSE {fit['rmse']:.4f}")
            else:
                say(f"  {name!r}: Pearson r {fit['pearson']:.4f}, slope {fit['slope']:.3f}, RMSE {fit['rmse']:.4f}")
    if args.out:
        meta = results_meta(net, res, seed=args.seed, delay=args.delay, decision=decision)
        if where:
            from .shards import KEY
            meta[KEY] = where
        with user_errors():
            runtime.save_results(args.out, res, meta)
        progress(f"wrote {args.out}")
    return 0


# --- the reference simulator past one device: devices of this process, shards over processes ---------

def _add_spread_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int_range("--devices", 1), default=None, metavar="D",
                   help="local JAX devices that share the samples (default: all of the default backend's; "
                        "the results do not depend on it)")
    p.add_argument("--shard", metavar="I/N", help="simulate only shard I of N (contiguous samples) and write "
                   "its results to --out; `snnexport merge` joins the N files into the file of one run")


def _shard_option(args: argparse.Namespace) -> tuple[int, int] | None:
    """(I, N) of --shard, or None; checked (also --devices against this process's devices) before any work."""
    if args.devices is not None:
        from .simulator.devices import chosen
        chosen(args.devices)
    if args.shard is None:
        return None
    from .shards import parse
    shard = parse(args.shard)
    if not args.out:
        raise SnnexportError("--shard needs --out: the shard's results file, for `snnexport merge`")
    return shard


def _shard_samples(args: argparse.Namespace, net, index: int, count: int):
    """(x, y, shard entry of the meta) of shard ``index`` of ``count`` of the first -n samples."""
    import jax
    from . import data
    from .shards import entry, sample_range
    from .simulator import run_plan
    total = data.sample_count(args.data, net.input.shape, "data")
    total = total if args.n is None else min(args.n, total)
    plan = run_plan(net, net.settings.steps)
    start, stop = sample_range(index, count, total, plan[0])
    x, y = data.load_samples(args.data, net.input.shape, "data", False, args.input_scale, limit=stop, start=start)
    return x, y, entry(index, count, start, stop, total, plan, jax.default_backend())


def merge_command(argv: list[str]) -> int:
    p = Parser(prog="snnexport merge", description="Join the results files of `snnexport simulate --shard I/N` "
               "into the results file of one process (checking that they are the N shards of one run).")
    p.add_argument("shards", nargs="+", help="the shards' results files, in any order")
    p.add_argument("--out", required=True, help="the merged results file")
    args = p.parse_args(argv)
    check_output(args.out, args.shards, "--out")
    from .shards import merge
    arrays, meta = merge(args.shards)
    with user_errors():
        runtime.save_results(args.out, arrays, meta)
    labels, pred = arrays["labels"], arrays["predictions"]
    say(f"samples: {len(pred)} from {len(args.shards)} shards, steps: {meta.get('steps')}, delay: {meta.get('delay')}")
    if (labels >= 0).all():
        say(f"SNN accuracy: {100 * float((pred == labels).mean()):.2f} %")
    progress(f"wrote {args.out}")
    return 0


def validate_command(argv: list[str]) -> int:
    from .validate import validate_main
    return validate_main(argv)


COMMANDS = {"info": info_command, "simulate": simulate_command, "merge": merge_command,
            "validate": validate_command, "writers": writers_command}
