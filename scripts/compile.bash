#!/usr/bin/env bash
# The release build: one `deno compile` binary per agent platform, and dist/SHA256SUMS, which the
# release commit carries so the hooks can verify a binary before they first run it.
# Needs the internet: deno compile downloads its runtime for each target.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

targets=(
  x86_64-unknown-linux-gnu
  aarch64-unknown-linux-gnu
  x86_64-apple-darwin
  aarch64-apple-darwin
)
# A compiled binary cannot take permission flags at run time, so these are the narrowest that fit
# every configuration: the endpoint's host, the client secret's variable and the job's private
# directory (the plugin's engine writes its files there, and token-file's) are not known yet.
permissions=(--no-prompt --allow-net --allow-run=buildkite-agent --allow-env --allow-read --allow-write "--allow-sys=uid,gid")

rm -rf dist
mkdir dist
for target in "${targets[@]}"; do
  echo "--- deno compile --target ${target}"
  deno compile "${permissions[@]}" --target "$target" --output "dist/token-exchange-${target}" cli.ts
done

cd dist
if command -v sha256sum >/dev/null 2>&1; then
  sha256sum token-exchange-* >SHA256SUMS
else
  shasum -a 256 token-exchange-* >SHA256SUMS
fi
cat SHA256SUMS
echo "Upload dist/token-exchange-* to the GitHub release v$(sed -n 's/^ *"version": "\(.*\)",*$/\1/p' ../deno.json | head -n 1)"
echo "and commit dist/SHA256SUMS in the commit that tag points to."
