# shellcheck shell=bash
# Without Deno on the agent: the release binary of this plugin version, downloaded once into a
# cache, and checked against the SHA-256 that the release pins before every run (another job on the
# agent can change a cached file). lib/plugin.bash sources this file only when there is no deno.
# Written for bash 3.2 (macOS) and later; functions only.

# Where release binaries are downloaded from when Deno is not installed; a mirror can replace it.
TOKEN_EXCHANGE_DEFAULT_DOWNLOAD_URL=https://github.com/equinixmetal-buildkite/token-exchange-buildkite-plugin/releases/download

# token_exchange_target VAR: VAR = the Rust target triple of this machine, as deno compile names it.
token_exchange_target() {
  local os arch
  case "$(uname -s)" in
    Linux) os=unknown-linux-gnu ;;
    Darwin) os=apple-darwin ;;
    *) os="" ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    arm64 | aarch64) arch=aarch64 ;;
    *) arch="" ;;
  esac
  if [[ -z "$os" || -z "$arch" ]]; then
    printf -v "$1" '%s' ""
  else
    printf -v "$1" '%s' "${arch}-${os}"
  fi
}

# token_exchange_sha256 FILE: prints the SHA-256 of FILE. openssl first: on a 90 MiB binary it takes
# about 0.1 s where sha256sum takes 0.23 s (docs/performance.md), and the hook hashes before every run.
token_exchange_sha256() {
  local sum
  if command -v openssl >/dev/null 2>&1 && sum="$(openssl dgst -sha256 <"$1" 2>/dev/null)"; then
    sum="${sum##* }"
  elif command -v sha256sum >/dev/null 2>&1; then
    sum="$(sha256sum <"$1")" || return 1
  elif command -v shasum >/dev/null 2>&1; then
    sum="$(shasum -a 256 <"$1")" || return 1
  else
    return 1
  fi
  printf '%s' "${sum%% *}"
}

# token_exchange_verified FILE EXPECTED: FILE is a regular file (not a link) whose SHA-256 is
# EXPECTED; otherwise a failure (token_exchange_fail) and status 1.
token_exchange_verified() {
  local file="$1" expected="$2" actual what="${3:-cached}"
  if [[ -L "$file" || ! -f "$file" ]]; then
    token_exchange_fail "The ${what} token-exchange binary ${file} is not a regular file: it was not run" \
      "Remove it so the next job downloads it again"
    return 1
  fi
  if ! actual="$(token_exchange_sha256 "$file")"; then
    token_exchange_fail "Cannot verify the token-exchange binary: neither sha256sum nor shasum is installed or can read ${file}"
    return 1
  fi
  if [[ "$actual" != "$expected" ]]; then
    token_exchange_fail "The ${what} token-exchange binary has SHA-256 ${actual}, not the ${expected} this plugin version pins: it was not run" \
      "${4:-Remove ${file} so the next job downloads it again; if this repeats, something on this agent changes the cache}"
    return 1
  fi
}

# token_exchange_binary VAR PLUGIN_DIR: VAR = the path of this release's CLI binary, downloaded into
# the cache on first use and checked against the pinned SHA-256 before every run (another job on
# the agent can change a cached file). Never runs, or leaves where it would be run, an unverified file.
token_exchange_binary() {
  local plugin_dir="$2" target version="" expected="" line url cache binary tmp
  local install="install Deno 2 on the agent (https://docs.deno.com/runtime/getting_started/installation/), which the plugin then uses directly"
  token_exchange_target target
  if [[ -z "$target" ]]; then
    token_exchange_fail "Deno is not installed, and there is no token-exchange binary for $(uname -s) $(uname -m): ${install}"
    return 1
  fi
  while IFS= read -r line || [[ -n "$line" ]]; do
    case "$line" in
      *'"version": "'*) version="${line#*\"version\": \"}" && version="${version%%\"*}" && break ;;
    esac
  done <"${plugin_dir}/deno.json"
  if [[ -f "${plugin_dir}/dist/SHA256SUMS" ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do
      case "$line" in
        *"  token-exchange-${target}") expected="${line%% *}" ;;
      esac
    done <"${plugin_dir}/dist/SHA256SUMS"
  fi
  if [[ ! "$expected" =~ ^[0-9a-f]{64}$ ]]; then
    token_exchange_fail "Deno is not installed, and this plugin ref has no release binary (only release tags such as v${version} have them): ${install}, or pin the plugin to a release tag"
    return 1
  fi
  cache="${TOKEN_EXCHANGE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/token-exchange-buildkite-plugin}/v${version}"
  binary="${cache}/token-exchange-${target}"
  if [[ -e "$binary" || -L "$binary" ]]; then
    token_exchange_verified "$binary" "$expected" || return 1
    printf -v "$1" '%s' "$binary"
    return 0
  fi
  url="${TOKEN_EXCHANGE_DOWNLOAD_URL:-$TOKEN_EXCHANGE_DEFAULT_DOWNLOAD_URL}"
  url="${url%/}/v${version}/token-exchange-${target}"
  echo "Deno is not installed: downloading token-exchange v${version} for ${target} (once per version)"
  if ! command -v curl >/dev/null 2>&1; then
    token_exchange_fail "Deno is not installed and curl is not available to download the token-exchange binary: ${install}"
    return 1
  fi
  if ! mkdir -p "$cache" 2>/dev/null; then
    token_exchange_fail "Cannot create the binary cache ${cache}: set TOKEN_EXCHANGE_CACHE_DIR to a writable directory, or ${install}"
    return 1
  fi
  if ! tmp="$(mktemp "${cache}/.download.XXXXXXXX" 2>/dev/null)"; then
    token_exchange_fail "Cannot create a file in the binary cache ${cache}: set TOKEN_EXCHANGE_CACHE_DIR to a writable directory, or ${install}"
    return 1
  fi
  local -a curl_args=(--fail --silent --show-error --location --retry 3 --connect-timeout 10 --max-time 300)
  [[ "$url" != https://* ]] || curl_args+=(--proto-redir "=https")
  local curl_error
  if ! curl_error="$(curl "${curl_args[@]}" --output "$tmp" "$url" 2>&1)"; then
    token_exchange_fail "Cannot download the token-exchange binary from ${url}: ${curl_error//[[:cntrl:]]/ }" \
      "Check the agent can reach it, set TOKEN_EXCHANGE_DOWNLOAD_URL to a mirror, or ${install}"
    rm -f "$tmp"
    return 1
  fi
  if ! token_exchange_verified "$tmp" "$expected" downloaded \
    "Check TOKEN_EXCHANGE_DOWNLOAD_URL (${url}) serves the v${version} release, or ${install}"; then
    rm -f "$tmp"
    return 1
  fi
  if ! chmod 0500 "$tmp" 2>/dev/null || ! mv -f "$tmp" "$binary" 2>/dev/null; then
    rm -f "$tmp"
    token_exchange_fail "Cannot move the verified token-exchange binary into the cache ${cache}: set TOKEN_EXCHANGE_CACHE_DIR to a writable directory, or ${install}"
    return 1
  fi
  printf -v "$1" '%s' "$binary"
}
