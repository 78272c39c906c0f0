# shellcheck shell=bash
# The logic behind hooks/environment, hooks/pre-command and hooks/pre-exit. The agent sources the
# hooks, so this file only defines functions: nothing runs, exits or leaks variables on load.
# Written for bash 3.2 (macOS) and later.

TOKEN_EXCHANGE_PREFIX=BUILDKITE_PLUGIN_TOKEN_EXCHANGE_

# Where release binaries are downloaded from when Deno is not installed; a mirror can replace it.
TOKEN_EXCHANGE_DEFAULT_DOWNLOAD_URL=https://github.com/equinixmetal-buildkite/token-exchange-buildkite-plugin/releases/download

# token_exchange_option VAR NAME DEFAULT: VAR = the plugin option NAME (upper snake case), or
# DEFAULT when it is unset or empty.
token_exchange_option() {
  local name="${TOKEN_EXCHANGE_PREFIX}$2"
  printf -v "$1" '%s' "${!name:-$3}"
}

# token_exchange_error MESSAGE...: the failure report: open the log section, then one 🚨 line.
token_exchange_error() {
  echo "^^^ +++"
  printf '🚨 %s\n' "$1" >&2
  shift
  [[ "$#" -eq 0 ]] || printf '   %s\n' "$@" >&2
}

# token_exchange_boolean VAR NAME DEFAULT: VAR = true or false from a boolean option.
token_exchange_boolean() {
  local value
  token_exchange_option value "$2" "$3"
  case "$value" in
    true | 1) printf -v "$1" true ;;
    false | 0) printf -v "$1" false ;;
    *)
      token_exchange_error "Configuration error: $(token_exchange_kebab "$2") is \"${value}\": use true or false"
      return 2
      ;;
  esac
}

# token_exchange_kebab NAME: the option's name as plugin.yml spells it.
token_exchange_kebab() {
  local name
  name="$(printf '%s' "$1" | tr '[:upper:]_' '[:lower:]-')"
  printf '%s' "$name"
}

# token_exchange_debug MESSAGE: a debug line, when debug is on.
token_exchange_debug() {
  if [[ "${token_exchange_debug_on:-false}" == true ]]; then
    printf 'token-exchange: debug: %s\n' "$1" >&2
  fi
}

# token_exchange_host VAR URL: VAR = the host[:port] of URL, for --allow-net.
token_exchange_host() {
  local rest="${2#*://}"
  rest="${rest%%[/?#]*}"
  printf -v "$1" '%s' "${rest##*@}"
}

# token_exchange_temp_prefix VAR: VAR = the prefix of this job's temporary files (pre-exit removes
# every file that starts with it).
token_exchange_temp_prefix() {
  local dir="${TMPDIR:-/tmp}"
  printf -v "$1" '%s' "${dir%/}/token-exchange-${BUILDKITE_JOB_ID:-local}."
}

# token_exchange_new_file PATH: creates PATH, refusing one that exists (O_EXCL, as mktemp does).
# Builtins only: each program the hook starts costs a CI step about a millisecond.
token_exchange_new_file() {
  local created=0
  if [[ "$-" == *C* ]]; then
    : >"$1" 2>/dev/null || created=$?
  else
    set -C
    : >"$1" 2>/dev/null || created=$?
    set +C
  fi
  return "$created"
}

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

# token_exchange_sha256 FILE: prints the SHA-256 of FILE.
token_exchange_sha256() {
  local sum
  if command -v sha256sum >/dev/null 2>&1; then
    sum="$(sha256sum "$1")"
  elif command -v shasum >/dev/null 2>&1; then
    sum="$(shasum -a 256 "$1")"
  else
    return 1
  fi
  printf '%s' "${sum%% *}"
}

