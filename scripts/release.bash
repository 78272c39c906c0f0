#!/usr/bin/env bash
# The release steps of .buildkite/pipeline.yml; RELEASING.md says how they fit together.
#
#   release.bash build     on a release/vX.Y.Z branch: check the version, build the binaries and
#                          dist/SHA256SUMS (scripts/compile.bash, as deno task compile), and put them
#                          on a draft GitHub release. Once dist/SHA256SUMS is committed on the
#                          branch, check the draft's binaries against it instead of rebuilding.
#   release.bash publish   on the tag vX.Y.Z: download the draft's binaries, check each against the
#                          dist/SHA256SUMS the tagged commit carries, and publish the release
#   release.bash check     print the version, once deno.json, _constants.ts and CHANGELOG.md agree
#
# JSR publishing is .github/workflows/jsr.yml's (tokenless, with GitHub's OIDC token). No step here
# puts a secret on a command line, where any process on the agent can read it: gh reads GH_TOKEN
# from the environment.
# The binaries are built once, before the tag: the hooks verify a downloaded binary against the
# dist/SHA256SUMS of the plugin version they run as, which the tagged commit must already hold, and
# deno compile does not build the same bytes twice (it embeds timestamps), so binaries rebuilt on
# the tag could never match it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The repository whose releases lib/plugin.bash downloads binaries from.
repo="${TOKEN_EXCHANGE_RELEASE_REPO:-equinixmetal-buildkite/token-exchange-buildkite-plugin}"

fail() {
  printf '🚨 %s\n' "$@" >&2
  exit 1
}

# deno_json_version: the "version" of deno.json.
deno_json_version() {
  sed -n 's/^ *"version": "\(.*\)",*$/\1/p' deno.json | head -n 1
}

# check_version VERSION: deno.json, _constants.ts and CHANGELOG.md all name VERSION.
check_version() {
  local version="$1" constant
  [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "\"${version}\" is not a version such as 1.2.3"
  [[ "$(deno_json_version)" == "$version" ]] ||
    fail "deno.json has version \"$(deno_json_version)\", not \"${version}\": bump it (see RELEASING.md)"
  constant="$(sed -n 's/^export const VERSION: string = "\(.*\)";$/\1/p' _constants.ts)"
  [[ "$constant" == "$version" ]] ||
    fail "_constants.ts has VERSION \"${constant}\", not \"${version}\": bump it (see RELEASING.md)"
  grep -q "^## \[${version//./\\.}\] - [0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}$" CHANGELOG.md ||
    fail "CHANGELOG.md has no \"## [${version}] - YYYY-MM-DD\" entry: add one (see RELEASING.md)"
}

# release_notes VERSION: the CHANGELOG.md entry for VERSION, without its heading.
release_notes() {
  awk -v heading="## [$1]" '
    index($0, heading) == 1 { on = 1; next }
    on && (/^## / || /^\[/) { exit }
    on { print }
  ' CHANGELOG.md
}

# github_token: GH_TOKEN for gh, from the environment or else the cluster's Buildkite secrets.
github_token() {
  if [[ -z "${GH_TOKEN:-}" ]]; then
    GH_TOKEN="$(buildkite-agent secret get GITHUB_RELEASE_TOKEN)"
    export GH_TOKEN
  fi
}

# sha256_check: checks the files dist/SHA256SUMS lists, in dist/.
sha256_check() {
  if command -v sha256sum >/dev/null 2>&1; then
    (cd dist && sha256sum --check --strict SHA256SUMS)
  else
    (cd dist && shasum -a 256 --check --strict SHA256SUMS)
  fi
}

# check_sums_file: dist/SHA256SUMS is committed and lists the 4 binaries scripts/compile.bash builds.
check_sums_file() {
  local line count=0
  git ls-files --error-unmatch dist/SHA256SUMS >/dev/null 2>&1 ||
    fail "This commit has no dist/SHA256SUMS: commit the one the release branch build made (see RELEASING.md)"
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^[0-9a-f]{64}\ \ token-exchange-[a-z0-9_-]+$ ]] ||
      fail "dist/SHA256SUMS has a line that is not \"<sha256>  token-exchange-<target>\": ${line}"
    count=$((count + 1))
  done <dist/SHA256SUMS
  [[ "$count" -eq 4 ]] || fail "dist/SHA256SUMS lists ${count} binaries, not the 4 scripts/compile.bash builds"
}

