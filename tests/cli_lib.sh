# cli_lib.sh - shared by the shell tests of the legodnn command (sourced).
# Gives a scratch directory $tmp (removed at exit), pass/fail counters, and:
#   expect CODE PATTERN -- COMMAND...   exit status CODE and PATTERN in the output
#   check DESCRIPTION COMMAND...        COMMAND succeeds
#   finish                              prints "N passed, M failed" and sets the status
#   make_idx DIR PREFIX COUNT CLASSES   a tiny IDX split of 8x8 images whose brightness tells the class
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

be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }

# make_idx DIR PREFIX COUNT CLASSES: 8x8 images whose brightness tells the class
make_idx() {
  local dir=$1 prefix=$2 n=$3 k=$4
  mkdir -p "$dir"
  { printf '\x00\x00\x08\x03'; be32 "$n"; be32 8; be32 8
    for ((i = 0; i < n; i++)); do
      local v=$(((i % k) * 255 / k))
      for ((p = 0; p < 64; p++)); do printf "\\x$(printf %02x $(((v + (p * 7 + i) % 23) % 256)))"; done
    done; } >"$dir/$prefix-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; be32 "$n"
    for ((i = 0; i < n; i++)); do printf "\\x$(printf %02x $((i % k)))"; done; } >"$dir/$prefix-labels-idx1-ubyte"
}
