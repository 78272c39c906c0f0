# shellcheck shell=bash
# Without Deno on the agent: the release binary of this plugin version, downloaded once into a cache
# and trusted the way ssh (StrictModes) and Go's module cache trust files. Its SHA-256 is verified
# once, when it is downloaded into a private temporary file, which is then made read-only and put in
# place atomically under a name that carries the hash. Before each run the hook checks, with one
# `find`, that no other user could have changed it since: neither the file, nor its directory, nor
# any directory above them, is a link, belongs to another user than this one or root, or may be
# written by another user. It never hashes it again, and never runs a file that fails the check.
# lib/plugin.bash sources this file only when there is no deno. Written for bash 3.2 and later.

# Where release binaries are downloaded from when Deno is not installed; a mirror can replace it.
TOKEN_EXCHANGE_DEFAULT_DOWNLOAD_URL=https://github.com/equinixmetal-buildkite/token-exchange-buildkite-plugin/releases/download

# token_exchange_target VAR: VAR = the Rust target triple of this machine, as deno compile names it
# (from bash's own OSTYPE and HOSTTYPE: no program to start).
token_exchange_target() {
  local os="" arch=""
  case "$OSTYPE" in
    linux*) os=unknown-linux-gnu ;;
    darwin*) os=apple-darwin ;;
  esac
  case "$HOSTTYPE" in
    x86_64 | amd64) arch=x86_64 ;;
    arm64 | aarch64) arch=aarch64 ;;
  esac
  if [[ -n "$os" && -n "$arch" ]]; then printf -v "$1" '%s' "${arch}-${os}"; else printf -v "$1" ''; fi
}

# token_exchange_sha256 FILE: prints the SHA-256 of FILE.
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

# token_exchange_trusted WHAT PATH...: succeeds when no PATH, nor a directory above the last, is one
# that another user could change (a link; a file or directory of another user than this one or
# root; a file others may write; a directory others may write without the sticky bit, its group
# counting as others unless it is this user's own group); otherwise sets the failure, saying WHAT
# was not done, and returns 2. PATHs must not be links themselves, but the directories above them
# are resolved first (cd -P).
token_exchange_trusted() {
  local what="$1" dir path
  shift
  local -a paths=("$@")
  # Every directory above the last PATH (the cache), as the file system has it, up to / (resolved
  # with cd -P only when one of them is a link: a fork saved otherwise).
  dir="${paths[${#paths[@]} - 1]%/*}"
  path="$dir"
  while [[ -n "$path" && ! -L "$path" ]]; do path="${path%/*}"; done
  if [[ -n "$path" ]]; then dir="$(cd -P -- "$dir" 2>/dev/null && pwd -P)" || dir=""; fi
  dir="${dir:-/}"
  while [[ -n "$dir" ]]; do
    paths+=("$dir")
    [[ "$dir" != / ]] || break
    dir="${dir%/*}"
    dir="${dir:-/}"
  done
  path="$(find "${paths[@]}" -prune \( \
    \( ! -type d ! -type f \) -o \( ! -user "$EUID" ! -user 0 \) \
    -o \( -type f \( -perm -002 -o -perm -020 \) \) \
    -o \( -type d -perm -002 ! -perm -1000 \) \
    -o \( -type d -perm -020 ! -perm -1000 ! -group "${GROUPS[0]}" \) \
    \) -print 2>/dev/null)" || path="${paths[0]}"
  [[ -n "$path" ]] || return 0
  # shellcheck disable=SC2154 # install: the caller's (bash's dynamic scope)
  token_exchange_fail "${what}: ${path%%$'\n'*} is a link, or belongs to another user, or another user may write it, who could change the binary after it was verified" \
    "Set TOKEN_EXCHANGE_CACHE_DIR to a directory only this agent's user may write, or ${install}"
  return 2
}

