"""What every simulation of a converted network does the same way, whichever simulator runs it.

The writers embed this module in every exported script and snnexport imports it (the rules are in
:mod:`snnexport.scriptlib`), so inputs, random draws, max-pool gating, the readout, the results file
and its ``meta`` (docs/semantics.md) exist once.
"""

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import zlib

import numpy as np

from .outputs import check_output_path, write_output

RESULTS_VERSION = 1


# --- embedded and external data ------------------------------------------------------------------

def pack_arrays(arrays):
    """Arrays → (bytes of an uncompressed npz, sha256). Deterministic: fixed zip timestamps."""
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for key in sorted(arrays):
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(key + ".npy", (1980, 1, 1, 0, 0, 0)), npy.getvalue())
    raw = buf.getvalue()
    return raw, hashlib.sha256(raw).hexdigest()


def encode_blob(raw):
    """npz bytes → base64 text of their zlib compression, in lines of 100 characters."""
    text = base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    return "\n".join(text[i:i + 100] for i in range(0, len(text), 100))


def _open_npz(raw, sha256, where):
    if hashlib.sha256(raw).hexdigest() != sha256:
        sys.exit(f"error: {where} does not match this script (sha256 differs); export the network again")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def decode_blob(text, sha256):
    """The arrays embedded in a script by :func:`encode_blob`, checked against their hash."""
    raw = zlib.decompress(base64.b64decode("".join(text.split())))
    return _open_npz(raw, sha256, "the embedded network data")


def load_beside(script_file, filename, sha256):
    """The arrays of ``filename`` next to the script (for networks too large to embed)."""
    path = os.path.join(os.path.dirname(os.path.abspath(script_file)), filename)
    if not os.path.exists(path):
        sys.exit(f"error: {filename} must lie beside this script ({path} is missing)")
    with open(path, "rb") as f:
        return _open_npz(f.read(), sha256, path)


# --- command line and inputs ---------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit status 2 as argparse's own."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# dest → (lowest, highest allowed or None): the integer options every script takes. --steps stays below
# 2**24, where float32 step counters stop being exact; --seed within what numpy and Nengo seed with.
_RANGES = {"limit": (1, None), "steps": (1, 2 ** 24 - 1), "seed": (0, 2 ** 32 - 1), "batch": (1, None),
           "decision_margin": (1, None)}


