# shellcheck shell=bash
# After the engine: the refresher of refresh: true, and pre-exit's cleanup. The refresher is one idle
# bash (a few MiB) that waits, with a read that times out on a FIFO of its own, for the number of
# seconds the engine printed (checking once a minute that the job's process is still there), then
# runs the agent and the engine for a renewal; it never holds the hook's output. It runs in a
# process group of its own, which pre-exit ends, renewals under way included. lib/plugin.bash
# sources this file when an entry sets refresh, and in pre-exit. Written for bash 3.2 and later.

# token_exchange_start_refresher PLUGIN_DIR ENTRY WAIT: starts the entry's refresher, to renew in
# WAIT seconds, and records its PID (its process group's) for pre-exit. Its environment holds none
# of the variables the engine named: tokens this job's entries exported, and the secrets a renewal
# needs, which it reads from its FIFO instead (never from its environment or arguments).
token_exchange_start_refresher() {
  local plugin_dir="$1" entry="$2" line name
  local -a hidden=() handed=()
  for line in ${token_exchange_hidden[@]+"${token_exchange_hidden[@]}"}; do
    name="${line#* }"
    hidden+=("$name")
    [[ "$line" != "private "* || -z "${!name+set}" ]] || handed+=("${name}=${!name}")
  done
  if ! mkfifo -m 0600 "${entry}/refresher.fifo" 2>/dev/null; then
    token_exchange_error "🚨 Cannot start the token refresher: mkfifo failed in ${entry}"
    return 1
  fi
  (
    # The FIFO is open (here, then in the refresher) from before the secrets are written until the
    # refresher has read them: a FIFO nobody holds open drops what is in it.
    exec 8<>"${entry}/refresher.fifo"
    { [[ "${#handed[@]}" -eq 0 ]] || printf '%s\0' "${handed[@]}"; printf '\0'; } >&8
    unset -v ${hidden[@]+"${hidden[@]}"} 2>/dev/null || true
    # Job control: the refresher leads a process group of its own.
    set -m
    # shellcheck disable=SC2016 # expanded by the refresher's bash
    bash -c '. "$1/lib/plugin.bash" && . "$1/lib/refresh.bash" && token_exchange_refresher "$@"' \
      token-exchange-refresher "$plugin_dir" "$entry" "$3" "${TOKEN_EXCHANGE_JOB_PID:-$PPID}" \
      <&8 8<&- >/dev/null 2>&1 &
    printf '%s\n' "$!" >"${entry}/refresher.pid"
  )
}

# token_exchange_refresher PLUGIN_DIR ENTRY WAIT WATCHED: the refresher itself, in a bash of its own
# (a fork of the hook's would keep its memory and environment). WATCHED is the job's process.
token_exchange_refresher() {
  local plugin_dir="$1" entry="$2" token_exchange_wait="$3" watched="$4" record left chunk
  # shellcheck disable=SC2034 # the functions it calls set these (bash's dynamic scope)
  local -a token_exchange_cli=() token_exchange_agent=() token_exchange_exports=()
  # shellcheck disable=SC2034
  local -a token_exchange_failure=() token_exchange_hidden=() handed=()
  set +e +u +o pipefail
  # Not the job's checkout, which may go away first (and then no program could start here).
  cd / || exit 1
  # Its stdin is its FIFO: first the secrets, then nothing, which a read with a time-out waits on.
  exec 9<&0 0</dev/null
  while IFS= read -r -d '' record <&9 && [[ -n "$record" ]]; do handed+=("$record"); done
  # For the agent and the engine it starts: this process's own environment stays as it began.
  [[ "${#handed[@]}" -eq 0 ]] || export "${handed[@]}"
  while [[ "$token_exchange_wait" =~ ^[0-9]+$ ]]; do
    left="$token_exchange_wait"
    while ((left > 0)); do
      chunk=$((left > 60 ? 60 : left))
      read -r -t "$chunk" <&9
      if ! kill -0 "$watched" 2>/dev/null; then
        # The job's process is gone, and pre-exit will not come: remove the entry's files.
        token_exchange_remove_entry "$plugin_dir" "$entry"
        token_exchange_remove_job "${entry%/*}"
        exit 0
      fi
      left=$((left - chunk))
    done
    token_exchange_wait=60
    token_exchange_launch renew "$entry" "$plugin_dir"
  done
  rm -f "${entry}/refresher.pid"
}