# verify_release TAG: downloads the binaries of GitHub release TAG and checks each against the
# committed dist/SHA256SUMS, as the hooks will before they run one.
verify_release() {
  local tag="$1"
  check_sums_file
  gh release download "$tag" --repo "$repo" --pattern 'token-exchange-*' --dir dist --clobber
  sha256_check ||
    fail "The binaries on the GitHub release ${tag} are not the ones dist/SHA256SUMS pins: the hooks would refuse them, so nothing was published" \
      "Remove dist/SHA256SUMS from release/${tag} so that its next build makes new binaries, then commit the dist/SHA256SUMS that build shows"
}

build() {
  local branch="${BUILDKITE_BRANCH:?BUILDKITE_BRANCH is not set: run this from the pipeline}"
  [[ "$branch" == release/v* ]] || fail "Branch \"${branch}\" is not a release branch such as release/v1.2.3"
  local version="${branch#release/v}" tag notes draft
  tag="v${version}"
  check_version "$version"
  github_token
  draft="$(gh release view "$tag" --repo "$repo" --json isDraft --jq .isDraft 2>/dev/null || true)"
  [[ "$draft" != false ]] || fail "GitHub release ${tag} is already published: bump the version for a new release"
  if git ls-files --error-unmatch dist/SHA256SUMS >/dev/null 2>&1; then
    # Building again would make binaries with other checksums than the ones just committed.
    echo "dist/SHA256SUMS is committed: checking the draft release's binaries against it, not rebuilding"
    verify_release "$tag"
    echo "Draft GitHub release ${tag} matches dist/SHA256SUMS: merge ${branch}, then push the tag ${tag}"
    return 0
  fi
  bash scripts/compile.bash
  notes="$(mktemp)"
  release_notes "$version" >"$notes"
  if [[ "$draft" == true ]]; then
    gh release upload "$tag" --repo "$repo" --clobber dist/token-exchange-* dist/SHA256SUMS
  else
    gh release create "$tag" --repo "$repo" --draft --title "$tag" --notes-file "$notes" \
      dist/token-exchange-* dist/SHA256SUMS
  fi
  rm -f "$notes"
  if [[ -n "${BUILDKITE_JOB_ID:-}" ]]; then
    {
      # shellcheck disable=SC2016 # the backticks are Markdown
      printf 'Draft release %s holds these binaries. Commit this as `dist/SHA256SUMS` on %s, then merge and push the tag %s (see RELEASING.md):\n\n```\n' "$tag" "$branch" "$tag"
      cat dist/SHA256SUMS
      printf '```\n'
    } | buildkite-agent annotate --style info --context release
  fi
  echo "Draft GitHub release ${tag} has the binaries. Commit this as dist/SHA256SUMS on ${branch}:"
  cat dist/SHA256SUMS
}

publish() {
  local tag="${BUILDKITE_TAG:?BUILDKITE_TAG is not set: run this from the pipeline on a tag}"
  [[ "$tag" == v* ]] || fail "Tag \"${tag}\" is not a release tag such as v1.2.3"
  check_version "${tag#v}"
  github_token
  verify_release "$tag"
  gh release upload "$tag" --repo "$repo" --clobber dist/SHA256SUMS
  gh release edit "$tag" --repo "$repo" --draft=false
}

case "${1:-}" in
  build | publish) "$1" ;;
  # What the release steps check first: deno.json, _constants.ts and CHANGELOG.md agree.
  check) check_version "$(deno_json_version)" && printf '%s\n' "$(deno_json_version)" ;;
  *) fail "Usage: $0 build|publish|check (JSR is published by .github/workflows/jsr.yml)" ;;
esac
