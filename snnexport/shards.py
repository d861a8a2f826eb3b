"""A reference-simulator run cut into shards that separate processes (or machines) simulate, and
their results files merged back into the file that one process writes.

``snnexport simulate --shard I/N`` simulates shard I of N: a contiguous range of the samples,
whole groups of :func:`snnexport.simulator.plan` where there are at least N groups (a group is
simulated together, so a range that cut one would pad it twice). A sample's numbers depend on
neither its company nor its place (the plan fixes every call's rows; Poisson input and the
spiking softmax draw per global sample index), so the shards together hold what one process
computes, bit for bit. Each shard's results file records in its ``meta`` where it lies
(:data:`KEY`); :func:`merge` checks that the files are the N shards of one run (same network,
settings, plan and backend; every shard once; ranges that tile the samples) and concatenates them.
"""

from __future__ import annotations

import json
import re
import zipfile
from typing import Any

import numpy as np

from .errors import SnnexportError
from .scriptlib import runtime

KEY = "shard"  # the meta entry of a shard's results file; the merged file has none
_FIELDS = ("index", "count", "start", "stop", "total")  # integers
_SAME = ("count", "total", "plan", "backend")  # equal in every shard of one run
_SHARED_ARRAYS = ("population_names", "gate_names")  # not per sample: equal in every shard


def parse(text: str) -> tuple[int, int]:
    """(I, N) of ``--shard I/N``: shard I of N, counted from 1."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*", text)
    if not m:
        raise SnnexportError(f"--shard {text!r}: expected I/N, shard I of N counted from 1 (e.g. 1/4)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise SnnexportError(f"--shard {text}: the number of shards must be at least 1")
    if not 1 <= index <= count:
        raise SnnexportError(f"--shard {text}: the shard must be from 1 to {count}")
    return index, count


def sample_range(index: int, count: int, total: int, group: int) -> tuple[int, int]:
    """Samples [start, stop) of shard ``index`` of ``count`` among ``total``: contiguous, every shard
    at least one sample, whole groups of ``group`` samples where there are at least ``count`` groups."""
    if count > total:
        raise SnnexportError(f"--shard {index}/{count}: {total} samples cannot make {count} shards")
    unit = group if -(-total // group) >= count else 1
    units = -(-total // unit)
    return min(total, (index - 1) * units // count * unit), min(total, index * units // count * unit)


def entry(index: int, count: int, start: int, stop: int, total: int, plan: tuple[int, ...], backend: str
          ) -> dict[str, Any]:
    """The :data:`KEY` entry of a shard's meta: where it lies, and what its numbers depend on."""
    return {"index": index, "count": count, "start": start, "stop": stop, "total": total,
            "plan": [int(p) for p in plan], "backend": backend}


def merge(paths: list[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and meta of one process's results file, from the results files of its shards.

    Raises SnnexportError (one line) unless the files are exactly the shards of one run.
    """
    if not paths:
        raise SnnexportError("no shard files given")
    shards = sorted((_load(p) for p in paths), key=lambda s: s[2][KEY]["index"])
    ref_path, ref, ref_meta = shards[0]
    first = ref_meta[KEY]
    seen: dict[int, str] = {}
    for path, arrays, meta in shards:
        sh = meta[KEY]
        if sh["index"] in seen:
            raise SnnexportError(f"shard {sh['index']}/{sh['count']} is given twice: {seen[sh['index']]} and {path}")
        seen[sh["index"]] = path
        for k in _SAME:
            if sh[k] != first[k]:
                raise SnnexportError(f"{path} is not a shard of the run of {ref_path}: its {k} is {sh[k]}, "
                                     f"not {first[k]}")
        for k in sorted(set(meta) | set(ref_meta)):
            if k not in (KEY, "samples") and meta.get(k) != ref_meta.get(k):
                what = "network" if k == "network_sha256" else k
                raise SnnexportError(f"{path} is not a shard of the run of {ref_path}: its {what} is "
                                     f"{_show(meta.get(k))}, not {_show(ref_meta.get(k))}")
        if set(arrays) != set(ref):
            raise SnnexportError(f"{path} holds the arrays {', '.join(sorted(arrays))}; the shard "
                                 f"{ref_path} holds {', '.join(sorted(ref))}")
        for k, a in arrays.items():
            if k in _SHARED_ARRAYS and not np.array_equal(a, ref[k]):
                raise SnnexportError(f"{path} is not a shard of the run of {ref_path}: its {k} differ")
            if k not in _SHARED_ARRAYS and (a.shape[1:], a.dtype) != (ref[k].shape[1:], ref[k].dtype):
                raise SnnexportError(f"{path}: array {k} holds {a.dtype} samples of shape {a.shape[1:]}; the "
                                     f"shard {ref_path} holds {ref[k].dtype} of shape {ref[k].shape[1:]}")
    missing = [i for i in range(1, first["count"] + 1) if i not in seen]
    if missing:
        raise SnnexportError(f"shard {missing[0]}/{first['count']} is missing ({len(seen)} of {first['count']} "
                             f"shards given)")
    stop = 0
    for path, arrays, meta in shards:
        sh = meta[KEY]
        if sh["start"] != stop:
            raise SnnexportError(f"{path} holds samples {sh['start']}–{sh['stop'] - 1}; the shards before it end "
                                 f"at sample {stop - 1} (they were cut differently)")
        stop = sh["stop"]
    if stop != first["total"]:
        raise SnnexportError(f"the shards hold samples 0–{stop - 1}, not all {first['total']}")
    merged = {}
    for k, a in ref.items():
        merged[k] = a if k in _SHARED_ARRAYS else np.concatenate([arrays[k] for _, arrays, _ in shards])
    meta = {k: v for k, v in ref_meta.items() if k != KEY}
    meta["samples"] = first["total"]
    return merged, meta


def _load(path: str) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
    """(path, per-sample and name arrays, meta) of one shard's results file, its structure checked."""
    try:
        arrays = runtime.load_results(path)
    except FileNotFoundError:
        raise SnnexportError(f"{path} does not exist") from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, KeyError, zipfile.BadZipFile) as e:
        raise SnnexportError(f"{path} is not a results file ({' '.join(str(e).split())})") from None
    meta = arrays.pop("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get(KEY), dict):
        raise SnnexportError(f"{path} is not a shard's results file (its meta has no {KEY!r} entry; "
                             "write shards with snnexport simulate --shard I/N)")
    sh = meta[KEY]
    ints = all(type(sh.get(k)) is int for k in _FIELDS)
    if not ints or not 1 <= sh["index"] <= sh["count"] or not 0 <= sh["start"] < sh["stop"] <= sh["total"]:
        raise SnnexportError(f"{path}: its {KEY} entry is damaged ({_show(sh)})")
    n = sh["stop"] - sh["start"]
    if meta.get("samples") != n:
        raise SnnexportError(f"{path}: its meta says {_show(meta.get('samples'))} samples, its shard entry {n}")
    for k, a in arrays.items():
        if k not in _SHARED_ARRAYS and (a.ndim == 0 or len(a) != n):
            raise SnnexportError(f"{path}: array {k} has shape {a.shape}; its shard holds {n} samples")
    return str(path), arrays, meta


def _show(v: Any) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."

