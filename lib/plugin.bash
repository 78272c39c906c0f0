# shellcheck shell=bash
# The logic behind hooks/environment, hooks/pre-command and hooks/pre-exit. The agent sources the
# hooks, so this file only defines functions: nothing runs, exits or leaks variables on load.
# Written for bash 3.2 (macOS) and later.
#
# Threat model: the agent host is shared by other jobs (same OS user, same TMPDIR and cache), the
# token endpoint may be hostile, the job's environment may carry proxies or SSLKEYLOGFILE, and
# pipeline.yml may be wrong. So every file the hooks write is private (0700 directory, 0600 file),
# written atomically, never through a link and never over a file they did not write; pre-exit
# removes only what this job's hook recorded; the release binary is verified before every run.

TOKEN_EXCHANGE_PREFIX=BUILDKITE_PLUGIN_TOKEN_EXCHANGE_

# Every option plugin.yml declares, as the agent names its variable (tests keep the two in step), and
# those that take a list (the agent sets NAME_0, NAME_1, …).
TOKEN_EXCHANGE_OPTIONS=" TOKEN_ENDPOINT ISSUER AUDIENCE BUILDKITE_AUDIENCE LIFETIME CLAIMS SUBJECT_TOKEN_TYPE TARGET_AUDIENCE RESOURCE SCOPE REQUESTED_TOKEN_TYPE EXTRA_PARAMS CLIENT_ID CLIENT_SECRET_ENV CLIENT_AUTH ENV_VAR TOKEN_FILE TIMEOUT RETRIES HOOK REDACT DEBUG REFRESH OIDC_TOKEN_FILE GOOGLE_CREDENTIALS SERVICE_ACCOUNT SERVICE_ACCOUNT_TOKEN_LIFETIME AWS_ROLE_ARN "
TOKEN_EXCHANGE_LIST_OPTIONS=" CLAIMS TARGET_AUDIENCE RESOURCE SCOPE EXTRA_PARAMS "

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

# token_exchange_config_error MESSAGE: a pipeline.yml mistake (status 2).
token_exchange_config_error() {
  token_exchange_error "Configuration error: $1"
  return 2
}

# token_exchange_boolean VAR NAME DEFAULT: VAR = true or false from a boolean option.
token_exchange_boolean() {
  local value
  token_exchange_option value "$2" "$3"
  case "$value" in
    true | 1) printf -v "$1" true ;;
    false | 0) printf -v "$1" false ;;
    *) token_exchange_config_error "$(token_exchange_kebab "$2") is \"$(token_exchange_printable "$value")\": use true or false" ;;
  esac
}

# token_exchange_kebab NAME: the option's name as pipeline.yml spells it.
token_exchange_kebab() {
  local name
  name="$(printf '%s' "$1" | tr '[:upper:]_' '[:lower:]-')"
  printf '%s' "$name"
}

# token_exchange_printable TEXT: TEXT on one line with control characters replaced, for messages
# that quote a value from pipeline.yml.
token_exchange_printable() {
  local text="${1//[[:cntrl:]]/?}"
  [[ "${#text}" -le 200 ]] || text="${text:0:200}…"
  printf '%s' "$text"
}

# token_exchange_debug MESSAGE: a debug line, when debug is on.
token_exchange_debug() {
  if [[ "${token_exchange_debug_on:-false}" == true ]]; then
    printf 'token-exchange: debug: %s\n' "$1" >&2
  fi
}

