# cli_lib.sh - shared by the shell tests of the legodnn command (sourced).
# Gives a scratch directory $tmp (removed at exit), pass/fail counters, and:
#   expect CODE PATTERN -- COMMAND...   exit status CODE and PATTERN in the output
#   check DESCRIPTION COMMAND...        COMMAND succeeds
#   finish                              prints "N passed, M failed" and sets the status
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

expect() {
  local code=$1 pattern=$2
  shift 3
  local out
  out=$("$@" 2>&1)
  local rc=$?
  if [[ $rc -eq $code ]] && grep -qE -- "$pattern" <<<"$out"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $* -> exit $rc (want $code /$pattern/), output:" >&2
    echo "$out" | tail -5 >&2
  fi
}

check() {
  local what=$1
  shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $what" >&2; fi
}

finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}
