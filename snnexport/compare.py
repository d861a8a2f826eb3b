"""Comparing results files: of two simulators, or of a simulator against the ANN."""

from __future__ import annotations

import numpy as np


def population_counts(results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """name → (N, neurons) spike counts of every population in a results dict."""
    names = [str(n) for n in results["population_names"]]
    return {name: results[f"counts_{k}"] for k, name in enumerate(names)}


def identical_fraction(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Per population, and 'all': the fraction of (sample, neuron) spike counts that are identical."""
    ca, cb = population_counts(a), population_counts(b)
    if list(ca) != list(cb):
        raise ValueError("the results describe different populations")
    out, same, total = {}, 0, 0
    for name in ca:
        x, y = ca[name], cb[name]
        n = min(len(x), len(y))
        eq = x[:n] == y[:n]
        out[name] = float(eq.mean()) if eq.size else 1.0
        same += int(eq.sum())
        total += eq.size
    out["all"] = same / total if total else 1.0
    return out


def rate_fit(rates: np.ndarray, activations: np.ndarray) -> dict[str, float | bool]:
    """Pearson r, least-squares slope (through 0) and RMSE of SNN rates × λ against ANN activations;
    ``silent``: the layer never spiked. r is undefined (nan) where either side is constant: a silent
    layer is not a perfect fit, whatever the ANN does."""
    r = rates.reshape(-1).astype(np.float64)
    a = activations.reshape(-1).astype(np.float64)
    pearson = float("nan") if r.std() == 0 or a.std() == 0 else float(np.corrcoef(r, a)[0, 1])
    slope = float((r @ a) / (a @ a)) if a @ a > 0 else 0.0
    return {"pearson": pearson, "slope": slope, "rmse": float(np.sqrt(np.mean((r - a) ** 2))),
            "silent": not r.any()}
