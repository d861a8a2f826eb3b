"""The max-pool gate's tie-break, run on every exported simulator (a scenario test, skipped per missing one).

Two equally active cells of one window spike in alternate steps, so their counts tie after every
other step (test_semantics.tie_net). The leader must keep the window through every tie: each
script's gate passes exactly the spikes the reference simulator's does, 5 in 10 steps, in both cell
orders. Hand-built, with exact binary-fraction currents, so the comparison is exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from script_runner import every_simulator, export_and_run
from snnexport.simulator import simulate
from test_semantics import tie_net

STEPS = 10


@pytest.mark.parametrize("writer", every_simulator())
@pytest.mark.parametrize("first", ["a", "b"])
def test_every_simulator_keeps_the_leader_on_ties(writer: str, first: str, tmp_path: Path) -> None:
    net, x = tie_net(first)
    ours = export_and_run(writer, net, x, tmp_path, STEPS)
    ref = simulate(net, x, steps=STEPS, delay="step")
    assert ref["gate_counts_0"][0, 0] == STEPS // 2
    np.testing.assert_array_equal(ours["gate_counts_0"], ref["gate_counts_0"])
    for key in ("counts_0", "counts_1", "counts_2"):
        np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)
