#!/usr/bin/env bash
# Fails when gen/ differs from what `buf generate` writes for proto/.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r proto buf.yaml buf.gen.yaml "$scratch"/
[ -f buf.lock ] && cp buf.lock "$scratch"/
(cd "$scratch" && PATH="$OLDPWD/node_modules/.bin:$PATH" buf generate)
if ! diff -r gen "$scratch/gen"; then
  echo "gen/ is stale: run 'npm run generate' and commit the result" >&2
  exit 1
fi
echo "gen/ matches proto/"
