#!/usr/bin/env bash
# Runs the same etcdctl-v2 command sequence, watches included, on two sides and requires
# identical output and exit codes after normalizing what must differ (etcd indexes, the
# sequence numbers of in-order keys, TTL countdowns). Each side starts its own server.
#   test-cli-compat.sh LAUNCHER SERVER_A "CLI A" SERVER_B "CLI B"
# SERVER is a KV server binary (etcd or flotilla-kv, started by LAUNCHER with etcd's flags);
# CLI is a command prefix that finds the endpoints in $ENDPOINTS, e.g.
#   "etcdctl --endpoints \$ENDPOINTS"   or   "flotillactl --endpoints \$ENDPOINTS".
# Commands are written flotillactl-style ("kv set ..."); "kv " is dropped for etcdctl.
set -uo pipefail
launcher=$1 server_a=$2 cli_a=$3 server_b=$4 cli_b=$5
export ETCDCTL_API=2
both_etcdctl=0
[[ "$cli_a" == etcdctl* && "$cli_b" == etcdctl* ]] && both_etcdctl=1

read -r -d '' SCRIPT <<'CMDS'
kv set /a 1
kv set /a 2
kv get /a
kv mk /a 3
kv mk /b 4
kv mkdir /d
kv mkdir /d
kv set /d/x 5
kv set /d/y 6
kv ls --sort /d
kv ls --sort -r /
kv ls --sort -r -p /
kv update /a 9
kv update /nope 1
kv get /d
kv rm /a
kv rm /a
kv rmdir /d
kv rm /d
kv rm -r /d
kv get /nope
kv set --swap-with-value 4 /b 40
kv set --swap-with-value 4 /b 41
kv set --swap-with-index 1 /b 42
kv rm --with-value 4 /b
kv set --ttl 100 /t v
kv mkdir /e/f/g
kv rmdir /e/f/g
kv ls /e/f
kv set "/sp ace" "a value with spaces & symbols <>"
kv get "/sp ace"
kv -o extended get /b
kv mk --in-order /queue job1
kv mk --in-order /queue job2
kv ls --sort /queue
kv set /hidden/_secret s
kv ls /hidden
kv get /hidden/_secret
CMDS

# Turns a script line into a command for cli; sets GLOBAL and LINE.
shape() {
  local cli=$1 line=$2
  GLOBAL=""
  if [[ "$line" == "kv -o extended "* ]]; then GLOBAL="-o extended"; line="kv ${line#kv -o extended }"; fi
  [[ "$cli" == etcdctl* ]] && line=${line#kv }
  LINE=$line
}

# Starts a watch in the background, makes changes, collects what the watch printed.
watch_case() { # cli, watch args, then change commands
  local cli=$1 args=$2 out; shift 2
  out=$(mktemp)
  shape "$cli" "kv watch $args"
  eval "timeout 5 $cli $GLOBAL $LINE" >"$out" 2>&1 &
  local pid=$!
  sleep 0.7
  for c in "$@"; do shape "$cli" "$c"; eval "$cli $GLOBAL $LINE" >/dev/null 2>&1; done
  if [[ "$args" == *--forever* ]]; then sleep 0.7; kill "$pid" 2>/dev/null; fi
  wait "$pid" 2>/dev/null
  printf '$ watch %s\n%s\n' "$args" "$(cat "$out")"
  rm -f "$out"
}

exec_watch_case() { # etcdctl only: runs a command per change
  local cli=$1 out
  out=$(mktemp)
  eval "timeout 5 $cli exec-watch -r /ew -- sh -c 'echo \$ETCD_WATCH_ACTION \$ETCD_WATCH_KEY \$ETCD_WATCH_VALUE'" >"$out" 2>&1 &
  local pid=$!
  sleep 0.7
  eval "$cli set /ew/one 1" >/dev/null 2>&1
  eval "$cli set /ew/two 2" >/dev/null 2>&1
  eval "$cli rm /ew/one" >/dev/null 2>&1
  sleep 0.7
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  printf '$ exec-watch -r /ew\n%s\n' "$(cat "$out")"
  rm -f "$out"
}

run_side() { # server, cli
  local server=$1 cli=$2 line out code
  coproc KV { FLOTILLA_TEST_KV_BIN=$server exec "$launcher" 1; }
  local kv_in=${KV[1]} kv_pid=$KV_PID
  read -r tag ENDPOINTS <&"${KV[0]}" || { echo "launcher for $server failed"; return 1; }
  [[ "$tag" == ENDPOINTS ]] || { echo "launcher said: $tag $ENDPOINTS"; return 1; }
  export ENDPOINTS
  while IFS= read -r line; do
    [[ -z "$line" ]] && continue
    shape "$cli" "$line"
    out=$(eval "$cli $GLOBAL $LINE" 2>&1); code=$?
    printf '$ %s\n%s\n[exit %d]\n' "${line#kv }" "$out" "$code"
  done <<<"$SCRIPT"
  watch_case "$cli" "/w1" "kv set /w1 hello"
  watch_case "$cli" "-r /wd" "kv set /wd/a x" 
  watch_case "$cli" "--forever /w2" "kv set /w2 1" "kv set /w2 2" "kv rm /w2"
  watch_case "$cli" "--forever -r /wr" "kv set /wr/a 1" "kv mkdir /wr/d" "kv rm /wr/a"
  (( both_etcdctl )) && exec_watch_case "$cli"
  echo stop >&"$kv_in"
  wait "$kv_pid" 2>/dev/null
}

normalize() {
  # Indexes differ between servers (etcd keeps its membership in the v2 store, so its index starts
  # higher): the error suffix, extended output, and the index side of "compare failed" causes.
  sed -e 's/\[[0-9]*\]$/[I]/' -e 's/^\(Created-Index\|Modified-Index\|Index\): [0-9]*/\1: I/' \
      -e 's/(\[1 != [0-9]*\])/([1 != I])/' \
      -e 's#/queue/[0-9]\{20\}#/queue/SEQ#'
}

a=$(run_side "$server_a" "$cli_a" | normalize)
b=$(run_side "$server_b" "$cli_b" | normalize)
# Guard against a vacuous pass (both sides failing the same way).
ok=$(grep -c '^\[exit 0\]$' <<<"$a")
if (( ok < 20 )); then
  echo "only $ok commands succeeded on side A; the reference CLI or server is not working:"
  echo "$a" | head -30
  exit 1
fi
if [[ "$a" == "$b" ]]; then
  echo "identical output for $(grep -c '^\$ ' <<<"$a") commands and watches"
  exit 0
fi
diff <(echo "$a") <(echo "$b")
echo "FAILED: outputs differ (< $server_a: $cli_a, > $server_b: $cli_b)"
exit 1
