"""The code embedded verbatim into every exported script, and imported by snnexport itself.

Inputs, random draws, synapse expansion, max-pool gating, readout and the results file exist once
here, so the package and every script do them the same way. The rules for these modules (checked
by tests/test_scriptlib.py):

* **numpy and the standard library only**: a script needs nothing but its simulator and numpy;
* **explicit imports between them**: a module that uses another's function imports it by name
  (``from .runtime import gate_pass``), so each module works when imported alone and pyflakes sees
  every name it uses;
* **embedded in a fixed order**: :data:`MODULES` lists them so that each comes after the modules it
  imports. A writer names the modules its scripts need; :func:`snnexport.writers.script.embedded`
  adds what they import, pastes them in this order without their docstrings, and strips the relative
  import lines (in a script the names are already defined above).
"""

# name → what it holds (the banner above it in a script), in embedding order: dependencies first
MODULES = {
    "connectivity": "kernels -> synapse lists",
    "outputs": "output files, written whole or not at all",
    "runtime": "shared run-time helpers",
    "recorder": "the results of a run",
    "nest_schedule": "NEST timing and gate helpers",
    "nest_memory": "NEST memory per process",
}
