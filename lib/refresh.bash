# shellcheck shell=bash
# refresh: true. One background refresher per plugin entry keeps the entry's files fresh until
# pre-exit: it renews at about two thirds of the shorter remaining lifetime (the OIDC token's exp,
# the issued token's expires_in), replaces each file atomically, and on failure retries with
# backoff while the old token is still valid. While it waits it is one idle bash (a few MiB) in a
# read with a time-out on a FIFO of its own, so it starts no program; pre-exit writes "stop" to the
# FIFO. It never holds the hook's stdout or stderr, writes nothing to the job log, and ends by
# itself when the agent stops issuing tokens, when the job's process is gone, or after the job's
# time-out (or 24 hours). lib/plugin.bash sources this file only when an entry sets refresh.
# Written for bash 3.2 (macOS) and later; functions only.

# The longest a refresher runs without a job time-out (BUILDKITE_TIMEOUT, in minutes) to go by.
TOKEN_EXCHANGE_REFRESH_CAP_SECONDS=86400

# token_exchange_refresh_wait SECONDS: waits SECONDS, or until pre-exit writes "stop" to the FIFO on
# fd 9 (then returns 1).
token_exchange_refresh_wait() {
  local line=""
  ((${1} > 0)) || return 0
  if IFS= read -r -t "$1" line <&9; then
    [[ "$line" != stop ]] || return 1
  fi
  return 0
}

# token_exchange_refresher PLUGIN_DIR PRIVATE EXPIRES_AT TOKEN_PATH WATCHED: the refresher itself, in
# a bash of its own (a fork of the hook's would keep its memory): reads the entry's options again
# as the hook did, then renews until stopped. EXPIRES_AT is when the first of the current tokens
# expires (epoch seconds); WATCHED is the job's process.
token_exchange_refresher() {
  # shellcheck disable=SC2034 # the functions it calls read and set these (bash's dynamic scope)
  local plugin_dir="$1" private="$2" expires_at="$3" token_exchange_token_path="$4" watched="$5"
  # shellcheck disable=SC2034
  local env_var token_file redact refresh aws_role token_exchange_debug_on token_exchange_mode=exchange
  # shellcheck disable=SC2034
  local token_exchange_oidc_var="" token_exchange_oidc_file=false now obtained wait failures=0
  local deadline message
  # shellcheck disable=SC2034
  local -a token_exchange_cli=() token_exchange_agent=()
  set +e +u +o pipefail
  # Not the job's checkout, which may go away first (and then no program could start here).
  cd / || exit 1
  exec 9<>"${private}/refresher.fifo" || exit 1
  token_exchange_setup "$plugin_dir" >/dev/null 2>&1 || exit 2
  token_exchange_agent_args >/dev/null 2>&1 || exit 2
  if [[ "$token_exchange_mode" == exchange ]]; then
    token_exchange_command "$plugin_dir" >/dev/null 2>&1 || exit 2
  fi
  token_exchange_now now
  obtained="$now"
  deadline=$((now + TOKEN_EXCHANGE_REFRESH_CAP_SECONDS))
  [[ ! "${BUILDKITE_TIMEOUT:-}" =~ ^[0-9]{1,6}$ ]] || deadline=$((now + 60 * 10#$BUILDKITE_TIMEOUT + 300))
  while :; do
    token_exchange_now now
    if ((failures == 0)); then
      # Two thirds of the way from when the tokens were had to when the first of them expires.
      wait=$((obtained + (expires_at - obtained) * 2 / 3 - now))
    else
      # Back off (5 s, 10 s, 20 s, … 5 min), but try again before the old token expires.
      wait=$((5 << (failures - 1 < 6 ? failures - 1 : 6)))
      ((wait <= 300)) || wait=300
      if ((expires_at > now && wait > (expires_at - now) / 2)); then wait=$(((expires_at - now) / 2)); fi
    fi
    ((wait >= 1)) || wait=1
    # Wake at least once a minute to see whether the job is still there.
    while ((wait > 0)); do
      if ((wait > 60)); then
        token_exchange_refresh_wait 60 || exit 0
        wait=$((wait - 60))
      else
        token_exchange_refresh_wait "$wait" || exit 0
        wait=0
      fi
      kill -0 "$watched" 2>/dev/null || exit 0
      token_exchange_now now
      if ((now >= deadline)); then
        printf '%s\n' "stopped after the job's time-out, as a refresher must not outlive its job" >"${private}/refresher.error"
        exit 0
      fi
    done
    if message="$(token_exchange_renew "$private" 2>&1)"; then
      failures=0
      token_exchange_now obtained
      expires_at="${message##*$'\n'}"
      : >"${private}/refresher.error"
    else
      failures=$((failures + 1))
      message="$(token_exchange_printable "${message%%$'\n'*}")"
      printf '%s\n' "${message:-the renewal failed}" >"${private}/refresher.error"
      token_exchange_now now
      # The agent stopped issuing tokens (its job is over, or it was cancelled) and the files now
      # hold only expired tokens: nothing left to keep fresh.
      if ((now >= expires_at && failures >= 3)); then exit 1; fi
    fi
  done
}

# token_exchange_start_refresher PLUGIN_DIR PRIVATE EXPIRES_AT TOKEN_PATH: starts this entry's
# refresher, detached from the hook's output, and records its PID for pre-exit. It watches the
# process that runs the hooks for the job (the agent's), or TOKEN_EXCHANGE_JOB_PID.
token_exchange_start_refresher() {
  local plugin_dir="$1" private="$2"
  if ! mkfifo -m 0600 "${private}/refresher.fifo" 2>/dev/null; then
    token_exchange_error "Cannot start the token refresher: mkfifo failed in ${private}"
    return 1
  fi
  # shellcheck disable=SC2016 # expanded by the refresher's bash
  bash -c 'for f in plugin credentials files refresh; do . "$1/lib/$f.bash" || exit; done; token_exchange_refresher "$@"' \
    token-exchange-refresher "$plugin_dir" "$private" "$3" "$4" "${TOKEN_EXCHANGE_JOB_PID:-$PPID}" \
    </dev/null >/dev/null 2>&1 &
  printf '%s\n' "$!" >"${private}/refresher.pid"
  token_exchange_debug "Started the token refresher (PID $!), which renews at two thirds of the tokens' lifetime"
}

# token_exchange_stop_refresher PRIVATE ENV_VAR: pre-exit's part: stops the refresher, and shows its
# last error if it failed.
token_exchange_stop_refresher() {
  local private="$1" pid="" error="" i
  [[ -p "${private}/refresher.fifo" && ! -L "${private}/refresher.fifo" ]] || return 0
  [[ ! -f "${private}/refresher.pid" ]] || IFS= read -r pid <"${private}/refresher.pid" || true
  # O_RDWR: never blocks, even when the refresher is gone.
  printf 'stop\n' 1<>"${private}/refresher.fifo"
  if [[ "$pid" =~ ^[0-9]+$ ]]; then
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      # bash 3.2's read takes whole seconds only.
      if ((BASH_VERSINFO[0] >= 4)); then read -r -t 0.05 <> <(:) || true; else sleep 0.05; fi
    done
    kill "$pid" 2>/dev/null || true
  fi
  [[ ! -s "${private}/refresher.error" ]] || IFS= read -r error <"${private}/refresher.error" || true
  if [[ -n "$error" ]]; then
    printf '⚠️ The token refresher for %s failed: %s\n' "$2" "$(token_exchange_printable "$error")" >&2
  fi
}
