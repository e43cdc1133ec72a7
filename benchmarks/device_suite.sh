#!/usr/bin/env bash
# The device suite on a lent GPU machine, as its one command (see docs/benchmarks.md):
#
#   bash benchmarks/fetch_device_wheels.sh            # once, here: wheels into .whl/
#   run tool: command "bash benchmarks/device_suite.sh", carry [".whl"], timeout_s 600
#
# It installs .whl/'s wheels (what iclab needs beyond the machine's image) into /tmp/site
# without the network, puts them and this checkout first on PYTHONPATH, and runs
# benchmarks/device_suite.py with its two result files in $OUT, the folder that comes back.
# Extra arguments go to device_suite.py (e.g. --quick, --budget-s 300). PYTHON and SITE
# override the interpreter and the install folder, to rehearse the run elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl
else
    echo "no wheels in .whl/ (carry it): kirsch and rnn-vs-transformer need mlxtend" >&2
fi
export PYTHONPATH=$SITE:$PWD
PYTHONUNBUFFERED=1 exec "$PYTHON" benchmarks/device_suite.py --out "${OUT:-benchmarks/results}" "$@"