def parse_args(description, steps, seed, extra=None, own_files=()):
    """The options every exported script takes, checked: one line and exit 2 for a value out of range.

    ``extra``: (flags, argparse keywords) of a simulator's own options; ``range=(low, high or None)``
    among the keywords makes it an integer option checked like --steps. ``own_files``: the script and
    its data, which --out must not replace (nor the --input file).
    """
    p = _Parser(description=description)
    p.add_argument("--input", help="samples (.npy: one sample or a batch; .npz: 'x' and optional 'y'); "
                                   "default: the samples bundled in this script")
    p.add_argument("-n", "--limit", type=int, default=None, help="simulate only the first N samples")
    p.add_argument("--steps", type=int, default=steps, help=f"time steps per sample (default {steps})")
    p.add_argument("--seed", type=int, default=seed, help="seed for Poisson input and spiking softmax")
    p.add_argument("--readout", choices=("count", "membrane", "softmax"), default=None,
                   help="how the output is read (default: as exported)")
    p.add_argument("--batch", type=int, default=None,
                   help="samples simulated at once, as independent copies of the network in one simulator "
                        "network (default: as many as keep the synapses in memory bounded; results do not "
                        "depend on it)")
    p.add_argument("--out", help="write the results (.npz, the same layout for every simulator)")
    p.add_argument("--early-decision", action="store_true",
                   help="decide each sample's class at the first step no other class can still catch up, and "
                        "record that step (count and softmax readouts)")
    p.add_argument("--decision-margin", type=int, default=None, metavar="M",
                   help="decide at the first step the leading class is M spikes ahead (or cannot be caught up)")
    p.add_argument("--delay", choices=("step", "zero"), default="step",
                   help="step: a spike reaches its targets one step later (default); zero: in the same step, as "
                        "the paper's zero-latency network (the run is time-shifted: docs/semantics.md)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    ranges = dict(_RANGES)
    for flags, kwargs in (extra or []):
        kwargs = dict(kwargs)
        bounds = kwargs.pop("range", None)
        action = p.add_argument(*flags, **kwargs)
        if bounds is not None:
            ranges[action.dest] = bounds
    args = p.parse_args()
    options = {a.dest: "/".join(a.option_strings) for a in p._actions}
    for dest, (low, high) in ranges.items():
        value = getattr(args, dest)
        if value is None:
            continue  # not given, and no default: e.g. -n
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            allowed = f"at least {low}" if high is None else f"from {low} to {high}"
            p.error(f"argument {options[dest]}: must be an integer {allowed}, not {value!r}")
    if args.out is not None:
        try:
            check_output_path(args.out, [f for f in (args.input, *own_files) if f], what="results file")
        except ValueError as e:
            p.error(f"argument --out: {e}")
    return args


def sample_layout(array_shape, shape):
    """"batch" when an array of ``array_shape`` is (N, *shape), "sample" when it is one sample, None when
    neither. A missing channel axis of size 1, or the H = 1 axis of 1-D layers, may be left out."""
    shape = tuple(shape)
    candidates = [shape]
    if shape[-1] == 1:
        candidates.append(shape[:-1])  # grey images without their channel axis
    if len(shape) == 3 and shape[0] == 1:
        candidates.append(shape[1:])  # 1-D layers: Keras (L, C) is our (1, L, C)
    for c in candidates:
        if len(array_shape) == len(c) + 1 and tuple(array_shape[1:]) == c:  # a 0-d array has no batch axis
            return "batch"
        if tuple(array_shape) == c:
            return "sample"
    return None


def _as_batch(x, shape, what):
    """x as (N, *shape) without copying: a batch, or one sample (see :func:`sample_layout`). Raises ValueError."""
    if x.dtype.kind not in "uif":
        raise ValueError(f"{what} has dtype {x.dtype}; numbers are needed")
    shape = tuple(shape)
    if x.ndim > 0 and x.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    layout = sample_layout(x.shape, shape)
    if layout == "batch":
        return x.reshape((x.shape[0],) + shape)
    if layout == "sample":
        return x.reshape((1,) + shape)
    raise ValueError(f"{what} has shape {tuple(x.shape)}; expected (N, {', '.join(map(str, shape))}) "
                     f"or one sample of shape {shape}")


def coerce_samples(x, shape, what="data", input_scale=None):
    """(N, *shape) float32 from a batch or one sample; adds a missing channel axis or 1-D H=1 axis.

    uint8 data are divided by 255 unless ``input_scale`` says otherwise. Raises ValueError.
    """
    x = _as_batch(np.asarray(x), shape, what)
    if input_scale is None:
        input_scale = 1 / 255 if x.dtype == np.uint8 else 1.0
    out = x.astype(np.float32) * np.float32(input_scale)
    if not np.isfinite(out).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return out


def load_inputs(path, shape, default_x, default_y, limit=None):
    """The first ``limit`` (default: all) samples and their labels (or -1), from --input or the bundled ones.

    A file that cannot be read, has the wrong shape, NaN values or labels that do not fit ends the
    script with one line naming it. A .npy file is memory-mapped: only the samples asked for are read.
    """
    from zipfile import BadZipFile
    if path is None:
        return default_x[:limit].astype(np.float32), default_y[:limit].astype(np.int64)
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                key = next((k for k in ("x", "x_test") if k in z.files), None)
                if key is None:
                    raise ValueError(f"{path} has no array 'x'")
                x = z[key]
                ykey = "y" if key == "x" else "y_test"
                y = z[ykey] if ykey in z.files else None
        else:
            x, y = np.load(path, mmap_mode="r" if os.path.isfile(path) else None, allow_pickle=False), None
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{path} is not a .npy array")
        batch = _as_batch(x, shape, path)
        if y is not None:
            y = np.asarray(y).reshape(-1)
            if len(y) != len(batch):
                raise ValueError(f"{path} has {len(y)} labels for {len(batch)} samples")
            y = y[:limit]
            if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.array_equal(y, np.round(y))):
                raise ValueError(f"{path}: the labels (dtype {y.dtype}) are not whole numbers")
            y = y.astype(np.int64)
        x = coerce_samples(batch[:limit], shape, path)
    except (ValueError, OSError, EOFError, BadZipFile) as e:
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: argument --input: {e}")
    return x, (y if y is not None else np.full(len(x), -1, np.int64))


def poisson_input(x, seed, sample_index, steps):
    """(T, *shape) 0/1 input spikes of one sample: spike where uniform draw < x (clipped to [0, 1])."""
    r = np.random.default_rng([seed, sample_index]).random((steps,) + tuple(x.shape))
    return (r < np.clip(x, 0, 1)).astype(np.float32)


def softmax_draws(seed, sample_index, steps, classes):
    """(T, classes) uniform draws of the spiking softmax readout."""
    return np.random.default_rng([seed, sample_index, 1]).random((steps, classes))


