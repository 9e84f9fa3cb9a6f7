#!/usr/bin/env bash
# Set up ./.venv (git-ignored): torch + torchvision, then basicsr 1.4.2 without build isolation (its setup_requires
# would otherwise pull a second torch into pip's build environment), then this plugin, editable, with test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.14.1 torchvision==0.29.1
pip install -q --no-build-isolation basicsr==1.4.2
pip install -q -e '.[test,onnx,spandrel]'
