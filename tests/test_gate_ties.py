"""The max-pool gate's tie-break, run on every exported simulator (a scenario test, skipped per missing one).

Two equally active cells of one window spike in alternate steps, so their counts tie after every
other step (test_semantics.tie_net). The leader must keep the window through every tie: each
script's gate passes exactly the spikes the reference simulator's does, 5 in 10 steps, in both cell
orders. Hand-built, with exact binary-fraction currents, so the comparison is exact.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from script_runner import run_for_results
from snnexport.simulator import simulate
from snnexport.writers import get
from snnexport.writers.base import WriteOptions
from test_semantics import tie_net

STEPS = 10
SIMULATOR_MODULE = {"brian2": "brian2", "nest": "nest", "pynn": "pyNN", "nengo": "nengo"}


@pytest.mark.parametrize("writer", sorted(SIMULATOR_MODULE))
@pytest.mark.parametrize("first", ["a", "b"])
def test_every_simulator_keeps_the_leader_on_ties(writer: str, first: str, tmp_path: Path) -> None:
    module = SIMULATOR_MODULE[writer]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'snnexport[{writer}]')")
    net, x = tie_net(first)
    script = tmp_path / f"ties_{writer}.py"
    rendered = get(writer).render(net, WriteOptions(output=script))
    script.write_bytes(rendered.main)
    for name, content in rendered.beside.items():
        (tmp_path / name).write_bytes(content)
    ours = run_for_results(script, x, "--steps", str(STEPS))
    ref = simulate(net, x, steps=STEPS, delay="step")
    assert ref["gate_counts_0"][0, 0] == STEPS // 2
    np.testing.assert_array_equal(ours["gate_counts_0"], ref["gate_counts_0"])
    for key in ("counts_0", "counts_1", "counts_2"):
        np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)
