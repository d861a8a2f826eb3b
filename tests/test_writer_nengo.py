"""What is specific to the Nengo scripts: the transforms they build. Each projection becomes a native
Nengo transform where one fits exactly (nengo.Convolution, grouped or 1x1, nengo.Dense) and a
nengo.transforms.Sparse of the expanded synapses elsewhere; ``--transforms sparse`` builds Sparse
everywhere, and both match the reference. The contract every writer keeps is tested in
tests/test_writer_contract.py, the semantics in tests/test_semantics.py.
"""

from __future__ import annotations

from backends import Reference, assert_agree
from conftest import STEPS, needs
from script_runner import run_script
from snnexport.scriptlib import runtime

pytestmark = needs("nengo")


def _connections(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("nengo: connections: "))


def test_native_and_sparse_transforms_both_match_the_reference(zoo, zoo_runs):
    net, x = zoo("lenet")
    script, native_out, native = zoo_runs("nengo", "lenet")  # the contract's run: native transforms
    native_kinds = _connections(native_out)
    assert "nengo.Convolution" in native_kinds and "nengo.Dense" in native_kinds, native_kinds
    out = script.parent / "sparse.npz"
    proc = run_script(script, "--steps", str(STEPS), "--transforms", "sparse", "--out", str(out))
    kinds = _connections(proc.stdout)
    assert "nengo.transforms.Sparse" in kinds and "Convolution" not in kinds and "Dense" not in kinds, kinds
    sparse = runtime.load_results(out)
    reference = Reference().run(net, x, steps=STEPS)
    assert_agree(sparse, reference)
    assert_agree(native, reference)
