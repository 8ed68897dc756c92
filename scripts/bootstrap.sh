# Create .venv beside the project and install it, with extras when given.
# Sourced by the other scripts; $1 is the pip extras spec, e.g. "[test]".
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=".venv/.installed${1:-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "Installing Lianban into .venv (pip's output goes to .venv/install.log)"
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e ".${1:-}"; } > .venv/install.log 2>&1; then
        tail -n 30 .venv/install.log >&2
        echo "Installing failed; the whole log is in .venv/install.log." >&2
        exit 1
    fi
    touch "$stamp"
fi
