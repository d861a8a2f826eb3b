"""What an exported script's ``main()`` collects: each sample's results, then the results file and a summary.

Only scripts use this module (numpy and the standard library only, see :mod:`snnexport.scriptlib`).
"""

import sys

import numpy as np

from .runtime import early_decision, save_results


class Recorder:
    """Collects one run's per-sample results and writes the shared results file."""

    def __init__(self, population_names, gate_names, steps, classes, decision=None):
        self.decision = decision  # the early-decision rule (runtime.decision_rule), or None
        self.population_names = list(population_names)
        self.gate_names = list(gate_names)
        self.steps = steps
        self.classes = classes
        self.rows = []

    def add(self, counts, gate_counts, output_steps, output_v, spikes_per_step, prediction, label=-1):
        """One sample: counts/gate_counts are lists of flat arrays in network order. Returns the prediction,
        which early decision (if asked for) may have made earlier."""
        step = None
        if self.decision is not None:
            d, c = early_decision(np.asarray(output_steps)[None], self.decision["margin"])
            step, prediction = int(d[0]), (int(c[0]) if c[0] >= 0 else prediction)
        self.rows.append((counts, gate_counts, np.asarray(output_steps), np.asarray(output_v, np.float32),
                          np.asarray(spikes_per_step), int(prediction), int(label), step))
        return int(prediction)

    def arrays(self):
        rows = self.rows
        out = {
            "predictions": np.array([r[5] for r in rows], np.int64),
            "labels": np.array([r[6] for r in rows], np.int64),
            "output_steps": np.stack([r[2] for r in rows]).astype(np.int16),
            "output_v": np.stack([r[3] for r in rows]).astype(np.float32),
            "spikes_per_step": np.stack([r[4] for r in rows]).astype(np.int32),
            "population_names": np.array(self.population_names, dtype=str),
            "gate_names": np.array(self.gate_names, dtype=str),
        }
        out["output_counts"] = out["output_steps"].astype(np.int64).sum(axis=1)
        if self.decision is not None:
            out["decision_steps"] = np.array([r[7] for r in rows], np.int32)
        for k in range(len(self.population_names)):
            out[f"counts_{k}"] = np.stack([r[0][k] for r in rows]).astype(np.int32)
        for k in range(len(self.gate_names)):
            out[f"gate_counts_{k}"] = np.stack([r[1][k] for r in rows]).astype(np.int32)
        return out

    def save(self, path, meta):
        save_results(path, self.arrays(), meta)

    def summary(self, out=None):
        out = out or sys.stdout  # (looked up now: under MPI the scripts point other ranks' stdout elsewhere)
        arrays = self.arrays()
        n = len(self.rows)
        labels = arrays["labels"]
        known = labels >= 0
        print(f"samples: {n}, steps: {self.steps}", file=out)
        for k, name in enumerate(self.population_names):
            c = arrays[f"counts_{k}"]
            print(f"  {name!r}: {np.abs(c).sum() / max(n, 1):.1f} spikes per sample "
                  f"({c.shape[1]} neurons)", file=out)
        preds = arrays["predictions"]
        if self.decision is not None and n:
            print(f"early decision: at step {arrays['decision_steps'].mean():.1f} of {self.steps} on average",
                  file=out)
        print("predicted classes:", " ".join(map(str, preds[:20])) + (" ..." if n > 20 else ""), file=out)
        if known.any():
            acc = float((preds[known] == labels[known]).mean())
            print(f"accuracy: {acc * 100:.2f} % on {int(known.sum())} labelled samples", file=out)
