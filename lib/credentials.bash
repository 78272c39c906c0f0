# shellcheck shell=bash
# Credentials that last the whole job, in the files that Google's, AWS's and other tools read: the
# Buildkite OIDC token in a file (oidc-token-file, aws-role-arn, google-credentials), an
# external_account file for Google, the variables of AWS's web identity provider, and the time a
# token expires. lib/plugin.bash sources this file only when an entry uses one of those options.
# Written for bash 3.2 (macOS) and later; functions only.

# The Google endpoints an external_account file names by default (the token-endpoint option, and
# TOKEN_EXCHANGE_GOOGLE_IAM_URL for a mirror or a test, replace them).
TOKEN_EXCHANGE_GOOGLE_STS_URL=https://sts.googleapis.com/v1/token
TOKEN_EXCHANGE_GOOGLE_IAM_URL_DEFAULT=https://iamcredentials.googleapis.com/v1

# token_exchange_jwt_exp VAR TOKEN: VAR = the exp claim of the JWT TOKEN, or empty when it has none
# (or is not a JWT). Decodes base64url with builtins only.
token_exchange_jwt_exp() {
  local payload="${2#*.}" alphabet='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  local text="" bits=0 count=0 char index i
  printf -v "$1" '%s' ""
  [[ "$2" == *.*.* ]] || return 0
  payload="${payload%%.*}"
  [[ "${#payload}" -le 8192 && "$payload" =~ ^[A-Za-z0-9_-]+$ ]] || return 0
  for ((i = 0; i < ${#payload}; i++)); do
    char="${payload:i:1}"
    index="${alphabet%%"$char"*}"
    bits=$(((bits << 6) | ${#index}))
    count=$((count + 6))
    if ((count >= 8)); then
      count=$((count - 8))
      printf -v char '%03o' $(((bits >> count) & 255))
      # shellcheck disable=SC2059 # an octal escape, made just above
      printf -v char "\\${char}"
      text+="$char"
    fi
  done
  # In a variable: bash 3.2 cannot parse parentheses in a regular expression in [[ ]].
  local exp_claim='"exp"[[:space:]]*:[[:space:]]*([0-9]{1,12})[^0-9.]'
  if [[ "$text" =~ $exp_claim ]]; then
    printf -v "$1" '%s' "${BASH_REMATCH[1]}"
  fi
}

# token_exchange_json_string VAR TEXT: VAR = TEXT as a JSON string, quotes included.
token_exchange_json_string() {
  local text="${2//\\/\\\\}"
  text="${text//\"/\\\"}"
  printf -v "$1" '"%s"' "$text"
}

# token_exchange_session_name VAR: VAR = a valid AWS_ROLE_SESSION_NAME (2 to 64 characters of
# [\w+=,.@-]) that names the build: buildkite-<pipeline>-<build number>-<step key or job ID>.
token_exchange_session_name() {
  local name="buildkite-${BUILDKITE_PIPELINE_SLUG:-job}-${BUILDKITE_BUILD_NUMBER:-0}"
  local step="${BUILDKITE_STEP_KEY:-${BUILDKITE_JOB_ID:-}}"
  [[ -z "$step" ]] || name+="-${step}"
  name="${name//[^A-Za-z0-9_+=,.@-]/-}"
  printf -v "$1" '%s' "${name:0:64}"
}

# token_exchange_google_credentials VAR OIDC_FILE: VAR = the external_account credentials (JSON) that
# make Google's libraries, gcloud and Terraform exchange the OIDC token in OIDC_FILE themselves,
# and refresh by reading the file again. Reads target-audience, token-endpoint,
# subject-token-type, service-account and service-account-token-lifetime.
token_exchange_google_credentials() {
  local oidc_file="$2" audience token_url type account lifetime document value
  token_exchange_option audience TARGET_AUDIENCE ""
  token_exchange_option token_url TOKEN_ENDPOINT "$TOKEN_EXCHANGE_GOOGLE_STS_URL"
  token_exchange_option type SUBJECT_TOKEN_TYPE "urn:ietf:params:oauth:token-type:jwt"
  token_exchange_option account SERVICE_ACCOUNT ""
  token_exchange_option lifetime SERVICE_ACCOUNT_TOKEN_LIFETIME ""
  [[ -n "$audience" ]] || token_exchange_option audience TARGET_AUDIENCE_0 ""
  document='{"type":"external_account","universe_domain":"googleapis.com"'
  token_exchange_json_string value "$audience" && document+=",\"audience\":${value}"
  token_exchange_json_string value "$type" && document+=",\"subject_token_type\":${value}"
  token_exchange_json_string value "$token_url" && document+=",\"token_url\":${value}"
  if [[ -n "$account" ]]; then
    token_exchange_json_string value "${TOKEN_EXCHANGE_GOOGLE_IAM_URL:-$TOKEN_EXCHANGE_GOOGLE_IAM_URL_DEFAULT}/projects/-/serviceAccounts/${account}:generateAccessToken"
    document+=",\"service_account_impersonation_url\":${value}"
    [[ -z "$lifetime" ]] || document+=",\"service_account_impersonation\":{\"token_lifetime_seconds\":$((10#$lifetime))}"
  fi
  token_exchange_json_string value "$oidc_file"
  document+=",\"credential_source\":{\"file\":${value},\"format\":{\"type\":\"text\"}}}"
  printf -v "$1" '%s\n' "$document"
}

# token_exchange_check_credentials MODE: the options of aws-role-arn or google-credentials are usable
# (exit 2, naming the pipeline.yml option, before anything runs).
token_exchange_check_credentials() {
  local mode="$1" value
  if [[ "$mode" == aws ]]; then
    token_exchange_option value AWS_ROLE_ARN ""
    # (No {1,512} here: glibc compiles a bounded repeat into as many states, megabytes of them.)
    if [[ "${#value}" -gt 600 || ! "$value" =~ ^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$ ]]; then
      token_exchange_config_error "aws-role-arn is \"$(token_exchange_printable "$value")\", not the ARN of an IAM role: use one such as arn:aws:iam::123456789012:role/deploy"
      return 2
    fi
    return 0
  fi
  token_exchange_option value TARGET_AUDIENCE ""
  [[ -n "$value" ]] || token_exchange_option value TARGET_AUDIENCE_0 ""
  if [[ -z "$value" || -n "${BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TARGET_AUDIENCE_1:-}" ]]; then
    token_exchange_config_error "google-credentials needs one target-audience, the workload identity provider's: //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER"
    return 2
  fi
  if [[ "$value" =~ [[:cntrl:]] ]]; then
    token_exchange_config_error "target-audience has a control character in it: remove it"
    return 2
  fi
  token_exchange_option value SERVICE_ACCOUNT ""
  if [[ -n "$value" && ! "$value" =~ ^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$ ]]; then
    token_exchange_config_error "service-account is \"$(token_exchange_printable "$value")\", not a service account's email: use one such as deployer@my-project.iam.gserviceaccount.com"
    return 2
  fi
  token_exchange_option value SERVICE_ACCOUNT_TOKEN_LIFETIME ""
  if [[ -n "$value" ]] && { [[ ! "$value" =~ ^[0-9]{1,5}$ ]] || ((10#$value < 600 || 10#$value > 43200)); }; then
    token_exchange_config_error "service-account-token-lifetime is \"$(token_exchange_printable "$value")\": use a whole number of seconds from 600 to 43200"
    return 2
  fi
}