def softmax_spikes(v, draws):
    """Spiking softmax: neuron i spikes where its draw is below softmax(v)_i. v: (..., classes)."""
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return (draws < e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def delay_offsets(populations, gates, projections, input_name, delay):
    """(offset per population and gate name, delay in steps per projection) of the time-shifted run that
    realizes ``delay`` (docs/semantics.md, "Delay mode zero").

    "step": every offset 0 and every delay 1 step (the input's 0). "zero": population P runs the zero-delay
    network's step t in step t + o_P of the run, o_P = depth_P - 1 (the longest path from the input, less
    one); a gate runs with its source; a projection from Q into P takes o_P - o_Q >= 1 steps, and one from
    the input o_P steps (its spikes of step t are due at P in step t + o_P).
    """
    gate_source = {g["name"]: g["source"] for g in gates}
    incoming = {}
    for p in projections:
        incoming.setdefault(p["target"], []).append(p["source"])
    offset = {}

    def offset_of(name):
        if name not in offset:
            if name in gate_source:
                offset[name] = offset_of(gate_source[name])
            elif delay == "zero":
                offset[name] = max([offset_of(s) + 1 for s in incoming.get(name, []) if s != input_name] or [0])
            else:
                offset[name] = 0
        return offset[name]

    for node in list(populations) + list(gates):
        offset_of(node["name"])
    delays = []
    for p in projections:
        if p["source"] == input_name:
            delays.append(offset[p["target"]])
        else:
            delays.append(offset[p["target"]] - offset[p["source"]] if delay == "zero" else 1)
    return offset, delays


def apply_synapses(synapses, values, n_out):
    """Input current of the targets: sum of weight × source value over a (pre, post, weight) list."""
    pre, post, w = synapses
    return np.bincount(post, weights=values[pre].astype(np.float64) * w, minlength=n_out).astype(np.float32)


# --- max-pool gating -------------------------------------------------------------------------------

def gate_windows(in_shape, pool, strides, padding):
    """(cells, pool_h * pool_w) flat source index of each window position of each output cell (-1: padding).

    Output cells are in flat channels-last order; window positions in row-major (ky, kx) order, so
    argmin's first-wins rule gives the documented last tie-break.
    """
    h, w, c = in_shape
    (pt, pb), (pl, pr) = padding
    ho = (h + pt + pb - pool[0]) // strides[0] + 1
    wo = (w + pl + pr - pool[1]) // strides[1] + 1
    oy, ox, ch, ky, kx = np.ix_(np.arange(ho), np.arange(wo), np.arange(c), np.arange(pool[0]), np.arange(pool[1]))
    iy = oy * strides[0] - pt + ky
    ix = ox * strides[1] - pl + kx
    idx = (iy * w + ix) * c + ch
    valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    idx = np.where(valid, idx, -1)
    return np.broadcast_to(idx, (ho, wo, c, pool[0], pool[1])).reshape(ho * wo * c, pool[0] * pool[1])


def gate_pass(windows, counts, since, spikes):
    """Spikes passed by a gate: per output cell, this step's spike of the window's most active neuron.

    windows: from :func:`gate_windows`; counts (spike counts including this step), since (the step at
    which each count last changed, 0 if never) and spikes (this step's spikes) are (n_source,) or
    (batch, n_source). Returns (cells,) or (batch, cells). Among cells of equal count the one that
    reached it first wins, so a leader keeps its window until another cell overtakes it; remaining
    ties go to the first cell in window order.
    """
    safe = np.where(windows >= 0, windows, 0)
    c = np.where(windows >= 0, counts[..., safe], -np.inf)  # padding never wins
    reached = np.where(c == c.max(axis=-1, keepdims=True), since[..., safe], np.inf)
    k = np.argmin(reached, axis=-1)  # earliest to reach the count; argmin's first-wins rule after that
    winner = safe[np.arange(len(safe)), k]
    return np.take_along_axis(spikes, winner, axis=-1)


def last_change(spikes):
    """(T, n) spikes → (T, n) step (1-based) at which each count last changed up to each step, 0 if never."""
    steps = np.arange(1, len(spikes) + 1).reshape((-1,) + (1,) * (np.ndim(spikes) - 1))
    return np.maximum.accumulate(np.where(spikes != 0, steps, 0), axis=0)


# --- readout and results ---------------------------------------------------------------------------

def predict(counts, v):
    """Class per sample: most output spikes, ties to the larger membrane potential, then the lower index."""
    counts = np.asarray(counts, np.float64)
    v = np.asarray(v, np.float64)
    best = counts == counts.max(axis=-1, keepdims=True)
    return np.argmax(np.where(best, v, -np.inf), axis=-1)


def output_prediction(readout, output_steps, output_v):
    """The predicted class of one sample or of each of a batch, by ``readout``.

    output_steps: (..., T, classes) output spikes; output_v: (..., classes) final membrane potentials.
    "membrane": the largest potential (ties to the lower index); "count" and "softmax": the most
    spikes, ties by :func:`predict`.
    """
    if readout == "membrane":
        return np.argmax(np.asarray(output_v), axis=-1)
    return predict(np.asarray(output_steps).sum(axis=-2), output_v)


def decision_rule(args, readout):
    """The early-decision rule a script's options ask for, as the results' meta records it: None, or
    {"margin": M or None}. Exits with one line (status 2) where the readout counts no spikes."""
    if not args.early_decision and args.decision_margin is None:
        return None
    if readout == "membrane":
        print(f"{os.path.basename(sys.argv[0])}: error: early decision needs a readout that counts spikes "
              "(count or softmax), not membrane", file=sys.stderr)
        sys.exit(2)
    return {"margin": args.decision_margin}


def early_decision(output_steps, margin=None, block=256):
    """Per sample, the step at which the count readout decides and the class it decides (docs/semantics.md,
    "Early decision"): the first step t at which the leader's count exceeds every other class's by more
    than the steps left (T - t: no other class can still catch up, one spike per step at most) or, with
    ``margin``, by at least ``margin`` spikes.

    output_steps: (N, T, classes) output spikes. Returns (steps (N,) int32, classes (N,) int64): the step
    of decision, T where none comes earlier, and its class, -1 where the counts are still tied at T (the
    readout's own rule, ties by membrane potential, decides those). Numpy on the recorded spikes, after
    the run, ``block`` samples at a time: it costs the simulation nothing.
    """
    s = np.asarray(output_steps)
    n, steps, classes = s.shape
    decided_at = np.full(n, steps, np.int32)
    decided = np.full(n, -1, np.int64)
    left = steps - np.arange(1, steps + 1)  # steps after step t
    for a in range(0, n, block):
        c = np.cumsum(s[a:a + block], axis=1, dtype=np.int32)  # (b, T, classes) counts up to each step
        if classes > 1:
            top = np.partition(c, classes - 2, axis=-1)
            lead = top[..., classes - 1] - top[..., classes - 2]
        else:  # a single class is decided from the start
            lead = np.full(c.shape[:2], steps + 1, np.int64)
        ok = lead > left
        if margin is not None:
            ok |= lead >= margin
        found = ok.any(axis=1)
        first = ok.argmax(axis=1)
        rows = np.nonzero(found)[0]
        decided_at[a + rows] = first[rows] + 1
        decided[a + rows] = np.argmax(c[rows, first[rows]], axis=-1)
    return decided_at, decided


def softmax_readout(v_steps, seed, sample_index, clamp_steps):
    """(T, classes) float32 output spikes of the spiking softmax for one sample.

    v_steps: the output's membrane potential after integrating each step, (T, classes). In step t the
    output neuron i spikes where the sample's draw (:func:`softmax_draws`) is below softmax(V(t))_i,
    except in the first ``clamp_steps`` steps, while the output population is clamped.
    """
    v = np.asarray(v_steps, np.float64)
    spikes = softmax_spikes(v, softmax_draws(seed, sample_index, len(v), v.shape[-1]))
    spikes[:max(int(clamp_steps), 0)] = 0
    return spikes


def results_meta(simulator, simulator_version, snnexport_version, steps, seed, readout, delay, reset, encoding,
                 network_sha256, samples, decision=None, **timings):
    """The ``meta`` of a results file, the same keys for every simulator (docs/semantics.md).

    ``simulator``: "reference" for snnexport's own simulator, else the writer's name; ``decision``: None
    without early decision, else {"margin": M or None}; ``timings``: seconds, e.g. build_seconds,
    run_seconds (None where not measured).
    """
    meta = {"simulator": simulator, "simulator_version": simulator_version, "snnexport_version": snnexport_version,
            "steps": int(steps), "seed": int(seed), "readout": readout, "delay": delay, "reset": reset,
            "encoding": encoding, "network_sha256": network_sha256, "samples": int(samples),
            "early_decision": decision}
    meta.update(timings)
    return meta


def save_results(path, arrays, meta):
    """Write the results file (layout in docs/semantics.md) with :func:`write_output`; meta is a JSON-able dict.

    Raises ValueError (one line) when the file cannot be written.
    """
    arrays = dict(arrays, meta=np.array(json.dumps(dict(meta, results_version=RESULTS_VERSION), sort_keys=True)))
    write_output(path, lambda f: np.savez(f, **arrays))


def load_results(path):
    """The arrays of a results file, with meta decoded into a dict."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["meta"] = json.loads(str(out["meta"])) if "meta" in out else {}
    return out
