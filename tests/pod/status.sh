#!/usr/bin/env bash
# Status of a pod started by submit.sh, as cluster-generic's status command reports it.
pod="${POD_ROOT:?}/$1"
if [ ! -f "$pod/exit" ]; then echo running
elif [ "$(cat "$pod/exit")" = 0 ]; then echo success
else cat "$pod/log" >&2; echo failed
fi