# token_exchange_binary VAR PLUGIN_DIR: VAR = the path of this release's verified CLI binary,
# downloaded into the cache on first use. Never leaves an unverified file where it would be run.
token_exchange_binary() {
  local plugin_dir="$2" target version="" expected="" line url cache binary tmp actual
  local install="install Deno 2 on the agent (https://docs.deno.com/runtime/getting_started/installation/), which the plugin then uses directly"
  token_exchange_target target
  if [[ -z "$target" ]]; then
    token_exchange_error "Deno is not installed, and there is no token-exchange binary for $(uname -s) $(uname -m): ${install}"
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
  if [[ -z "$expected" ]]; then
    token_exchange_error "Deno is not installed, and this plugin ref has no release binary (only release tags such as v${version} have them): ${install}, or pin the plugin to a release tag"
    return 1
  fi
  cache="${TOKEN_EXCHANGE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/token-exchange-buildkite-plugin}/v${version}"
  binary="${cache}/token-exchange-${target}"
  if [[ -x "$binary" ]]; then
    token_exchange_debug "Using the cached binary ${binary}"
    printf -v "$1" '%s' "$binary"
    return 0
  fi
  url="${TOKEN_EXCHANGE_DOWNLOAD_URL:-$TOKEN_EXCHANGE_DEFAULT_DOWNLOAD_URL}"
  url="${url%/}/v${version}/token-exchange-${target}"
  echo "Deno is not installed: downloading token-exchange v${version} for ${target} (once per version)"
  token_exchange_debug "Downloading ${url} into ${cache}"
  if ! command -v curl >/dev/null 2>&1; then
    token_exchange_error "Deno is not installed and curl is not available to download the token-exchange binary: ${install}"
    return 1
  fi
  mkdir -p "$cache"
  tmp="$(mktemp "${cache}/.download.XXXXXX")"
  local -a curl_args=(--fail --silent --show-error --location --retry 3 --connect-timeout 10 --max-time 300)
  [[ "$url" != https://* ]] || curl_args+=(--proto-redir "=https")
  if ! curl "${curl_args[@]}" --output "$tmp" "$url" 2>"${tmp}.err"; then
    token_exchange_error "Cannot download the token-exchange binary from ${url}: $(tr '\n' ' ' <"${tmp}.err")" \
      "Check the agent can reach it, set TOKEN_EXCHANGE_DOWNLOAD_URL to a mirror, or ${install}"
    rm -f "$tmp" "${tmp}.err"
    return 1
  fi
  rm -f "${tmp}.err"
  if ! actual="$(token_exchange_sha256 "$tmp")"; then
    rm -f "$tmp"
    token_exchange_error "Cannot verify the token-exchange binary: neither sha256sum nor shasum is installed"
    return 1
  fi
  if [[ "$actual" != "$expected" ]]; then
    rm -f "$tmp"
    token_exchange_error "The downloaded token-exchange binary has SHA-256 ${actual}, not the ${expected} this plugin version pins: it was not run" \
      "Check TOKEN_EXCHANGE_DOWNLOAD_URL (${url}) serves the v${version} release, or ${install}"
    return 1
  fi
  chmod 0555 "$tmp"
  mv -f "$tmp" "$binary"
  printf -v "$1" '%s' "$binary"
}

# token_exchange_command PLUGIN_DIR: sets token_exchange_cli to the command that runs the CLI:
# deno with the narrowest permissions that work, or the verified release binary.
token_exchange_command() {
  local plugin_dir="$1" endpoint issuer host secret_env resolved_binary
  if command -v deno >/dev/null 2>&1; then
    token_exchange_option endpoint TOKEN_ENDPOINT ""
    token_exchange_option issuer ISSUER ""
    token_exchange_option secret_env CLIENT_SECRET_ENV ""
    token_exchange_cli=(deno run --no-config --no-lock --no-remote --no-prompt)
    # Only the endpoint's host, or the issuer's for discovery (a discovered endpoint on another
    # host is refused, with a message that says to set token-endpoint).
    if [[ -n "$endpoint" || -n "$issuer" ]]; then
      token_exchange_host host "${endpoint:-$issuer}"
      token_exchange_cli+=("--allow-net=${host}")
    fi
    token_exchange_cli+=(--allow-run=buildkite-agent "--allow-env=${TOKEN_EXCHANGE_PREFIX}*${secret_env:+,${secret_env}}")
    token_exchange_cli+=("${plugin_dir}/cli.ts")
  else
    token_exchange_binary resolved_binary "$plugin_dir" || return 1
    token_exchange_cli=("$resolved_binary")
  fi
  token_exchange_debug "Running: ${token_exchange_cli[*]}"
}

# token_exchange_report_failure STATUS ERRFILE: passes the CLI's debug lines on, then opens the log
# section and shows its error (with the subject token's iss, sub and aud when it has them).
token_exchange_report_failure() {
  local status="$1" errfile="$2" line first="" version
  local -a details=()
  while IFS= read -r line || [[ -n "$line" ]]; do
    case "$line" in
      "token-exchange: debug: "*) printf '%s\n' "$line" >&2 ;;
      "token-exchange: "*)
        if [[ -z "$first" ]]; then first="${line#token-exchange: }"; else details+=("${line#token-exchange: }"); fi
        ;;
      *) [[ -z "$line" ]] || details+=("$line") ;;
    esac
  done <"$errfile"
  if [[ -z "$first" ]]; then
    first="token-exchange stopped with exit status ${status}"
    if [[ "${token_exchange_cli[0]}" == deno ]] && version="$(deno --version 2>/dev/null)"; then
      version="${version%%$'\n'*}"
      case "$version" in
        "deno 0."* | "deno 1."*) details+=("${version} is on PATH; token-exchange needs Deno 2 or later") ;;
      esac
    fi
  fi
  if [[ "$status" -eq 2 ]]; then
    token_exchange_error "Configuration error: ${first}" ${details[@]+"${details[@]}"}
  else
    token_exchange_error "Token exchange failed: ${first}" ${details[@]+"${details[@]}"}
  fi
}

