#!/usr/bin/env bash
# The README's main command: deploy the sample (releases/kv + releases/web, manifests/demo.yml)
# on the embedded local CPI, run its smoke-test errand and show the instances.
#
# The director's state goes to $ROSH_STATE_DIR (default ~/.rosh). VMs are local processes on
# 127.77.0.0/16 and keep running after this script; remove them with
#   target/release/rosh -d demo delete-deployment
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
rosh=target/release/rosh

"$rosh" create-stemcell --local --tarball target/local-stemcell.tgz
"$rosh" upload-stemcell target/local-stemcell.tgz
for release in kv web; do
  # --force: build even when the checkout has local changes (a dev release says so itself).
  "$rosh" create-release "releases/$release" --force --tarball "target/$release.tgz"
  "$rosh" upload-release "target/$release.tgz"
done
"$rosh" update-cloud-config manifests/cloud-config-local.yml
"$rosh" -d demo deploy manifests/demo.yml "$@"
"$rosh" -d demo run-errand smoke-tests
"$rosh" -d demo instances --ps 2>/dev/null || true