# token_exchange_binary VAR PLUGIN_DIR: VAR = the path of this release's CLI binary, downloaded and
# verified into the cache on first use, and checked before every run; on a failure, the report
# (token_exchange_fail) and status 2 for a cache another user could change, else 1.
token_exchange_binary() {
  local plugin_dir="$2" target version="" expected="" line cache binary
  local install="install Deno 2 on the agent (https://docs.deno.com/runtime/getting_started/installation/), which the plugin then uses directly"
  token_exchange_target target
  if [[ -z "$target" ]]; then
    token_exchange_fail "Deno is not installed, and there is no token-exchange binary for ${OSTYPE} ${HOSTTYPE}: ${install}"
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
  cache="${TOKEN_EXCHANGE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/token-exchange-buildkite-plugin}"
  cache="${cache%/}"
  if [[ "$cache" != /* ]]; then
    token_exchange_fail "The token-exchange binary cache ${cache} is not an absolute path: set TOKEN_EXCHANGE_CACHE_DIR to one, or ${install}"
    return 2
  fi
  # Named by its hash: a file there was verified to have it when it was put there.
  binary="${cache}/token-exchange-${target}-${expected}"
  if [[ ! -e "$binary" && ! -L "$binary" ]]; then
    token_exchange_download "$cache" "$binary" "v${version}/token-exchange-${target}" "$expected" "$install" || return
  fi
  token_exchange_trusted "The token-exchange binary ${binary} was not run" "$binary" "$cache" || return
  printf -v "$1" '%s' "$binary"
}

# token_exchange_download CACHE BINARY RELEASE_PATH SHA256 INSTALL: downloads the release binary into
# a private temporary file in CACHE (a directory no other user may change), verifies its SHA-256,
# makes it read-only and renames it to BINARY; never leaves an unverified file where it would run.
token_exchange_download() {
  local cache="$1" binary="$2" expected="$4" install="$5" url tmp actual curl_error
  url="${TOKEN_EXCHANGE_DOWNLOAD_URL:-$TOKEN_EXCHANGE_DEFAULT_DOWNLOAD_URL}"
  url="${url%/}/$3"
  echo "Deno is not installed: downloading token-exchange ${3%%/*} for ${3#*/token-exchange-} (once per version)"
  if ! command -v curl >/dev/null 2>&1; then
    token_exchange_fail "Deno is not installed and curl is not available to download the token-exchange binary: ${install}"
    return 1
  fi
  if ! (umask 077 && mkdir -p "$cache") 2>/dev/null; then
    token_exchange_fail "Cannot create the binary cache ${cache}: set TOKEN_EXCHANGE_CACHE_DIR to a writable directory, or ${install}"
    return 1
  fi
  token_exchange_trusted "The token-exchange binary was not downloaded into ${cache}" "$cache" || return
  if ! tmp="$(umask 077 && mktemp "${cache}/.download.XXXXXXXX" 2>/dev/null)"; then
    token_exchange_fail "Cannot create a file in the binary cache ${cache}: set TOKEN_EXCHANGE_CACHE_DIR to a writable directory, or ${install}"
    return 1
  fi
  local -a curl_args=(--fail --silent --show-error --location --retry 3 --connect-timeout 10 --max-time 300)
  [[ "$url" != https://* ]] || curl_args+=(--proto-redir "=https")
  if ! curl_error="$(curl "${curl_args[@]}" --output "$tmp" "$url" 2>&1)"; then
    rm -f "$tmp"
    token_exchange_fail "Cannot download the token-exchange binary from ${url}: ${curl_error//[[:cntrl:]]/ }" \
      "Check the agent can reach it, set TOKEN_EXCHANGE_DOWNLOAD_URL to a mirror, or ${install}"
    return 1
  fi
  if ! actual="$(token_exchange_sha256 "$tmp")" || [[ "$actual" != "$expected" ]]; then
    rm -f "$tmp"
    token_exchange_fail "The downloaded token-exchange binary has SHA-256 ${actual:-(none: neither openssl, sha256sum nor shasum could read it)}, not the ${expected} this plugin version pins: it was not run" \
      "Check TOKEN_EXCHANGE_DOWNLOAD_URL (${url}) serves the ${3%%/*} release, or ${install}"
    return 1
  fi
  if ! chmod 0500 "$tmp" 2>/dev/null || ! mv -f "$tmp" "$binary" 2>/dev/null; then
    rm -f "$tmp"
    token_exchange_fail "Cannot move the verified token-exchange binary into the cache ${cache}: set TOKEN_EXCHANGE_CACHE_DIR to a writable directory, or ${install}"
    return 1
  fi
}
