# shellcheck shell=bash
# The hooks' launcher. The engine (cli.ts --plugin, run by deno or by the release binary) owns every
# rule: it reads and checks the options, writes every file and says what to hand to the redactor and
# what to export, in lines on its stdout (docs/cli.md). This file only does what must happen before
# the engine starts or after it ends: find the engine and its permissions, start the agent's request
# for the OIDC token and the engine together, hand tokens to `buildkite-agent redactor add`, and
# export. lib/refresh.bash waits in the refresher and cleans up in pre-exit.
#
# The agent sources the hooks, so this file only defines functions: nothing runs, exits or leaks
# variables on load. Written for bash 3.2 (macOS) and later.

TOKEN_EXCHANGE_PREFIX=BUILDKITE_PLUGIN_TOKEN_EXCHANGE_

# token_exchange_option VAR NAME: VAR = the value of the option NAME (upper snake case), or empty.
token_exchange_option() {
  local name="${TOKEN_EXCHANGE_PREFIX}$2"
  printf -v "$1" '%s' "${!name:-}"
}

# token_exchange_job_dir VAR: VAR = this job's private directory (TMPDIR is shared by every job on
# the agent; the job ID keeps two jobs apart). The engine makes it and checks whose it is.
token_exchange_job_dir() {
  local tmp_dir="${TMPDIR:-/tmp}" job_id="${BUILDKITE_JOB_ID:-local}"
  printf -v "$1" '%s' "${tmp_dir%/}/token-exchange-${job_id//[^A-Za-z0-9-]/_}"
}

