"""The reference simulator: docs/semantics.md, vectorized over samples and time, compiled with JAX.

Modules: :mod:`.lowering` (op class → JAX function, a registry), :mod:`.gates` (max-pool gates and
the window-major layout), :mod:`.kernel` (the jitted program), :mod:`.plan` (batching),
:mod:`.devices` (a call's groups split over local devices), :mod:`.run` (:func:`simulate`),
:mod:`.ann` (the ANN of the description), :mod:`.cache` (compiled programs by structure).
Shards over processes: :mod:`snnexport.shards`.

How it works
------------
The network is feed-forward and every population sees its sources one step late ("step" delay,
as every exported script) or in the same step ("zero", the paper's zero latency). Either way,
once a population's sources have been simulated over a stretch of steps, its input current over
that whole stretch is known. So time is cut into chunks of Tc steps and, chunk by chunk, every
population is simulated in topological order: its current for the chunk comes from one call
per projection on ``group × Tc`` rows (time folded into the batch), then the integrate-and-fire
recurrence runs over the Tc steps element-wise. Tc = 1 is the plain scan over steps; Tc = T folds
a sample's whole run into one call per projection. A max-pool gate is evaluated inside the step
of the population it gates (it needs that step's spikes and running counts); a population with
one gate whose windows tile it is stored window-major, and the convolution feeding it writes
its output in that order directly (one strided convolution per window cell). The analog
input's current is computed once per sample. One jitted ``lax.scan`` over chunks simulates a
group of samples, ``lax.map`` runs the groups of a call, and on a CPU the calls of a run go to
one thread per core (independent samples; JAX runs concurrent calls in parallel).

What was measured (development machine: 2 shared cores, JAX 0.10.2 CPU; all per row or per
sample-step, CPU time; ``benchmarks/simulator_throughput.py --detail`` repeats the main ones)
-----------------------------------------------------------------------------------------------
* JAX versus numpy. LeNet's second convolution (16→32, 5×5 on 12×12 binary spikes):
  ``lax.conv_general_dilated`` 10–14 µs per row at 10–100 rows per call, 23 µs at 200, 45–110 µs
  at 400–1,000 (out of cache); numpy 80–1,600 µs (im2col + matmul; 1,000 µs ``ops.Conv2D``'s
  einsum). im2col, shifted matmuls and ``conv_general_dilated_patches`` in JAX were 2–5× slower
  than the native convolution. The neuron update alone (9,216 neurons: add, compare, subtract)
  was 4–5 µs in numpy and 2.5–9 µs in a jitted scan, so the element-wise part gave no reason to
  leave JAX either: everything runs in JAX, and the same program runs on a GPU.
* Fold versus scan, the bundled LeNet at T = 100 (CPU µs per sample-step): batch 1 — scan
  (Tc = 1) 39–43, fold Tc = 10 29–31, Tc = 25 27–36, full fold Tc = 100 34–36; batch 100 —
  scan (group 100, Tc = 1) 42–47, group 10 × Tc 10 37–42, group 2 × Tc 10 27–34, group 1 × Tc 25
  27–28, group 1 × Tc 100 29–34. A population's state over a chunk must stay in cache: the first
  layer's update (9,216 neurons and its gate) cost 6 µs per sample-step at 1 sample, 11 at 10
  and 16 at 100. Hence :func:`.plan.plan`: rows = group × Tc limited so that the largest population's
  state over a chunk stays under :data:`.plan.CPU_BYTES`, about :data:`.plan.CPU_STEPS` steps per chunk.
* Gates: comparing window cells stored contiguously was 2.3–2.6× faster than strided slices of
  the natural layout; running counts carried through the steps beat ``cumsum`` over a chunk
  (7× slower at Tc = 100, where it is an ``associative_scan``).
* Against T ANN forward passes of the same batch (same JAX ops, ``ann_program``): CPU-time ratio
  0.2 at batch 1, 0.7–0.8 at batch 100, 0.5–0.7 at batch 1,000 (the benchmark prints wall too;
  on a shared machine the wall clock mostly measures the neighbours).
On a GPU the row budget is :data:`.plan.GPU_ROWS` (large calls are what GPUs want), without threads.

Numbers
-------
Spikes, currents and the membrane potential are float32 (JAX's default; no x64 mode);
convolutions and matmuls ask for ``Precision.HIGHEST`` so that a GPU does not drop to TF32.
In one step the current is ``(bias + Σ analog input projections) + Σ spiking projections``
(in projection order), then ``V ← V + I``. A simulator that sums the same float32 numbers in
another order can differ where V lands within rounding of θ: rare (the tests compare with a
literal step-by-step numpy reading of the semantics). Spike counts are carried as float32, exact
below 2**24 steps. For the same inputs and settings the results are the same bit for bit
whatever the batch size, however many samples a run holds, on how many devices of one kind and
in how many shards: every group has the same number of rows, fixed by :func:`.plan.plan` from the
network alone (tested). The tuning overrides
``group`` and ``chunk_steps`` change that row count, and a matrix product may then round its last
bit differently on some CPUs (the back-end allowance of docs/semantics.md); with exactly
representable sums they change nothing (tested).
"""

from __future__ import annotations

from .ann import ann_activations, ann_predict, ann_program
from .lowering import chain
from .plan import plan
from .run import results_meta, run_plan, simulate

__all__ = ["simulate", "results_meta", "run_plan", "ann_activations", "ann_predict", "ann_program", "plan", "chain"]