# token_exchange_distance A B: prints the edit distance between A and B (for "did you mean").
token_exchange_distance() {
  local a="$1" b="$2" i j cost
  local -a previous=() current=()
  for ((j = 0; j <= ${#b}; j++)); do previous[j]=$j; done
  for ((i = 1; i <= ${#a}; i++)); do
    current=("$i")
    for ((j = 1; j <= ${#b}; j++)); do
      cost=1
      [[ "${a:i-1:1}" != "${b:j-1:1}" ]] || cost=0
      current[j]=$((previous[j - 1] + cost))
      ((previous[j] + 1 >= current[j])) || current[j]=$((previous[j] + 1))
      ((current[j - 1] + 1 >= current[j])) || current[j]=$((current[j - 1] + 1))
    done
    previous=("${current[@]}")
  done
  printf '%s' "${previous[${#b}]}"
}

# token_exchange_check_options: every BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variable names an option
# (the agent does not validate plugin options by default, and a misspelt one would be ignored).
token_exchange_check_options() {
  local variable name option best distance best_distance list_item='^(.*)_[0-9]+$'
  for variable in ${!BUILDKITE_PLUGIN_TOKEN_EXCHANGE_@}; do
    name="${variable#"$TOKEN_EXCHANGE_PREFIX"}"
    [[ "$TOKEN_EXCHANGE_OPTIONS" != *" ${name} "* ]] || continue
    if [[ "$name" =~ $list_item ]]; then
      name="${BASH_REMATCH[1]}"
      [[ "$TOKEN_EXCHANGE_LIST_OPTIONS" != *" ${name} "* ]] || continue
    fi
    best="" best_distance=4
    for option in $TOKEN_EXCHANGE_OPTIONS; do
      distance="$(token_exchange_distance "$name" "$option")"
      if ((distance < best_distance)); then best="$option" best_distance="$distance"; fi
    done
    if [[ -n "$best" ]]; then
      token_exchange_config_error "$(token_exchange_kebab "$name") is not an option of this plugin: did you mean $(token_exchange_kebab "$best")?"
    else
      token_exchange_config_error "$(token_exchange_kebab "$name") is not an option of this plugin: see the plugin's README for the options"
    fi
    return 2
  done
}

# token_exchange_check_env_var NAME [OPTION EXAMPLE]: NAME, the value of OPTION (env-var), may be
# exported without breaking or hijacking the rest of the job (the shell, the dynamic linker, the
# agent, git, proxies, language runtimes).
token_exchange_check_env_var() {
  local name="$1" option="${2:-env-var}" example="${3:-FEDERATED_ACCESS_TOKEN}" why=""
  if [[ ! "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    token_exchange_config_error "${option} is \"$(token_exchange_printable "$name")\", not an environment variable name: use a name such as ${example}"
    return 2
  fi
  [[ "$name" != "$example" ]] || return 0
  case "$name" in
    PATH | HOME | SHELL | IFS | PS[1-4] | ENV | BASH_ENV | CDPATH | GLOBIGNORE | SHELLOPTS | BASHOPTS | \
      PROMPT_COMMAND | TMPDIR | USER | LOGNAME | PWD | OLDPWD | TERM | LANG | LANGUAGE | TZ | HOSTNAME | \
      MAIL | MAILPATH | OPTIND | OPTARG | OPTERR | HISTFILE | RANDOM | SECONDS | LINENO | UID | EUID | \
      PPID | POSIXLY_CORRECT | EDITOR | VISUAL | PAGER | SSLKEYLOGFILE | KUBECONFIG | NODE_OPTIONS | \
      NODE_PATH | PYTHONPATH | PYTHONSTARTUP | PYTHONHOME | PERL5LIB | PERL5OPT | RUBYOPT | RUBYLIB | \
      JAVA_TOOL_OPTIONS | _JAVA_OPTIONS | JDK_JAVA_OPTIONS | GOOGLE_APPLICATION_CREDENTIALS | \
      CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE | AWS_WEB_IDENTITY_TOKEN_FILE | AWS_ROLE_ARN | \
      AWS_CONFIG_FILE | AWS_SHARED_CREDENTIALS_FILE | DOCKER_HOST | DOCKER_CONFIG | \
      [Hh][Tt][Tt][Pp]_[Pp][Rr][Oo][Xx][Yy] | [Hh][Tt][Tt][Pp][Ss]_[Pp][Rr][Oo][Xx][Yy] | \
      [Aa][Ll][Ll]_[Pp][Rr][Oo][Xx][Yy] | [Nn][Oo]_[Pp][Rr][Oo][Xx][Yy] | BUILDKITE | _)
      why="the shell and the rest of the job rely on" ;;
    LD_* | DYLD_*) why="the dynamic linker reads" ;;
    BUILDKITE_*) why="the Buildkite agent owns" ;;
    BASH_* | BASH) why="bash reads" ;;
    GIT_* | SSH_*) why="git and ssh read" ;;
    DENO_* | NPM_CONFIG_* | npm_config_* | LC_*) why="other tools of the job read" ;;
    TOKEN_EXCHANGE_*) why="this plugin reads" ;;
  esac
  if [[ -n "$why" ]]; then
    token_exchange_config_error "${option} is \"${name}\", a variable ${why}: use a name of your own such as ${example}"
    return 2
  fi
}

# token_exchange_host VAR OPTION URL: VAR = the host[:port] of URL, for --allow-net, after checking
# that URL is an http(s) URL whose host and port Deno's permission flag can hold exactly.
token_exchange_host() {
  local option="$2" url="$3" authority url_host url_port label='[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?'
  # Regular expressions with parentheses are in variables: bash 3.2 cannot parse them in [[ ]].
  local http_url='^[Hh][Tt][Tt][Pp][Ss]?://([^/?#]*)([/?#].*)?$' host_port='^(.*):([0-9]*)$'
  local host_name="^(${label}\.)*${label}\.?\$" loopback='^(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\])$'
  local fix="use a URL such as https://sts.example.com/token"
  [[ "$option" != issuer ]] || fix="use a URL such as https://issuer.example.com"
  if [[ ! "$url" =~ $http_url ]]; then
    token_exchange_config_error "${option} is \"$(token_exchange_printable "$url")\", not an http or https URL: ${fix}"
    return 2
  fi
  authority="${BASH_REMATCH[1]}"
  if [[ "$authority" == *@* ]]; then
    # Never quoted: a user name and password in a URL are a credential.
    token_exchange_config_error "${option} has a user name or password in it: remove them (use client-id and client-secret-env for client credentials)"
    return 2
  fi
  url_host="$authority" url_port=""
  if [[ "$authority" =~ $host_port ]]; then
    url_host="${BASH_REMATCH[1]}" url_port="${BASH_REMATCH[2]}"
  fi
  local valid=true
  [[ "$url_host" =~ $host_name || "$url_host" =~ ^\[[0-9A-Fa-f:.]+\]$ ]] || valid=false
  if [[ -n "$url_port" ]]; then
    [[ "$url_port" =~ ^[0-9]{1,5}$ ]] && ((10#$url_port >= 1 && 10#$url_port <= 65535)) || valid=false
  fi
  [[ -n "$url_port" || "$authority" != *: ]] || valid=false
  if [[ "$valid" != true ]]; then
    token_exchange_config_error "${option} is \"$(token_exchange_printable "$url")\", whose host or port is not valid: ${fix}"
    return 2
  fi
  if [[ "$url" =~ ^[Hh][Tt][Tt][Pp]: && ! "$url_host" =~ $loopback ]]; then
    local what="Token endpoint"
    [[ "$option" != issuer ]] || what=Issuer
    token_exchange_config_error "${what} (${option}) \"$(token_exchange_printable "$url")\" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])"
    return 2
  fi
  printf -v "$1" '%s' "${url_host}${url_port:+:$((10#$url_port))}"
}

# token_exchange_items NAME: token_exchange_items = the values of list option NAME (NAME_0, NAME_1, …,
# or NAME alone).
token_exchange_items() {
  local name="${TOKEN_EXCHANGE_PREFIX}$1_0" i=0
  token_exchange_items=()
  if [[ -n "${!name:-}" ]]; then
    while name="${TOKEN_EXCHANGE_PREFIX}$1_${i}" && [[ -n "${!name:-}" ]]; do
      token_exchange_items+=("${!name}")
      i=$((i + 1))
    done
  else
    name="${TOKEN_EXCHANGE_PREFIX}$1"
    [[ -z "${!name:-}" ]] || token_exchange_items=("${!name}")
  fi
}

# token_exchange_check_exchange_options: the options only an exchange uses, checked as the CLI checks
# them and in its words (a test holds the two to the same messages), because the hook asks the agent
# for the OIDC token before the CLI has started, and a mistake must stop the job before that.
token_exchange_check_exchange_options() {
  local value whole fraction item
  token_exchange_option value TIMEOUT ""
  if [[ -n "$value" ]]; then
    whole="${value//[[:space:]]/}" fraction=""
    [[ "$whole" != *.* ]] || fraction="${whole#*.}" whole="${whole%%.*}"
    if [[ ! "$value" =~ ^[[:space:]]*[0-9]*\.?[0-9]+[[:space:]]*$ || ! "${whole}${fraction}" =~ [1-9] ]] ||
      ((10#${whole:-0} > 3600)) || { ((10#${whole:-0} == 3600)) && [[ "$fraction" =~ [1-9] ]]; }; then
      token_exchange_config_error "timeout is \"$(token_exchange_printable "$value")\": use a number of seconds above 0 (such as 10 or 2.5), at most 3600"
      return 2
    fi
  fi
  token_exchange_option value RETRIES ""
  if [[ -n "$value" ]] && { [[ ! "$value" =~ ^[0-9]{1,3}$ ]] || ((10#$value > 100)); }; then
    token_exchange_config_error "retries is \"$(token_exchange_printable "$value")\": use a whole number from 0 to 100"
    return 2
  fi
  token_exchange_option value CLIENT_AUTH basic
  if [[ "$value" != basic && "$value" != post ]]; then
    token_exchange_config_error "client-auth is \"$(token_exchange_printable "$value")\": use basic or post"
    return 2
  fi
  token_exchange_option value CLIENT_ID ""
  if [[ -z "$value" && -n "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_CLIENT_SECRET_ENV:-}" ]]; then
    token_exchange_config_error "A client secret (client-secret-env) needs a client ID: set client-id"
    return 2
  fi
  token_exchange_items EXTRA_PARAMS
  for item in ${token_exchange_items[@]+"${token_exchange_items[@]}"}; do
    if [[ "$item" != ?*=* ]]; then
      token_exchange_config_error "extra-params has \"$(token_exchange_printable "$item")\", not NAME=VALUE: use a parameter such as connector_id=buildkite"
      return 2
    fi
  done
  token_exchange_items RESOURCE
  for item in ${token_exchange_items[@]+"${token_exchange_items[@]}"}; do
    if [[ ! "$item" =~ ^[A-Za-z][A-Za-z0-9+.-]*:[^#[:space:]]+$ ]]; then
      token_exchange_config_error "Cannot use resource \"$(token_exchange_printable "$item")\": it must be an absolute URI without a fragment (RFC 8693 §2.1), such as \"https://api.example.com\""
      return 2
    fi
  done
}

# token_exchange_quotable_name NAME: NAME in quotes if it looks like a variable name (upper case, and
# with an underscore or short), else "(its name not shown)": a mistaken value may be the secret
# itself. The CLI applies the same rule (_cli_options.ts, CONVENTIONAL_ENV_NAME).
token_exchange_quotable_name() {
  if [[ "$1" =~ ^[A-Z_][A-Z0-9_]{0,63}$ && ("$1" == *_* || "${#1}" -le 12) ]]; then
    printf '"%s"' "$1"
  else
    printf '(its name not shown)'
  fi
}

# token_exchange_command PLUGIN_DIR: sets token_exchange_cli to the command that runs the CLI:
# deno with the narrowest permissions that work, or the verified release binary.
token_exchange_command() {
  local plugin_dir="$1" endpoint issuer host="" secret_env resolved_binary
  token_exchange_option endpoint TOKEN_ENDPOINT ""
  token_exchange_option issuer ISSUER ""
  token_exchange_option secret_env CLIENT_SECRET_ENV ""
  # These values become Deno permission flags, so they are checked here, before anything runs (the
  # CLI checks every option again, and the rest, once Deno has started).
  if [[ -z "$endpoint" && -z "$issuer" ]]; then
    token_exchange_config_error "No token endpoint: set token-endpoint, or issuer to discover it"
    return 2
  elif [[ -n "$endpoint" && -n "$issuer" ]]; then
    token_exchange_config_error "Both token-endpoint and issuer are set: set only one"
    return 2
  elif [[ -n "$endpoint" ]]; then
    token_exchange_host host token-endpoint "$endpoint" || return 2
  else
    token_exchange_host host issuer "$issuer" || return 2
  fi
  if [[ -n "$secret_env" ]]; then
    if [[ ! "$secret_env" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      # Never quoted: a value here that is not a variable name is often the secret itself.
      token_exchange_config_error "client-secret-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the secret, such as STS_CLIENT_SECRET, not to the secret itself"
      return 2
    elif [[ -z "${!secret_env:-}" ]]; then
      token_exchange_config_error "Client secret variable $(token_exchange_quotable_name "$secret_env") (client-secret-env) is unset or empty: set it, for example from your secrets manager"
      return 2
    fi
  fi
  if command -v deno >/dev/null 2>&1; then
    token_exchange_cli=(deno run --no-config --no-lock --no-remote --no-prompt)
    # Only the endpoint's host, or the issuer's for discovery (a discovered endpoint on another
    # host is refused, with a message that says to set token-endpoint).
    [[ -z "$host" ]] || token_exchange_cli+=("--allow-net=${host}")
    # The hook asks the agent for the OIDC token itself and hands it over on stdin: no --allow-run.
    # NO_PROXY: the CLI adds loopback to it while it makes the client for an https loopback endpoint.
    token_exchange_cli+=("--allow-env=${TOKEN_EXCHANGE_PREFIX}*,NO_PROXY,no_proxy${secret_env:+,${secret_env}}")
    token_exchange_cli+=("${plugin_dir}/cli.ts")
  else
    # shellcheck source=lib/binary.bash
    . "${plugin_dir}/lib/binary.bash"
    token_exchange_binary resolved_binary "$plugin_dir" || return 1
    token_exchange_cli=("$resolved_binary")
  fi
  token_exchange_cli+=(--subject-token-source buildkite --subject-token-file - --format hook)
  token_exchange_debug "Running: ${token_exchange_cli[*]}"
}

# token_exchange_agent_args: sets token_exchange_agent to the arguments of `buildkite-agent oidc
# request-token` from the audience, lifetime and claims options, or fails on a bad value (before
# the agent is asked).
token_exchange_agent_args() {
  local audience buildkite_audience lifetime claim i=0 name
  token_exchange_option audience AUDIENCE ""
  token_exchange_option buildkite_audience BUILDKITE_AUDIENCE ""
  if [[ -n "$audience" && -n "$buildkite_audience" && "$audience" != "$buildkite_audience" ]]; then
    token_exchange_config_error "audience is \"$(token_exchange_printable "$audience")\" but buildkite-audience is \"$(token_exchange_printable "$buildkite_audience")\": set only one of them"
    return 2
  fi
  token_exchange_agent=(oidc request-token --audience "${audience:-${buildkite_audience:-buildkite}}")
  token_exchange_option lifetime LIFETIME ""
  if [[ -n "$lifetime" ]]; then
    if [[ ! "$lifetime" =~ ^[0-9]{1,9}$ ]] || ((10#$lifetime == 0)); then
      token_exchange_config_error "lifetime is \"$(token_exchange_printable "$lifetime")\": use a whole number of seconds above 0"
      return 2
    fi
    token_exchange_agent+=(--lifetime "$((10#$lifetime))")
  fi
  name="${TOKEN_EXCHANGE_PREFIX}CLAIMS_0"
  if [[ -n "${!name:-}" ]]; then
    while name="${TOKEN_EXCHANGE_PREFIX}CLAIMS_${i}" && [[ -n "${!name:-}" ]]; do
      token_exchange_agent+=(--claim "${!name}")
      i=$((i + 1))
    done
  else
    token_exchange_option claim CLAIMS ""
    [[ -z "$claim" ]] || token_exchange_agent+=(--claim "$claim")
  fi
}

# token_exchange_oidc_token ARGS...: runs `buildkite-agent ARGS...` and prints the token it prints;
# when it fails, a line "!buildkite-agent-failed STATUS" and its error output instead, which the
# CLI reports (its stderr is never on the job log otherwise: it could hold anything).
token_exchange_oidc_token() {
  local error status=0
  # exec: the command substitution's own process becomes the agent (one fork fewer before it starts).
  { error="$(exec buildkite-agent "$@" 2>&1 1>&4 4>&-)" || status=$?; } 4>&1
  if [[ "$status" -ne 0 ]]; then
    printf '\n!buildkite-agent-failed %s\n%s\n' "$status" "$error"
  fi
}

# token_exchange_report_failure STATUS OUTPUT: opens the log section and shows the CLI's error, which
# --format hook writes on stdout (with the subject token's iss, sub and aud when it has them).
token_exchange_report_failure() {
  local status="$1" output="$2" line first="" version
  local -a details=()
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="$(token_exchange_printable "$line")"
    case "$line" in
      "token-exchange: debug: "*) printf '%s\n' "$line" >&2 ;;
      "token-exchange: "*)
        if [[ -z "$first" ]]; then first="${line#token-exchange: }"; else details+=("${line#token-exchange: }"); fi
        ;;
        # Anything else on stdout is not the CLI's error (it could be a token): never shown.
    esac
  done <<<"$output"
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

# token_exchange_obtain: gets this entry's tokens: sets token_exchange_oidc (when a file needs the
# OIDC token itself), token_exchange_token and token_exchange_expires_in (after an exchange), or
# on failure returns the status with the error lines in token_exchange_output.
token_exchange_obtain() {
  local status=0 early_redactor=false
  token_exchange_oidc="" token_exchange_token="" token_exchange_expires_in="" token_exchange_output=""
  if [[ "$token_exchange_oidc_file" == true || "${TOKEN_EXCHANGE_SEQUENTIAL:-}" == 1 ]]; then
    # The OIDC token first: its file needs it (or, for the benchmark, the steps one by one).
    token_exchange_output="$(token_exchange_oidc_token "${token_exchange_agent[@]}")"
    if [[ "$token_exchange_output" == *$'\n!buildkite-agent-failed '* ]]; then
      if [[ "$token_exchange_mode" != exchange ]]; then
        token_exchange_agent_failure "$token_exchange_output"
        return 1
      fi
    else
      token_exchange_oidc="${token_exchange_output//[[:space:]]/}"
    fi
    [[ "$token_exchange_mode" == exchange ]] || return 0
    token_exchange_read_cli < <(
      unset SSLKEYLOGFILE
      set +o pipefail
      printf '%s\n' "$token_exchange_output" | DENO_NO_UPDATE_CHECK=1 "${token_exchange_cli[@]}"
    ) || status=$?
  elif ((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 1))); then
    # The agent's request for the OIDC token (a round trip to Buildkite) runs while Deno starts:
    # its output reaches the CLI on stdin, and the CLI reports the agent's failure itself. The
    # agent's process substitution comes first, and each is forked from this shell rather than
    # inside a pipeline (a fork costs milliseconds on some hosts). The CLI's debug lines reach the log as they happen (stderr). SSLKEYLOGFILE
    # would make Deno write the TLS session keys of the exchange to a file.
    local agent_fd cli_fd
    exec {agent_fd}< <(token_exchange_oidc_token "${token_exchange_agent[@]}")
    exec {cli_fd}< <(
      unset SSLKEYLOGFILE
      DENO_NO_UPDATE_CHECK=1 exec "${token_exchange_cli[@]}" 0<&"$agent_fd"-
    )
    exec {agent_fd}<&-
    # The redactor may start as soon as the CLI has the OIDC token (token_exchange_read_cli).
    [[ "$redact" != true ]] || early_redactor=true
    token_exchange_read_cli <&"$cli_fd" || status=$?
    exec {cli_fd}<&-
  else
    # bash before 4.1 (macOS's 3.2) has no {fd}: the same, as a pipeline.
    token_exchange_read_cli < <(
      unset SSLKEYLOGFILE
      set +o pipefail
      token_exchange_oidc_token "${token_exchange_agent[@]}" |
        DENO_NO_UPDATE_CHECK=1 "${token_exchange_cli[@]}"
    ) || status=$?
  fi
  [[ "$status" -eq 0 ]] || token_exchange_redactor_stop
  return "$status"
}

# token_exchange_read_cli: reads what the CLI prints on stdout with --format hook: "ready" once Deno
# has started (the agent has usually not answered yet, so this shell does then what the early
# redactor needs), "exchanging" once it has the OIDC token (the redactor starts then), "ok", the
# token and its lifetime in seconds, and then returns at once while Deno shuts down (a job saves
# about 10 ms); or its error lines, which go to token_exchange_output, and "!exit STATUS".
token_exchange_read_cli() {
  local line="" status=""
  IFS= read -r line || true
  if [[ "$line" == ready ]]; then
    token_exchange_redactor_prepare
    IFS= read -r line || true
  fi
  if [[ "$line" == exchanging ]]; then
    token_exchange_redactor_start
    IFS= read -r line || true
  fi
  if [[ "$line" == ok ]]; then
    IFS= read -r token_exchange_token || true
    IFS= read -r token_exchange_expires_in || true
    [[ "$token_exchange_expires_in" =~ ^[0-9]{1,9}$ ]] || token_exchange_expires_in=""
    [[ -n "$token_exchange_token" ]] && return 0
    line=""
  fi
  while :; do
    case "$line" in
      "!exit "*) status="${line#!exit }" ;;
      *) token_exchange_output+="${line}"$'\n' ;;
    esac
    IFS= read -r line || [[ -n "$line" ]] || break
  done
  [[ "$status" =~ ^[1-9][0-9]{0,2}$ ]] || status=1
  return "$status"
}

# token_exchange_agent_failure OUTPUT: token_exchange_output = the CLI-style error line for the
# agent's failure that token_exchange_oidc_token reported in OUTPUT (where no CLI runs).
token_exchange_agent_failure() {
  local rest="${1#*$'\n!buildkite-agent-failed '}" status detail="" line before=""
  status="${rest%%$'\n'*}"
  rest="${rest#*$'\n'}"
  while IFS= read -r line; do
    [[ -z "${line//[[:space:]]/}" ]] && continue
    before="$detail" detail="$line"
  done <<<"$rest"
  detail="${before:+${before} }${detail}"
  if [[ "$status" == 127 ]]; then
    token_exchange_output="token-exchange: buildkite-agent is not on PATH: run inside a Buildkite job"
  else
    token_exchange_output="token-exchange: buildkite-agent oidc request-token failed (exit status ${status}): $(token_exchange_printable "${detail:-no error output}")"
  fi
}

# token_exchange_expiry VAR: VAR = when the first of this entry's current tokens expires (epoch
# seconds): the issued token's expires_in (or exp), the OIDC token's exp where a file holds it; 5
# minutes from now when neither says.
token_exchange_expiry() {
  local now first="" exp
  token_exchange_now now
  [[ -z "$token_exchange_expires_in" ]] || first=$((now + token_exchange_expires_in))
  if [[ -z "$first" && -n "$token_exchange_token" ]]; then
    token_exchange_jwt_exp exp "$token_exchange_token"
    first="$exp"
  fi
  if [[ -n "$token_exchange_oidc" && "$token_exchange_oidc_file" == true ]]; then
    token_exchange_jwt_exp exp "$token_exchange_oidc"
    if [[ -n "$exp" ]] && { [[ -z "$first" ]] || ((exp < first)); }; then first="$exp"; fi
  fi
  printf -v "$1" '%s' "${first:-$((now + 300))}"
}

# token_exchange_write_files PRIVATE: writes this entry's files from the tokens just obtained: the
# OIDC token, the issued token (token-file), the Google credentials. Each atomically.
token_exchange_write_files() {
  local private="$1" status=0 json
  if [[ "$token_exchange_oidc_file" == true ]]; then
    token_exchange_write_file "${private}/oidc-token" "$token_exchange_oidc" || status=$?
    [[ "$status" -eq 0 ]] || { token_exchange_file_error "$status" "the OIDC token file" "${private}/oidc-token"; return; }
  fi
  if [[ -n "$token_exchange_token_path" ]]; then
    token_exchange_write_file "$token_exchange_token_path" "$token_exchange_token" || status=$?
    [[ "$status" -eq 0 ]] || { token_exchange_file_error "$status" token-file "$token_exchange_token_path"; return; }
  fi
  if [[ "$token_exchange_mode" == google && ! -f "${private}/google-credentials.json" ]]; then
    token_exchange_google_credentials json "${private}/oidc-token"
    token_exchange_write_file "${private}/google-credentials.json" "$json" || status=$?
    [[ "$status" -eq 0 ]] || { token_exchange_file_error "$status" "the Google credentials file" "${private}/google-credentials.json"; return; }
  fi
}

# token_exchange_renew PRIVATE: for the refresher: gets new tokens and replaces the files; prints
# when the first of them expires, or the error.
token_exchange_renew() {
  local expires_at
  if ! token_exchange_obtain; then
    printf '%s\n' "${token_exchange_output#token-exchange: }"
    return 1
  fi
  token_exchange_write_files "$1" || { token_exchange_redactor_stop; return 1; }
  [[ "$redact" != true ]] || token_exchange_redact_tokens
  token_exchange_expiry expires_at
  printf '%s\n' "$expires_at"
}

# token_exchange_redact_tokens: hands the tokens just obtained to the log redactor: the issued
# token, and the OIDC token where a file keeps it.
token_exchange_redact_tokens() {
  [[ -z "$token_exchange_token" ]] || token_exchange_redact "$token_exchange_token"
  [[ "$token_exchange_oidc_file" != true ]] || token_exchange_redact "$token_exchange_oidc"
}

# The early redactor, when token_exchange_obtain allows it (early_redactor=true), so that
# `buildkite-agent redactor add` has started when the issued token comes (its start is on the
# hook's path otherwise, and a process start costs milliseconds on some hosts):
# - token_exchange_redactor_prepare, once Deno has started and while the agent is still answering,
#   forks a subshell that waits on a pipe (and takes the caller's PIPE trap, for
#   token_exchange_redact), so that no fork slows the agent's start or the exchange;
# - token_exchange_redactor_start, once the CLI has the OIDC token, tells it to become the agent's
#   `redactor add`, which then reads the token from the same pipe (token_exchange_redact);
# - token_exchange_redactor_stop, on a failure, ends it unused: before the start it just ends, so
#   the agent never runs; after it, the agent is stopped before it is handed anything.
token_exchange_redactor_prepare() {
  [[ "${early_redactor:-false}" == true && -z "${token_exchange_redactor_pid:-}" ]] || return 0
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
  token_exchange_debug "Starting buildkite-agent redactor add while the exchange runs"
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

# token_exchange_now VAR: VAR = the time in whole seconds since the epoch, with builtins where bash
# has them (5.0: EPOCHSECONDS; 4.2: printf %()T), else date.
token_exchange_now() {
  if [[ -n "${EPOCHSECONDS:-}" ]]; then
    printf -v "$1" '%s' "$EPOCHSECONDS"
  elif ((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 2))); then
    printf -v "$1" '%(%s)T' -1
  else
    printf -v "$1" '%s' "$(date +%s)"
  fi
}

# token_exchange_rfc3339 VAR EPOCH: VAR = EPOCH as an RFC 3339 time in UTC (2026-11-26T12:00:00Z).
token_exchange_rfc3339() {
  local when
  if ((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 2))); then
    TZ=UTC printf -v when '%(%Y-%m-%dT%H:%M:%SZ)T' "$2"
  else
    when="$(date -u -r "$2" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -d "@$2" +%Y-%m-%dT%H:%M:%SZ)"
  fi
  printf -v "$1" '%s' "$when"
}

# token_exchange_setup PLUGIN_DIR: reads and checks this entry's options into the caller's variables
# (env_var, token_file, redact, refresh, aws_role, token_exchange_mode, token_exchange_oidc_var,
# token_exchange_oidc_file, token_exchange_debug_on): exit 2 naming the option on a mistake.
token_exchange_setup() {
  local plugin_dir="$1" google oidc_option
  token_exchange_check_options || return 2
  token_exchange_boolean token_exchange_debug_on DEBUG false || return 2
  token_exchange_boolean redact REDACT true || return 2
  token_exchange_boolean refresh REFRESH false || return 2
  token_exchange_boolean google GOOGLE_CREDENTIALS false || return 2
  token_exchange_option aws_role AWS_ROLE_ARN ""
  token_exchange_option env_var ENV_VAR FEDERATED_ACCESS_TOKEN
  token_exchange_check_env_var "$env_var" || return 2
  token_exchange_option token_file TOKEN_FILE ""
  [[ "$token_file" != false && "$token_file" != 0 ]] || token_file=""
  [[ "$token_file" != 1 ]] || token_file=true
  token_exchange_option oidc_option OIDC_TOKEN_FILE ""
  case "$oidc_option" in
    "" | false | 0) ;;
    true | 1) token_exchange_oidc_var=BUILDKITE_OIDC_TOKEN_FILE ;;
    *)
      token_exchange_oidc_var="$oidc_option"
      token_exchange_check_env_var "$oidc_option" oidc-token-file BUILDKITE_OIDC_TOKEN_FILE || return 2
      ;;
  esac
  if [[ -n "$aws_role" && "$google" == true ]]; then
    token_exchange_config_error "Both aws-role-arn and google-credentials are set: use one plugin entry for each"
    return 2
  elif [[ -n "$aws_role" || "$google" == true ]]; then
    token_exchange_mode=aws
    [[ "$google" != true ]] || token_exchange_mode=google
    if [[ -n "$token_file" && "$token_exchange_mode" == aws ]]; then
      token_exchange_config_error "token-file is for the token an exchange issues, and with aws-role-arn the plugin makes none (the AWS tools exchange the OIDC token themselves): remove token-file"
      return 2
    elif [[ -n "$token_file" ]]; then
      token_exchange_config_error "token-file is for the token an exchange issues, and with google-credentials the plugin makes none (Google's tools exchange the OIDC token themselves): remove token-file"
      return 2
    fi
    token_exchange_oidc_file=true
    if [[ "$token_exchange_mode" == aws ]] && [[ -n "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT:-}${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_ISSUER:-}" ]]; then
      token_exchange_config_error "aws-role-arn makes no exchange (the AWS tools call AssumeRoleWithWebIdentity themselves): remove token-endpoint and issuer"
      return 2
    fi
    # shellcheck source=lib/credentials.bash
    . "${plugin_dir}/lib/credentials.bash"
    token_exchange_check_credentials "$token_exchange_mode" || return 2
  elif [[ -n "$token_exchange_oidc_var" || "$refresh" == true ]]; then
    [[ -z "$token_exchange_oidc_var" ]] || token_exchange_oidc_file=true
    # shellcheck source=lib/credentials.bash
    . "${plugin_dir}/lib/credentials.bash"
  fi
  # What refresh keeps fresh is files: with an exchange, the token's.
  [[ "$refresh" != true || "$token_exchange_mode" != exchange || -n "$token_file" ]] || token_file=true
}

# token_exchange_hook HOOK PLUGIN_DIR: the environment and pre-command hooks. Exchanges the token and
# exports it when HOOK is the one the `hook` option selects; returns non-zero on failure.
token_exchange_hook() {
  local hook="$1" plugin_dir="$2" selected env_var token_file redact refresh aws_role
  local token_exchange_debug_on token_exchange_mode=exchange token_exchange_oidc_var=""
  local token_exchange_oidc_file=false
  token_exchange_option selected HOOK environment
  case "$selected" in
    environment | pre-command) ;;
    *)
      token_exchange_config_error "hook is \"$(token_exchange_printable "$selected")\": use environment or pre-command"
      return 2
      ;;
  esac
  [[ "$selected" == "$hook" ]] || return 0
  token_exchange_setup "$plugin_dir" || return

  case "$token_exchange_mode" in
    exchange) echo "~~~ :key: Exchanging the job's OIDC token for ${env_var}" ;;
    aws) echo "~~~ :key: Handing the job's OIDC token to AWS for ${aws_role}" ;;
    google) echo "~~~ :key: Writing Google Cloud credentials for the job's OIDC token" ;;
  esac
  local -a token_exchange_cli=() token_exchange_agent=()
  token_exchange_agent_args || return
  if [[ "$token_exchange_mode" == exchange ]]; then
    token_exchange_check_exchange_options || return
    token_exchange_command "$plugin_dir" || return
  else
    local endpoint host
    token_exchange_option endpoint TOKEN_ENDPOINT ""
    [[ "$token_exchange_mode" != google || -z "$endpoint" ]] || token_exchange_host host token-endpoint "$endpoint" || return 2
  fi

  local token_exchange_oidc token_exchange_token token_exchange_expires_in token_exchange_output
  local token_exchange_token_path="" private="" expires_at status=0
  token_exchange_debug "Requesting the OIDC token: buildkite-agent ${token_exchange_agent[*]}"
  token_exchange_obtain || status=$?
  if [[ "$status" -ne 0 ]]; then
    token_exchange_report_failure "$status" "$token_exchange_output"
    return "$status"
  fi
  [[ "$redact" != true ]] || token_exchange_redact_tokens
  if [[ -n "$token_file" || "$token_exchange_oidc_file" == true ]]; then
    # shellcheck source=lib/files.bash
    . "${plugin_dir}/lib/files.bash"
    token_exchange_private_dir private "$env_var" || return 1
    [[ -z "$token_file" ]] || token_exchange_token_path token_exchange_token_path "$private" "$token_file" || return 1
    token_exchange_write_files "$private" || return
  fi

  local file_var="${env_var}_FILE" lifetime="" exported=""
  case "$token_exchange_mode" in
    exchange)
      export "${env_var}=${token_exchange_token}"
      exported="$env_var"
      if [[ -n "$token_exchange_token_path" ]]; then
        export "${file_var}=${token_exchange_token_path}"
        exported+=" and ${file_var} (${token_exchange_token_path})"
      fi
      if [[ -n "$token_exchange_expires_in" ]]; then
        token_exchange_now expires_at
        token_exchange_rfc3339 expires_at $((expires_at + token_exchange_expires_in))
        export "${env_var}_EXPIRES_AT=${expires_at}"
        if ((token_exchange_expires_in >= 120)); then
          lifetime=" (expires in $((token_exchange_expires_in / 60)) min)"
        else
          lifetime=" (expires in ${token_exchange_expires_in} s)"
        fi
      fi
      ;;
    aws)
      local session
      token_exchange_session_name session
      export AWS_ROLE_ARN="$aws_role" AWS_WEB_IDENTITY_TOKEN_FILE="${private}/oidc-token" AWS_ROLE_SESSION_NAME="$session"
      exported="AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_SESSION_NAME (${session})"
      ;;
    google)
      export GOOGLE_APPLICATION_CREDENTIALS="${private}/google-credentials.json"
      export CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE="${private}/google-credentials.json"
      exported="GOOGLE_APPLICATION_CREDENTIALS and CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE (${private}/google-credentials.json)"
      ;;
  esac
  if [[ -n "$token_exchange_oidc_var" ]]; then
    export "${token_exchange_oidc_var}=${private}/oidc-token"
    exported+=", ${token_exchange_oidc_var}"
  fi
  if [[ "$refresh" == true ]]; then
    # shellcheck source=lib/refresh.bash
    . "${plugin_dir}/lib/refresh.bash"
    token_exchange_expiry expires_at
    token_exchange_start_refresher "$plugin_dir" "$private" "$expires_at" "$token_exchange_token_path" || return 1
    exported+="; kept fresh until the job ends"
  fi
  echo "Exported ${exported}${lifetime}"
}

# token_exchange_pre_exit: stops this plugin entry's refresher, then removes what its hook made: the
# token files it recorded and its private directory (never a path from the environment, which the
# job could have changed).
token_exchange_pre_exit() {
  local env_var job private path plugin_dir="${1:-.}"
  token_exchange_option env_var ENV_VAR FEDERATED_ACCESS_TOKEN
  [[ "$env_var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || return 0
  # shellcheck source=lib/files.bash
  . "${plugin_dir}/lib/files.bash"
  token_exchange_job_dir job
  private="${job}/${env_var}"
  token_exchange_owned_dir "$job" && token_exchange_owned_dir "$private" || return 0
  if [[ -p "${private}/refresher.fifo" ]]; then
    # shellcheck source=lib/refresh.bash
    . "${plugin_dir}/lib/refresh.bash"
    token_exchange_stop_refresher "$private" "$env_var"
  fi
  if [[ -f "${private}/files" && ! -L "${private}/files" ]]; then
    while IFS= read -r path || [[ -n "$path" ]]; do
      # Only a regular file of ours: if the job replaced it with anything else, it stays.
      if [[ -f "$path" && ! -L "$path" && -O "$path" ]]; then rm -f "$path"; fi
    done <"${private}/files"
  fi
  rm -rf "$private"
  rmdir "$job" 2>/dev/null || true
}
