#!/bin/sh
# Stands for a program you cannot change: it works one unit a second, forever, and knows nothing
# about leader election. Run under the sidecar's exec mode, it runs only on the replica that leads:
#
#   leader-sidecar --lease-name demo -- examples/exec/worker.sh
#
# The only trace of the sidecar is the environment it is started with: LEADER_SIDECAR_TERM (with
# LEADER_SIDECAR_LEASE_UID) is the fencing token to pass along with its writes, printed here.
# It needs no signal handling of its own: SIGTERM to its process group ends it, and the sleep it
# is waiting for, at once.

while :; do
  echo "WORK term=${LEADER_SIDECAR_TERM:-none} pid=$$"
  sleep 1
done
