# Sourced by scripts/*: make .venv if needed and install the project (with $1 extras).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=".venv/.installed-$1"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
    if [ "$1" = "none" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
    else
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$1]"
    fi
    touch "$stamp"
fi
