# shellcheck shell=bash
# The files a hook writes on a shared agent host: a private directory per job and plugin entry
# (0700), files in it 0600, each written atomically (a private temporary file in the same
# directory, then a rename), never through a link and never over a file the plugin did not write.
# lib/plugin.bash sources this file only when an entry writes files, and in pre-exit.
# Written for bash 3.2 (macOS) and later; functions only.

# token_exchange_job_dir VAR: VAR = this job's private directory (TMPDIR is shared by every job on
# the agent; the job ID keeps two jobs apart). Nothing is created.
token_exchange_job_dir() {
  local tmp_dir="${TMPDIR:-/tmp}" job_id="${BUILDKITE_JOB_ID:-local}"
  printf -v "$1" '%s' "${tmp_dir%/}/token-exchange-${job_id//[^A-Za-z0-9-]/_}"
}

# token_exchange_owned_dir DIR: DIR is a directory of ours, not a link to one.
token_exchange_owned_dir() {
  [[ -d "$1" && ! -L "$1" && -O "$1" ]]
}

# token_exchange_private_dir VAR ENV_VAR: VAR = this plugin entry's private directory (0700, in the
# job's 0700 directory), made now unless this job already made it. A directory in its place that
# is not ours, or is a link, is refused: another user or job may have planted it.
token_exchange_private_dir() {
  local job entry="" dir
  token_exchange_job_dir job
  entry="${job}/$2"
  for dir in "$job" "$entry"; do
    if [[ ! -e "$dir" && ! -L "$dir" ]] && mkdir -m 0700 "$dir" 2>/dev/null; then
      continue
    fi
    if ! token_exchange_owned_dir "$dir"; then
      token_exchange_error "Cannot use the private directory ${dir}: it is not a directory this agent's user made (another job may have put it there)" \
        "Remove it, or set TMPDIR to a directory only this agent uses"
      return 1
    fi
  done
  printf -v "$1" '%s' "$entry"
}

# token_exchange_owned_file PATH: PATH is a regular file of ours, mode 0600, not a link: a token
# file that an earlier job wrote, which may be replaced.
token_exchange_owned_file() {
  [[ -f "$1" && ! -L "$1" && -O "$1" ]] || return 1
  [[ -n "$(find "$1" -prune -perm 0600 2>/dev/null)" ]]
}

# token_exchange_write_file PATH CONTENT: writes CONTENT to PATH atomically (a private temporary
# file in the same directory, then a rename), so a reader never sees half a token, no link is
# followed, and nobody can read or swap the file in between. PATH must not exist, or be a token
# file of ours (token_exchange_owned_file).
token_exchange_write_file() {
  local path="$1" dir tmp
  dir="${path%/*}"
  [[ -n "$dir" ]] || dir=/
  if [[ -L "$path" ]] || { [[ -e "$path" ]] && ! token_exchange_owned_file "$path"; }; then
    return 3
  fi
  tmp="$(umask 077 && mktemp "${dir}/.token-exchange.XXXXXXXX" 2>/dev/null)" || return 1
  if ! printf '%s' "$2" >"$tmp" 2>/dev/null; then
    rm -f "$tmp"
    return 1
  fi
  local -a mv_args=(-f)
  # GNU mv: never move into a directory that appeared at PATH in the meantime.
  [[ "$OSTYPE" != linux* ]] || mv_args+=(-T)
  if ! mv "${mv_args[@]}" "$tmp" "$path" 2>/dev/null; then
    rm -f "$tmp"
    return 1
  fi
}

# token_exchange_token_path VAR PRIVATE_DIR TOKEN_FILE: VAR = where token-file writes the token (true:
# in the private directory), making an explicit path's directory and recording the path for
# pre-exit (first, so pre-exit removes it whatever happens next).
token_exchange_token_path() {
  local private="$2" path="$3"
  if [[ "$path" == true ]]; then
    path="${private}/token"
  else
    [[ "$path" == /* ]] || path="${PWD%/}/${path}"
    if [[ ! -d "${path%/*}" ]] && ! (umask 077 && mkdir -p "${path%/*}") 2>/dev/null; then
      token_exchange_error "Cannot write token-file ${path}: its directory does not exist and cannot be made: use a writable directory, or token-file: true for a private one"
      return 1
    fi
    printf '%s\n' "$path" >>"${private}/files"
  fi
  printf -v "$1" '%s' "$path"
}

# token_exchange_file_error STATUS OPTION PATH: the failure report of token_exchange_write_file.
token_exchange_file_error() {
  if [[ "$1" -eq 3 ]]; then
    token_exchange_config_error "$2 ${3} exists and is not a token file this plugin wrote (a 0600 regular file of this user): it was left untouched; choose another path, or token-file: true for a private one"
    return 2
  fi
  token_exchange_error "Cannot write $2 ${3}: check its directory is writable, or use token-file: true for a private one"
  return 1
}