# token_exchange_hook HOOK PLUGIN_DIR: the environment and pre-command hooks. Exchanges the token and
# exports it when HOOK is the one the `hook` option selects; returns non-zero on failure.
token_exchange_hook() {
  local hook="$1" plugin_dir="$2" selected env_var token_file redact token_exchange_debug_on
  token_exchange_option selected HOOK environment
  case "$selected" in
    environment | pre-command) ;;
    *)
      token_exchange_error "Configuration error: hook is \"${selected}\": use environment or pre-command"
      return 2
      ;;
  esac
  [[ "$selected" == "$hook" ]] || return 0
  token_exchange_boolean token_exchange_debug_on DEBUG false || return 2
  token_exchange_boolean redact REDACT true || return 2
  token_exchange_option env_var ENV_VAR FEDERATED_ACCESS_TOKEN
  if [[ ! "$env_var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    token_exchange_error "Configuration error: env-var is \"${env_var}\", not an environment variable name: use a name such as FEDERATED_ACCESS_TOKEN"
    return 2
  fi
  token_exchange_option token_file TOKEN_FILE ""
  [[ -z "$token_file" || "$token_file" == /* ]] || token_file="${PWD%/}/${token_file}"

  echo "~~~ :key: Exchanging the job's OIDC token for ${env_var}"
  local -a token_exchange_cli=()
  token_exchange_command "$plugin_dir" || return 1

  # The CLI's stderr (never a secret) goes to a file, so a failure can be shown after ^^^ +++.
  local errfile line token status=0
  token_exchange_temp_prefix errfile
  errfile="${errfile}${RANDOM}${RANDOM}.stderr"
  if ! token_exchange_new_file "$errfile"; then
    token_exchange_error "Cannot create a temporary file in ${TMPDIR:-/tmp}: check it exists and is writable"
    return 1
  fi
  token="$(DENO_NO_UPDATE_CHECK=1 "${token_exchange_cli[@]}" 2>"$errfile")" || status=$?
  if [[ "$status" -ne 0 ]]; then
    token_exchange_report_failure "$status" "$errfile"
    rm -f "$errfile"
    return "$status"
  fi
  if [[ -s "$errfile" ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do printf '%s\n' "$line" >&2; done <"$errfile"
  fi

  if [[ "$redact" == true ]]; then
    # On stdin, never as an argument, so the token is not visible in the process list.
    if ! buildkite-agent redactor add <<<"$token" >/dev/null 2>&1; then
      echo "⚠️ buildkite-agent could not add the token to the log redactor (redactor add needs agent 3.66 or later): upgrade the agent so the token is masked if a command prints it" >&2
    fi
  fi
  export "${env_var}=${token}"
  if [[ -n "$token_file" ]]; then
    # A new file, so an old one's mode or a symbolic link in its place cannot expose the token.
    if ! { [[ -d "${token_file%/*}" ]] || mkdir -p "${token_file%/*}"; } 2>/dev/null ||
      ! { [[ ! -e "$token_file" && ! -L "$token_file" ]] || rm -f "$token_file"; } 2>/dev/null ||
      ! (umask 077 && printf '%s' "$token" >"$token_file") 2>/dev/null; then
      token_exchange_error "Cannot write token-file ${token_file}: check its directory exists or can be made, and is writable"
      return 1
    fi
    export "${env_var}_FILE=${token_file}"
  fi
  echo "Exported ${env_var}${token_file:+ and ${env_var}_FILE (${token_file})}"
}

# token_exchange_pre_exit: removes the token file and the plugin's temporary files.
token_exchange_pre_exit() {
  local env_var token_file file_var work
  token_exchange_option env_var ENV_VAR FEDERATED_ACCESS_TOKEN
  token_exchange_option token_file TOKEN_FILE ""
  # Only the file this plugin wrote: the configured token-file, as the environment hook exported it.
  if [[ -n "$token_file" && "$env_var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    file_var="${env_var}_FILE"
    case "${!file_var:-}" in
      "$token_file" | */"${token_file#./}") rm -f "${!file_var}" ;;
    esac
  fi
  token_exchange_temp_prefix work
  rm -f "${work}"*
}
