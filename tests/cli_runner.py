"""Running the real ``snnexport`` command in a subprocess, and what a refusal must look like."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ENV = dict(os.environ, KERAS_BACKEND="jax")
# Peak memory of a child, in bytes: ru_maxrss of the children waited for by a fresh Python process.
_PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, r.returncode, file=sys.stderr)")


def snnexport(*args: object, cwd: Path | None = None, stdout=subprocess.PIPE, umask: int = 0o022,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m snnexport ARGS`` as a user runs it; stdout and stderr as text where captured."""
    return subprocess.run([sys.executable, "-m", "snnexport", *map(str, args)], cwd=cwd, env=ENV,
                          stdout=stdout, stderr=subprocess.PIPE, timeout=timeout, umask=umask)


def peak_rss(*args: object, cwd: Path | None = None, timeout: float = 300) -> tuple[int, int, str]:
    """(peak resident memory in bytes, exit status, stderr) of ``python -m snnexport ARGS``."""
    proc = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m", "snnexport", *map(str, args)],
                          cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    last = proc.stderr.strip().splitlines()[-1].split()
    return int(last[0]), int(last[1]), "\n".join(proc.stderr.strip().splitlines()[:-1])


def text_of(err: bytes | str) -> str:
    return err.decode("utf-8", "replace") if isinstance(err, bytes) else err


def error_lines(err: bytes | str) -> list[str]:
    """stderr without the progress lines that come before an error."""
    return [line for line in text_of(err).strip().splitlines()
            if not line.startswith(("snnexport: loading", "snnexport: converting", "snnexport: simulat",
                                    "snnexport: warning", "snnexport: calibration data is uint8",
                                    "snnexport: data is uint8", "snnexport: samples is uint8"))]


def assert_refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 1 and exactly one error line on stderr (after any progress), naming every needle."""
    err = text_of(proc.stderr)
    assert proc.returncode == 1, f"exit {proc.returncode}: {err}"
    assert "Traceback" not in err and "internal error" not in err, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("snnexport: error: "), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every entry of a folder (hidden ones too) with its content hash and mode: to prove nothing changed."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_symlink():
            out[p.name] = (f"-> {os.readlink(p)}", 0)
        elif p.is_file():
            out[p.name] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        else:
            out[p.name] = ("dir", p.stat().st_mode)
    return out


def small_network(folder: Path, samples: int, seed: int = 3) -> Path:
    """The zoo's small LeNet (16x16x1) in ``folder``: model.h5, data.npz (x and labels y) and net.snn
    converted from them (at most 50 calibration samples). Returns the folder."""
    import model_zoo
    from snnexport.cli import main
    model = model_zoo.build_lenet()
    model.save(folder / "model.h5")
    np.savez(folder / "data.npz", x=model_zoo.sample_input(model, samples, seed=seed), y=np.arange(samples) % 10)
    assert main([str(folder / "model.h5"), "--calibration", str(folder / "data.npz"), "--calibration-samples", "50",
                 "-o", str(folder / "net.snn")]) == 0
    return folder
