#!/bin/sh
# demo.sh: install what is missing, build, and run `payhook demo`:
# a GOV.UK Pay simulator, payhook and a subscriber on loopback, with
# payments flowing through their lifecycle. Ends by itself.
set -eu
cd "$(dirname "$0")/.."
scripts/setup-deps.sh build
scripts/build.sh build
exec build/payhook demo "$@"