# token_exchange_path VAR NAME: VAR = the path of the file the option NAME names (~/ is HOME, a
# relative path the working directory's), or empty: a narrow reading for the engine's --allow-read
# and --allow-write, which the engine checks again (and refuses what is not clean).
token_exchange_path() {
  local path
  token_exchange_option path "$2"
  case "$path" in
    "" | true | false | 0 | 1 | *,*) path="" ;;
    \~/*) path="${HOME:-}/${path:2}" ;;
    /*) ;;
    *) path="${PWD%/}/${path}" ;;
  esac
  printf -v "$1" '%s' "$path"
}

# token_exchange_list NAME: token_exchange_items = the values of the list option NAME (NAME_0,
# NAME_1, …, or one value).
token_exchange_list() {
  local name="${TOKEN_EXCHANGE_PREFIX}$1" i=0
  token_exchange_items=()
  [[ -z "${!name:-}" ]] || token_exchange_items=("${!name}")
  while name="${TOKEN_EXCHANGE_PREFIX}$1_$((i++))" && [[ -n "${!name:-}" ]]; do token_exchange_items+=("${!name}"); done
}

# token_exchange_agent_args: token_exchange_agent = the arguments of `buildkite-agent oidc
# request-token`, from the audience, lifetime, claims and aws-session-tags options as they are
# written (by default, the audience AWS, Azure or octo-sts expects in their modes). The engine
# checks the options, and that these are the arguments they mean.
token_exchange_agent_args() {
  local audience buildkite_audience fallback=buildkite value
  local -a token_exchange_items=()
  token_exchange_option audience AUDIENCE
  token_exchange_option buildkite_audience BUILDKITE_AUDIENCE
  [[ -z "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_AWS_ROLE_ARN:-}" ]] || fallback=sts.amazonaws.com
  [[ -z "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_AZURE_CLIENT_ID:-}${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_AZURE_TENANT_ID:-}" ]] || fallback=api://AzureADTokenExchange
  [[ -z "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_GITHUB_TOKEN_SCOPE:-}" ]] || fallback=octo-sts.dev
  token_exchange_agent=(oidc request-token --audience "${audience:-${buildkite_audience:-${fallback}}}")
  token_exchange_option value LIFETIME
  [[ -z "$value" ]] || token_exchange_agent+=(--lifetime "$value")
  token_exchange_list CLAIMS
  for value in ${token_exchange_items[@]+"${token_exchange_items[@]}"}; do token_exchange_agent+=(--claim "$value"); done
  token_exchange_list AWS_SESSION_TAGS
  local IFS=,
  [[ "${#token_exchange_items[@]}" -eq 0 ]] || token_exchange_agent+=(--aws-session-tag "${token_exchange_items[*]}")
}

# token_exchange_engine RUN DIR PLUGIN_DIR [FILE_DIRS]: token_exchange_cli = the command that runs
# the engine's RUN (hook, renew or cleanup) for DIR: deno with the narrowest permissions that work,
# or the verified release binary. Each permission comes from a narrow reading of an option; where
# that finds nothing clean, the permission is left out and the engine says what is wrong. FILE_DIRS
# (comma-separated) replaces token-file's directory, for a cleanup.
token_exchange_engine() {
  local run="$1" dir="$2" plugin_dir="$3" name url host="" secret_env paths file_dir ca_file kubernetes_ca names resolved_binary
  local http_url='^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:([1-9][0-9]{0,4}))?([/?#].*)?$'
  if command -v deno >/dev/null 2>&1; then
    token_exchange_cli=(deno run --no-config --no-lock --no-remote --no-prompt)
    # The endpoints' hosts, and what the AWS and Google tools would call (a mirror's or a region's).
    for name in "${TOKEN_EXCHANGE_PREFIX}"{TOKEN_ENDPOINT,ISSUER,REVOCATION_ENDPOINT,VAULT_ADDR,OCTO_STS_URL,GITHUB_API_URL,AZURE_AUTHORITY_HOST} TOKEN_EXCHANGE_GOOGLE_IAM_URL AWS_ENDPOINT_URL_STS AWS_ENDPOINT_URL; do
      url="${!name:-}"
      if [[ "$url" =~ $http_url ]] && ((${BASH_REMATCH[3]:-0} <= 65535)); then host+=",${BASH_REMATCH[1]}${BASH_REMATCH[2]}"; fi
    done
    [[ -z "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_AZURE_CLIENT_ID:-}${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_AZURE_TENANT_ID:-}" ]] || host+=",login.microsoftonline.com"
    [[ -z "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_GITHUB_TOKEN_SCOPE:-}" ]] || host+=",octo-sts.dev,api.github.com"
    if [[ -n "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_AWS_ROLE_ARN:-}" ]]; then
      host+=",sts.amazonaws.com"
      for url in "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_AWS_REGION:-}" "${AWS_REGION:-}" "${AWS_DEFAULT_REGION:-}"; do
        [[ ! "$url" =~ ^[a-z0-9-]+$ ]] || host+=",sts.${url}.amazonaws.com,sts.${url}.amazonaws.com.cn"
      done
    fi
    case "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_GOOGLE_CREDENTIALS:-}" in true | 1) host+=",sts.googleapis.com,iamcredentials.googleapis.com" ;; esac
    [[ -z "$host" ]] || token_exchange_cli+=("--allow-net=${host#,}")
    if [[ "$#" -ge 4 ]]; then file_dir="$4"; else token_exchange_path file_dir TOKEN_FILE && file_dir="${file_dir%/*}"; fi
    paths="${dir}${file_dir:+,${file_dir}}"
    token_exchange_path ca_file CA_FILE
    token_exchange_path kubernetes_ca KUBERNETES_CA
    token_exchange_cli+=("--allow-read=${paths}${ca_file:+,${ca_file}}${kubernetes_ca:+,${kubernetes_ca}}" "--allow-write=${paths}" "--allow-sys=uid,gid")
    token_exchange_option secret_env CLIENT_SECRET_ENV
    [[ "$secret_env" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || secret_env=""
    # NO_PROXY: the engine adds loopback to it while it makes the client for an https loopback
    # endpoint. The BUILDKITE_ ones name an AWS session and bound the refresher; the AWS ones say
    # where the AWS tools would call STS, and which of the agent's credentials they would use.
    token_exchange_cli+=("--allow-env=${TOKEN_EXCHANGE_PREFIX}*,NO_PROXY,no_proxy,HOME,BUILDKITE_JOB_ID,BUILDKITE_PIPELINE_SLUG,BUILDKITE_BUILD_NUMBER,BUILDKITE_STEP_KEY,BUILDKITE_TIMEOUT,TOKEN_EXCHANGE_GOOGLE_IAM_URL,AWS_ENDPOINT_URL_STS,AWS_ENDPOINT_URL,AWS_REGION,AWS_DEFAULT_REGION,AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_SESSION_TOKEN,AWS_PROFILE,AWS_DEFAULT_PROFILE${secret_env:+,${secret_env}}")
    token_exchange_cli+=("${plugin_dir}/cli.ts")
  else
    # shellcheck source=lib/binary.bash
    . "${plugin_dir}/lib/binary.bash"
    token_exchange_binary resolved_binary "$plugin_dir" || return
    token_exchange_cli=("$resolved_binary")
  fi
  # The options' variables, by name: the engine checks that each is an option.
  local IFS=,
  names="${!BUILDKITE_PLUGIN_TOKEN_EXCHANGE_*}"
  token_exchange_cli+=(--plugin "$run" "$dir" "$names" "${token_exchange_agent[@]}")
}

# token_exchange_error LINE...: the failure report: open the log section, then the lines.
token_exchange_error() {
  echo "^^^ +++"
  printf '%s\n' "$@" >&2
}

# token_exchange_fail MESSAGE [DETAIL...]: a failure before the engine could run (the release
# binary's), for the hook's report: 🚨 and the message, then each detail indented.
token_exchange_fail() {
  local detail
  token_exchange_failure=("🚨 $1")
  shift
  for detail in "$@"; do token_exchange_failure+=("   ${detail}"); done
}

# token_exchange_oidc_token ARGS...: runs `buildkite-agent ARGS...` and prints the token it prints;
# when it fails, a line "!buildkite-agent-failed STATUS" and its error output instead, which the
# engine reports (its stderr is never on the job log otherwise: it could hold anything).
token_exchange_oidc_token() {
  local error status=0
  # exec: the command substitution's own process becomes the agent (one fork fewer before it starts).
  { error="$(exec buildkite-agent "$@" 2>&1 1>&4 4>&-)" || status=$?; } 4>&1
  if [[ "$status" -ne 0 ]]; then
    printf '\n!buildkite-agent-failed %s\n%s\n' "$status" "$error"
  fi
}

# token_exchange_launch RUN DIR PLUGIN_DIR: asks the agent for the OIDC token and starts the engine
# at once (the agent's round trip to Buildkite runs while Deno starts), then acts on the engine's
# lines (token_exchange_read_engine); returns the engine's status.
token_exchange_launch() {
  local status=0
  token_exchange_agent_args
  if ((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 1))); then
    # Each a process substitution forked from this shell, the agent first (a fork costs
    # milliseconds on some hosts), then the engine, once it is found (and without Deno, the release
    # binary checked) while the agent answers. SSLKEYLOGFILE would make Deno write the TLS session
    # keys of the exchange to a file.
    local agent_fd cli_fd
    exec {agent_fd}< <(token_exchange_oidc_token "${token_exchange_agent[@]}")
    token_exchange_engine "$@" || {
      status=$?
      exec {agent_fd}<&-
      return "$status"
    }
    exec {cli_fd}< <(
      unset SSLKEYLOGFILE
      DENO_NO_UPDATE_CHECK=1 exec "${token_exchange_cli[@]}" 0<&"$agent_fd"-
    )
    exec {agent_fd}<&-
    # While the agent answers and Deno starts: what jobs killed before pre-exit left behind.
    [[ "$1" != hook ]] || token_exchange_sweep "$3"
    token_exchange_read_engine <&"$cli_fd" || status=$?
    exec {cli_fd}<&-
  else
    # bash before 4.1 (macOS's 3.2) has no {fd}: the same, as a pipeline.
    token_exchange_engine "$@" || return
    token_exchange_read_engine < <(
      unset SSLKEYLOGFILE
      set +o pipefail
      token_exchange_oidc_token "${token_exchange_agent[@]}" |
        DENO_NO_UPDATE_CHECK=1 "${token_exchange_cli[@]}"
    ) || status=$?
  fi
  [[ "$status" -eq 0 ]] || token_exchange_redactor_stop
  return "$status"
}

# token_exchange_read_engine: acts on each line the engine prints until "ok" (0) or "!exit STATUS",
# and returns at once while the engine shuts down (a job saves about 10 ms). Whatever else it
# prints is never shown: it could be a token.
token_exchange_read_engine() {
  local line
  while IFS= read -r line; do
    case "$line" in
      ready) token_exchange_redactor_prepare ;;
      exchanging) token_exchange_redactor_start ;;
      "say "*) printf '%s\n' "${line#say }" ;;
      "warn "*) printf '%s\n' "${line#warn }" >&2 ;;
      "redact "*) token_exchange_redact "${line#redact }" ;;
      "export "*) token_exchange_exports+=("${line#export }") ;;
      "drop "*) token_exchange_drops+=("${line#drop }") ;;
      "private "* | "unset "*) token_exchange_hidden+=("$line") ;;
      "entry "*) token_exchange_entry="${line#entry }" ;;
      "refresh "* | "next "*) token_exchange_wait="${line#* }" ;;
      stop) token_exchange_wait=stop ;;
      "fail "*) token_exchange_failure+=("${line#fail }") ;;
      "!exit "[0-9]*) return "${line#!exit }" ;;
      ok) return 0 ;;
    esac
  done
  return 1
}

# The early redactor, so that `buildkite-agent redactor add` has started when the issued token
# comes (its start is on the hook's path otherwise, and a process start costs milliseconds on some
# hosts); bash 4.1 and later, in the hook only:
# - token_exchange_redactor_prepare, once the engine has started and will hand tokens over, while
#   the agent is still answering, forks a subshell that waits on a pipe (and takes the caller's
#   PIPE trap, for token_exchange_redact), so that no fork slows the agent's start or the exchange;
# - token_exchange_redactor_start, once the engine has the OIDC token, tells it to become the
#   agent's `redactor add`, which then reads the first token from the same pipe;
# - token_exchange_redactor_stop, on a failure, ends it unused: before the start it just ends, so
#   the agent never runs; after it, the agent is stopped before it is handed anything.
token_exchange_redactor_prepare() {
  [[ "${token_exchange_early_redactor:-false}" == true && -z "${token_exchange_redactor_pid:-}" ]] || return 0
  token_exchange_pipe_trap="$(trap -p PIPE)"
  # coproc is bash 4 syntax: in eval, so that bash 3.2 (which never gets here) can parse this file.
  eval 'coproc token_exchange_redactor {
    IFS= read -r -n 1 go && [[ "$go" == g ]] || exit 0
    exec buildkite-agent redactor add >/dev/null 2>&1
  }'
  token_exchange_redactor_pid="$!"
  # shellcheck disable=SC2154 # set by coproc, in the eval above
  token_exchange_redactor_in="${token_exchange_redactor[1]}"
  token_exchange_redactor_started=false
  local out="${token_exchange_redactor[0]}"
  exec {out}<&-
}

token_exchange_redactor_start() {
  [[ -n "${token_exchange_redactor_pid:-}" && "$token_exchange_redactor_started" == false ]] || return 0
  # It is waiting for this byte, so the pipe has a reader.
  printf g 1>&"$token_exchange_redactor_in"
  token_exchange_redactor_started=true
}

token_exchange_redactor_stop() {
  [[ -n "${token_exchange_redactor_pid:-}" ]] || return 0
  [[ "$token_exchange_redactor_started" == false ]] || kill -TERM "$token_exchange_redactor_pid" 2>/dev/null || true
  exec {token_exchange_redactor_in}>&-
  wait "$token_exchange_redactor_pid" 2>/dev/null || true
  token_exchange_redactor_pid="" token_exchange_redactor_started=true
}

# token_exchange_redact TOKEN: hands TOKEN to the agent's log redactor on stdin (a pipe, never a
# file or an argument, so it is not in the process list); warns on an agent too old for it.
token_exchange_redact() {
  local status=0
  # A prepared redactor that was never told to start (there is always an exchange before a token).
  [[ "${token_exchange_redactor_started:-true}" == true ]] || token_exchange_redactor_stop
  if [[ -n "${token_exchange_redactor_pid:-}" ]]; then
    trap '' PIPE
    printf '%s\n' "$1" 2>/dev/null 1>&"$token_exchange_redactor_in" || true
    eval "${token_exchange_pipe_trap:-trap - PIPE}"
    exec {token_exchange_redactor_in}>&-
    wait "$token_exchange_redactor_pid" || status=$?
    token_exchange_redactor_pid=""
  elif ((${#1} < 60000 && (BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1)))); then
    # bash 5.1 and later hand a here-string smaller than a pipe's buffer over a pipe, never a
    # temporary file; it saves the fork of a pipeline.
    buildkite-agent redactor add <<<"$1" >/dev/null 2>&1 || status=$?
  else
    printf '%s\n' "$1" | buildkite-agent redactor add >/dev/null 2>&1 || status=$?
  fi
  if [[ "$status" -ne 0 ]]; then
    echo "⚠️ buildkite-agent could not add the token to the log redactor (redactor add needs agent 3.66 or later): upgrade the agent so the token is masked if a command prints it" >&2
  fi
}

# token_exchange_sweep PLUGIN_DIR: removes what jobs killed before their pre-exit left in TMPDIR:
# each directory of this plugin's (by its name; this user's, not a link) whose job's process is gone.
token_exchange_sweep() {
  local job stale entry pid
  token_exchange_job_dir job
  for stale in "${job%/*}"/token-exchange-*; do
    [[ "$stale" != "$job" && -d "$stale" && ! -L "$stale" && -O "$stale" && -f "${stale}/job-pid" ]] || continue
    pid=""
    IFS= read -r pid <"${stale}/job-pid" || true
    if [[ ! "$pid" =~ ^[0-9]+$ ]] || kill -0 "$pid" 2>/dev/null; then continue; fi
    # shellcheck source=lib/refresh.bash
    declare -F token_exchange_remove_entry >/dev/null || . "${1}/lib/refresh.bash"
    for entry in "$stale"/*; do
      [[ -d "$entry" && ! -L "$entry" ]] || continue
      token_exchange_stop_refresher "$entry"
      # Another job's token: its options (and so where to revoke it) are not this job's.
      rm -f "${entry}/revoke.json"
      token_exchange_remove_entry "$1" "$entry"
    done
    rm -rf "$stale"
  done
}

# token_exchange_fingerprint VAR: VAR = this entry's options, names and values, which pre-exit
# compares with what the hook recorded to find the entry's directory.
token_exchange_fingerprint() {
  local name text=""
  for name in ${!BUILDKITE_PLUGIN_TOKEN_EXCHANGE_@}; do text+="${name}=${!name}"$'\n'; done
  printf -v "$1" '%s' "$text"
}

# token_exchange_hook HOOK PLUGIN_DIR: the environment and pre-command hooks. Runs the engine and
# exports what it says when HOOK is the one the `hook` option selects (the engine checks the
# option's value); returns non-zero on failure.
token_exchange_hook() {
  local hook="$1" plugin_dir="$2" selected job status=0 entry version fingerprint
  token_exchange_option selected HOOK
  if [[ "$selected" == pre-command ]]; then
    [[ "$hook" == pre-command ]] || return 0
  elif [[ "$hook" != environment ]]; then
    return 0
  fi
  local token_exchange_entry="" token_exchange_wait="" token_exchange_early_redactor=false
  local -a token_exchange_cli=() token_exchange_agent=() token_exchange_exports=()
  local -a token_exchange_failure=() token_exchange_hidden=() token_exchange_drops=()
  ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 1))) || token_exchange_early_redactor=true
  token_exchange_job_dir job
  token_exchange_launch hook "$job" "$plugin_dir" || status=$?
  if [[ "$status" -ne 0 ]]; then
    if [[ "${#token_exchange_failure[@]}" -eq 0 ]]; then
      token_exchange_failure=("🚨 token-exchange stopped with exit status ${status}")
      if [[ "${token_exchange_cli[0]:-}" == deno ]] && version="$(deno --version 2>/dev/null)" &&
        [[ "$version" == "deno 0."* || "$version" == "deno 1."* ]]; then
        token_exchange_failure+=("   ${version%%$'\n'*} is on PATH; token-exchange needs Deno 2 or later")
      fi
    fi
    token_exchange_error "${token_exchange_failure[@]}"
    return "$status"
  fi
  unset ${token_exchange_drops[@]+"${token_exchange_drops[@]}"}
  for entry in ${token_exchange_exports[@]+"${token_exchange_exports[@]}"}; do export "${entry?}"; done
  if [[ -n "$token_exchange_entry" ]]; then
    token_exchange_fingerprint fingerprint
    printf '%s' "$fingerprint" >"${token_exchange_entry}/options"
    # The job's process: when it is gone, a later hook may remove what pre-exit did not.
    [[ -f "${job}/job-pid" ]] || printf '%s\n' "${TOKEN_EXCHANGE_JOB_PID:-$PPID}" >"${job}/job-pid"
  fi
  if [[ -n "$token_exchange_wait" ]]; then
    # shellcheck source=lib/refresh.bash
    . "${plugin_dir}/lib/refresh.bash"
    token_exchange_start_refresher "$plugin_dir" "$token_exchange_entry" "$token_exchange_wait"
  fi
}
