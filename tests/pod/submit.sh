#!/usr/bin/env bash
# A stand-in for a Kubernetes pod, for the no-shared-filesystem test (snakemake-executor-plugin-cluster-generic's
# submit command): the job script runs in a new empty directory with its own HOME and caches, so all it has is what
# Snakemake sends a pod: the source archive and the declared inputs, both fetched from S3. Prints the pod id.
set -euo pipefail
pod=$(mktemp -d "${POD_ROOT:?}/pod.XXXXXX")
mkdir -p "$pod/workdir" "$pod/home"
cp "$1" "$pod/job.sh"
(
  cd "$pod/workdir"
  HOME="$pod/home" TUNEMAKE_CACHE="$pod/home/cache" XDG_CACHE_HOME="$pod/home/.cache" bash "$pod/job.sh" \
    > "$pod/log" 2>&1
  echo $? > "$pod/exit"
) > /dev/null 2>&1 &
basename "$pod"