# token_exchange_stop_refresher ENTRY: ends the entry's refresher and any renewal under way (the
# engine finishes the file it is writing), and waits until none of their processes is left.
token_exchange_stop_refresher() {
  local pid="" i
  [[ ! -f "${1}/refresher.pid" ]] || IFS= read -r pid <"${1}/refresher.pid" || true
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -TERM -- "-${pid}" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    token_exchange_group_running "$pid" || return 0
    # bash 3.2's read takes whole seconds only.
    if ((BASH_VERSINFO[0] >= 4)); then read -r -t 0.05 <>"${1}/refresher.fifo" || true; else sleep 0.05; fi
  done
  kill -KILL -- "-${pid}" 2>/dev/null || true
}

# token_exchange_group_running PGID: a process of the group is still running. One that has ended
# but that its parent (init, for the refresher) has not reaped yet, a zombie, does not count.
token_exchange_group_running() {
  local pgid stat
  kill -0 -- "-${1}" 2>/dev/null || return 1
  while read -r pgid stat; do
    [[ "$pgid" != "$1" || "$stat" == Z* ]] || return 0
  done < <(ps -e -o pgid=,stat= 2>/dev/null)
  return 1
}

# token_exchange_remove_entry PLUGIN_DIR ENTRY: revokes the entry's token (revoke) and removes what
# the entry made: its files outside its directory (by the engine, which removes each only if it is
# still the file this job made), then the directory.
token_exchange_remove_entry() {
  local plugin_dir="$1" entry="$2" dirs="" line
  if [[ -f "${entry}/external-dirs" || -f "${entry}/revoke.json" ]]; then
    [[ ! -f "${entry}/external-dirs" || -L "${entry}/external-dirs" ]] || while IFS= read -r line; do dirs+="${dirs:+,}${line}"; done <"${entry}/external-dirs"
    # shellcheck disable=SC2034 # token_exchange_engine sets and reads these
    local -a token_exchange_cli=() token_exchange_agent=()
    if token_exchange_engine cleanup "$entry" "$plugin_dir" "$dirs"; then
      token_exchange_read_engine < <(DENO_NO_UPDATE_CHECK=1 "${token_exchange_cli[@]}" </dev/null) || true
    fi
  fi
  rm -rf "$entry"
}

# token_exchange_pre_exit PLUGIN_DIR: finds this entry's directory by its options, stops its
# refresher, shows the refresher's last failure and how often it renewed, and removes what the entry made (never a path
# from the environment, which the job could have changed).
token_exchange_pre_exit() {
  local plugin_dir="$1" job entry fingerprint recorded line
  token_exchange_job_dir job
  [[ -d "$job" && ! -L "$job" && -O "$job" ]] || return 0
  token_exchange_fingerprint fingerprint
  for entry in "$job"/*; do
    [[ -f "${entry}/options" && ! -L "${entry}/options" ]] || continue
    recorded=""
    IFS= read -r -d '' recorded <"${entry}/options" || true
    [[ "$recorded" == "$fingerprint" ]] || continue
    token_exchange_stop_refresher "$entry"
    for line in error status; do [[ ! -s "${entry}/refresher.${line}" ]] || printf '%s\n' "$(<"${entry}/refresher.${line}")" >&2; done
    token_exchange_remove_entry "$plugin_dir" "$entry"
  done
  token_exchange_remove_job "$job"
}

# token_exchange_remove_job JOB_DIR: removes the job's directory, and its record, once its last
# entry is gone.
token_exchange_remove_job() {
  local -a left=("$1"/*/)
  [[ -d "${left[0]}" ]] || rm -rf "$1"
}
