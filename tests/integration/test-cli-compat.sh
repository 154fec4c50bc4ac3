#!/usr/bin/env bash
# Runs the same etcdctl-v2 command sequence through two command lines against a real KV server
# and requires identical output and exit codes, after normalizing what must differ (the key
# prefix each side writes under, etcd indexes, TTL countdowns).
#   test-cli-compat.sh LAUNCHER "CLI A" "CLI B"
# Each CLI string is a command prefix that takes an endpoint list via $ENDPOINTS, e.g.
#   "etcdctl --endpoints \$ENDPOINTS"   or   "flotillactl --endpoints \$ENDPOINTS".
set -uo pipefail
launcher=$1 cli_a=$2 cli_b=$3
export ETCDCTL_API=2

coproc KV { "$launcher" 1; }
read -r tag ENDPOINTS <&"${KV[0]}" || { echo "launcher failed"; exit 1; }
[[ "$tag" == ENDPOINTS ]] || { echo "launcher said: $tag $ENDPOINTS"; exit 1; }
export ENDPOINTS
trap 'echo stop >&"${KV[1]}" 2>/dev/null; wait "$KV_PID" 2>/dev/null' EXIT

# One command per line; P is replaced by each side's own key prefix.
read -r -d '' SCRIPT <<'CMDS'
kv set P/a 1
kv set P/a 2
kv get P/a
kv mk P/a 3
kv mk P/b 4
kv mkdir P/d
kv mkdir P/d
kv set P/d/x 5
kv set P/d/y 6
kv ls --sort P/d
kv ls --sort -r P
kv ls --sort -r -p P
kv update P/a 9
kv update P/nope 1
kv get P/d
kv rm P/a
kv rm P/a
kv rmdir P/d
kv rm P/d
kv rm -r P/d
kv get P/nope
kv set --swap-with-value 4 P/b 40
kv set --swap-with-value 4 P/b 41
kv rm --with-value 4 P/b
kv set --ttl 100 P/t v
kv mkdir P/e/f/g
kv rmdir P/e/f/g
kv ls P/e/f
kv set "P/sp ace" "a value with spaces & symbols <>"
kv get "P/sp ace"
kv -o extended get P/b
CMDS

run_side() { # $1 = cli prefix, $2 = key prefix
  local cli=$1 prefix=$2 line out code
  while IFS= read -r line; do
    [[ -z "$line" ]] && continue
    line=${line//P\//$prefix/}
    line=${line//\"P\//\"$prefix/}
    # -o is a global option of both CLIs: move it in front of "kv".
    local global=""
    if [[ "$line" == "kv -o extended "* ]]; then global="-o extended"; line="kv ${line#kv -o extended }"; fi
    if [[ "$cli" == etcdctl* ]]; then line=${line#kv }; fi
    out=$(eval "$cli $global $line" 2>&1); code=$?
    printf '$ %s\n%s\n[exit %d]\n' "${line#kv }" "$out" "$code"
  done <<<"$SCRIPT" | sed -e "s#$prefix#P#g" -e 's/\[[0-9]*\]$/[I]/' -e 's/^\(Created-Index\|Modified-Index\|Index\): [0-9]*/\1: I/' \
                        -e 's#/P/[0-9]\{20\}#/P/SEQ#'
}

a=$(run_side "$cli_a" /cmpA$$)
b=$(run_side "$cli_b" /cmpB$$)
# Guard against a vacuous pass (both sides failing the same way).
ok=$(grep -c '^\[exit 0\]$' <<<"$a")
if (( ok < 15 )); then
  echo "only $ok commands succeeded on side A; the reference CLI or server is not working:"
  echo "$a" | head -20
  exit 1
fi
if [[ "$a" == "$b" ]]; then
  echo "identical output for $(grep -c '^\$ ' <<<"$a") commands"
  exit 0
fi
diff <(echo "$a") <(echo "$b")
echo "FAILED: outputs differ (< $cli_a, > $cli_b)"
exit 1
