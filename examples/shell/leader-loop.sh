#!/bin/sh
# Does singleton work only while this replica's leader-sidecar says it leads, over HTTP.
#
# Each unit of work is preceded by a GET /leader: 200 means this replica leads; anything else — a
# 503, a refused connection, a timeout — means "not leader", and no work is done. While not
# leading the loop long-polls (/leader?wait=30s answers 200 the moment this replica leads), so it
# neither busy-polls nor starts late. Needs only POSIX sh and curl (7.76+ for --fail-with-body).
#
#   LEADER_URL   the sidecar's HTTP surface (default http://127.0.0.1:4040)

LEADER_URL=${LEADER_URL:-http://127.0.0.1:4040}
body=$(mktemp) || exit 1
query=  # empty while leading or at start (answers at once), ?wait=30s while not leading
last=
child=

# curl and sleep run in the background while the shell waits for them, because a shell runs a
# trap only between commands: this way SIGTERM/SIGINT end the loop at once, even mid-long-poll.
trap 'rm -f "$body"' EXIT
trap '[ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM INT
run() { "$@" & child=$!; wait "$child"; }

# Prints a transition (LEADING ... or STANDBY ...) once, not on every poll.
say() { [ "$1" = "$last" ] || echo "$1"; last=$1; }

# One field of the JSON status: `field role` prints LEADER. Enough for the sidecar's flat JSON;
# use jq in a real app if you have it.
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" "$body"; }

while :; do
  : >"$body"
  if run curl -sS --fail-with-body --max-time 40 -o "$body" "$LEADER_URL/leader$query"; then
    query=
    term=$(field term)
    say "LEADING term=$term"
    # One unit of the singleton work. Pass the term along with its writes so that a downstream
    # store can reject a stale leader.
    echo "WORK term=$term"
    run sleep 1
  elif [ -s "$body" ]; then
    # 503 (or 400) with a JSON body: not leader. Ask again at once, as a long-poll.
    query='?wait=30s'
    say "STANDBY role=$(field role) holder=$(field holder)"
  else
    # No answer (the sidecar is down or starting): not leader. Back off before asking again.
    query='?wait=30s'
    say "STANDBY sidecar unreachable"
    run sleep 1
  fi
done
