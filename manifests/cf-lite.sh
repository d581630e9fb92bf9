#!/usr/bin/env bash
# Deploys the CF + Diego sample in one shot on the embedded local CPI: builds rosh, makes the
# local stemcell, creates and uploads both releases (releases/cf-lite, releases/diego-lite), sets
# the local cloud config, deploys manifests/cf-lite.yml (arguments are passed on to `deploy`,
# e.g. -o manifests/operations/scale-cells.yml -v cell_instances=3), runs the smoke-tests errand
# (an app pushed with 2 instances must answer through the routers) and shows the instances.
#
# The director's state goes to $ROSH_STATE_DIR (default ~/.rosh); set ROSH to use another rosh
# binary than target/release/rosh (then nothing is built). VMs are local processes on
# 127.77.0.0/16 and keep running after this script; remove them with
#   target/release/rosh -d cf-lite delete-deployment
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${ROSH:-}" ]; then
  cargo build --release --quiet
  ROSH=target/release/rosh
fi
rosh() { "$ROSH" "$@"; }

rosh create-stemcell --local --tarball target/local-stemcell.tgz
rosh upload-stemcell target/local-stemcell.tgz
for release in cf-lite diego-lite; do
  # --force: build even when the checkout has local changes (a dev release says so itself).
  rosh create-release "releases/$release" --force --tarball "target/$release.tgz"
  rosh upload-release "target/$release.tgz"
done
rosh update-cloud-config manifests/cloud-config-local.yml
rosh -d cf-lite deploy manifests/cf-lite.yml "$@"
rosh -d cf-lite run-errand smoke-tests
rosh -d cf-lite instances --ps 2>/dev/null || true
