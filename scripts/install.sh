#!/usr/bin/env bash
# Install qsmflow into a virtual environment. Used by the Makefile, CI and the Dockerfile,
# so that the image's install recipe is the one that is tested.
#   bash scripts/install.sh VENV_DIR [EXTRAS]      (EXTRAS default: test)
# EXTRAS "" installs the runtime only, and not in editable mode (as in the image).
# Environment:
#   QSMFLOW_TORCH            torch requirement (default: torch==2.13.0)
#   QSMFLOW_TORCH_INDEX_URL  index to take torch from, e.g. PyTorch's CPU or CUDA index
#                            (default: pip's own configuration)
#   QSMFLOW_INSTALL_STEP     all (default) | deps | package | check. "deps" installs torch
#                            and the dependencies listed in pyproject.toml without qsmflow
#                            (it needs only pyproject.toml: the Dockerfile caches it as a
#                            layer); "package" then installs qsmflow itself; "check"
#                            proves that an installed qsmflow runs offline: the default
#                            atlas builds from installed files and the NSIDL weights load.
#   QSMFLOW_REQUIRE_NSIDL_WEIGHTS  true (default) | false: whether "check" fails without
#                            usable NSIDL weights (false: classical inversions only).
set -euo pipefail
venv=${1:-.venv}
case "$venv" in
  /*) ;;
  *) venv=$PWD/$venv ;;
esac
extras=${2-test}
here=$(cd "$(dirname "$0")/.." && pwd)
torch_pin=${QSMFLOW_TORCH:-torch==2.13.0}
step=${QSMFLOW_INSTALL_STEP:-all}
case "$step" in
  all | deps | package | check) ;;
  *)
    echo "install.sh: QSMFLOW_INSTALL_STEP must be all, deps, package or check, not '$step'" >&2
    exit 2
    ;;
esac
py="$venv/bin/python"

if [ "$step" = all ] || [ "$step" = deps ]; then
  python3 -m venv "$venv"
  "$py" -m pip install --quiet --upgrade pip
  # torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
  torch_index=()
  if [ -n "${QSMFLOW_TORCH_INDEX_URL:-}" ]; then
    torch_index=(--index-url "$QSMFLOW_TORCH_INDEX_URL")
  fi
  "$py" -m pip install --quiet ${torch_index[@]+"${torch_index[@]}"} "$torch_pin"
  # The dependencies (and extras) that pyproject.toml lists, without qsmflow itself.
  if ! "$py" -c "import tomllib" 2>/dev/null; then
    "$py" -m pip install --quiet "tomli>=2"  # Python 3.10
  fi
  requirements=$("$py" - "$here/pyproject.toml" "$extras" <<'EOF'
import sys

try:
    import tomllib
except ImportError:
    import tomli as tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
extras = [e for e in sys.argv[2].split(",") if e.strip()]
requirements = list(project["dependencies"])
for extra in extras:
    requirements += project["optional-dependencies"][extra.strip()]
print("\n".join(requirements))
EOF
  )
  mapfile -t requirements <<<"$requirements"
  "$py" -m pip install --quiet "${requirements[@]}"
fi

if [ "$step" = all ] || [ "$step" = package ]; then
  if [ -n "$extras" ]; then
    "$py" -m pip install --quiet -e "${here}[${extras}]"
  else
    "$py" -m pip install --quiet "$here"
  fi
  "$py" -c "import qsmflow, torch; print('qsmflow', qsmflow.__version__, 'torch', torch.__version__)"
fi

if [ "$step" = check ]; then
  # From an empty folder, so that Python imports the installed qsmflow, not a source tree.
  atlas_dir=$(mktemp -d)
  cd "$atlas_dir"
  # Built where runs look for it (qsmflow.atlases.atlas_cache_dir), so that none rebuilds it.
  "$py" -c "import sys; from pathlib import Path; from qsmflow.atlases import atlas_cache_dir, \
default_atlas; atlas = default_atlas(atlas_cache_dir(Path(sys.argv[1]))); \
print('default atlas:', atlas.name, atlas.space, 'in', atlas.labels.parent)" "$atlas_dir"
  if ! "$py" -c "import sys; from qsmflow.dl.weights import WeightsError, load_nsidl
try:
    print('NSIDL weights sha256:', load_nsidl()[1])
except WeightsError as err:
    sys.exit(f'install.sh: {err}')"; then
    if [ "${QSMFLOW_REQUIRE_NSIDL_WEIGHTS:-true}" = true ]; then
      echo "install.sh: no usable NSIDL weights in qsmflow/data (above). Set" \
        "QSMFLOW_REQUIRE_NSIDL_WEIGHTS=false for a classical-only install." >&2
      exit 1
    fi
    echo "install.sh: WITHOUT NSIDL weights: only --inversion tkd|cfl2|ndi will run"
  fi
  cd / && rm -rf "$atlas_dir"
fi
