#!/usr/bin/env bash
# Start (or stop) a two-node SLURM cluster on this one machine, for multi-node tests (tests/test_multinode.py):
# slurmctld and two slurmd daemons, each in its own network and UTS namespace (its own hostname, address, spool
# and log folders), joined by a bridge. Every address is in 198.18.0.0/24 (RFC 2544's benchmarking range), which
# exists only on the links this script creates: nothing listens on or talks to any other address.
#
#   tmctl    198.18.0.1   netns tm-ctl    slurmctld
#   tmnode1  198.18.0.11  netns tm-node1  slurmd  } partition "debug", NodeAddr= these addresses
#   tmnode2  198.18.0.12  netns tm-node2  slurmd  }
#   (host)   198.18.0.254 bridge tmbr0    sbatch/squeue/scontrol with SLURM_CONF=/var/lib/tunemake-nodes/slurm.conf
#
# It stays out of the way of scripts/slurm_cluster.sh (a one-node cluster on /etc/slurm/slurm.conf): its own
# configuration file, state folder and munged socket, and its daemons run under their own names (tm-slurmctld,
# tm-slurmd, tm-munged) so neither script's stop ends the other's. The namespaces share this machine's disk, as
# nodes share a network filesystem. Jobs reach the other node by name through /etc/netns/<netns>/hosts.
#
# Usage: scripts/slurm_nodes.sh start|stop|status|conf (the SLURM_CONF to export)|exec NODE COMMAND... (run COMMAND
# as a process of NODE, e.g. a torchrun as a Kubernetes pod would)
# stop ends every daemon and every process left in the namespaces, then removes the namespaces, links and bridge.
set -euo pipefail

STATE=/var/lib/tunemake-nodes
CONF=$STATE/slurm.conf
BRIDGE=tmbr0
NODES=(tmnode1 tmnode2)
declare -A NETNS=([tmctl]=tm-ctl [tmnode1]=tm-node1 [tmnode2]=tm-node2)
declare -A ADDR=([tmctl]=198.18.0.1 [tmnode1]=198.18.0.11 [tmnode2]=198.18.0.12)
declare -A VETH=([tmctl]=tmv-ctl [tmnode1]=tmv-node1 [tmnode2]=tmv-node2)

if [ "$(id -u)" != 0 ]; then
  echo "scripts/slurm_nodes.sh: network namespaces and the SLURM daemons need root." >&2
  exit 1
fi

# A daemon's pid from its pid file, if that process is still the daemon.
pid_of() {
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 1
  pid=$(cat "$file")
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && echo "$pid"
}

stop() {
  local pids=() pid host
  for host in "${NODES[@]}"; do
    pid=$(pid_of "$STATE/$host/slurmd.pid" tm-slurmd) && pids+=("$pid")
  done
  pid=$(pid_of "$STATE/ctld/slurmctld.pid" tm-slurmctld) && pids+=("$pid")
  pid=$(pid_of "$STATE/munge/munged.pid" tm-munged) && pids+=("$pid")
  # Jobs' processes (slurmstepd, srun, torchrun, the steps) live in the namespaces too.
  for host in "${!NETNS[@]}"; do
    for pid in $(ip netns pids "${NETNS[$host]}" 2>/dev/null); do pids+=("$pid"); done
  done
  if [ "${#pids[@]}" -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "${pids[@]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  for host in "${!NETNS[@]}"; do
    for pid in $(ip netns pids "${NETNS[$host]}" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "${NETNS[$host]}" 2>/dev/null || true
    ip link del "${VETH[$host]}" 2>/dev/null || true
    rm -rf "/etc/netns/${NETNS[$host]}"
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

# A command as a process of a node, as the daemons are started: the node's network (nsenter), a hostname, an
# /etc/hosts and an /etc/slurm/slurm.conf of its own (unshare --uts --mount): jobs find this cluster without
# SLURM_CONF, which Snakemake's jobstep executor drops. Not ip netns exec: it remounts /sys, hiding the cgroups
# slurmd needs.
in_node() {
  local host=$1 ns=${NETNS[$1]}
  shift
  nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private \
    sh -c 'mount --bind "/etc/netns/$1/hosts" /etc/hosts && mkdir -p /etc/slurm && mount -t tmpfs tmpfs /etc/slurm &&
      ln -s "$2" /etc/slurm/slurm.conf && hostname "$0" && shift 2 && exec "$@"' "$host" "$ns" "$CONF" "$@"
}
up() {
  SLURM_CONF=$CONF sinfo -h -o '%D %t' 2>/dev/null | grep -qE '^2 (idle|mix|alloc)$'
}

case "${1:-start}" in
  stop) stop; exit 0 ;;
  status) SLURM_CONF=$CONF sinfo; exit 0 ;;
  conf) echo "$CONF"; exit 0 ;;
  exec)
    if [ -z "${NETNS[${2:-}]:-}" ] || [ ! -f "/etc/netns/${NETNS[$2]}/hosts" ]; then
      echo "usage: $0 exec tmnode1|tmnode2 COMMAND... (after $0 start)" >&2
      exit 2
    fi
    host=$2
    shift 2
    in_node "$host" "$@"
    exit ;;
  start) ;;
  *) echo "usage: $0 start|stop|status|conf|exec NODE COMMAND..." >&2; exit 2 ;;
esac

for tool in ip:iproute2 unshare:util-linux nsenter:util-linux slurmctld:slurm-wlm munged:munge; do
  if ! command -v "${tool%%:*}" >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 util-linux slurm-wlm munge \
      >/dev/null
    break
  fi
done

if [ -s "$CONF" ] && up; then
  exit 0  # already up
fi
stop
rm -rf "$STATE"
trap 'echo "scripts/slurm_nodes.sh: start failed; stopping what it started" >&2; stop' ERR
mkdir -p "$STATE/bin" "$STATE/ctld" "$STATE/munge"
# The daemons under names of their own: pkill -x slurmd (scripts/slurm_cluster.sh stop) leaves them alone.
ln -s "$(command -v slurmctld)" "$STATE/bin/tm-slurmctld"
ln -s "$(command -v slurmd)" "$STATE/bin/tm-slurmd"
ln -s "$(command -v munged)" "$STATE/bin/tm-munged"

# The network: a bridge on the host side, one veth pair per namespace.
ip link add "$BRIDGE" type bridge
ip addr add 198.18.0.254/24 dev "$BRIDGE"
ip link set "$BRIDGE" up
hosts="127.0.0.1 localhost"$'\n'
for host in tmctl "${NODES[@]}"; do
  hosts+="${ADDR[$host]} $host"$'\n'
done
for host in tmctl "${NODES[@]}"; do
  ns=${NETNS[$host]}
  ip netns add "$ns"
  ip link add "${VETH[$host]}" type veth peer name eth0 netns "$ns"
  ip link set "${VETH[$host]}" master "$BRIDGE" up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip addr add "${ADDR[$host]}/24" dev eth0
  ip netns exec "$ns" ip link set eth0 up
  # The daemons see this as /etc/hosts (in_node), and so do the jobs they start.
  mkdir -p "/etc/netns/$ns"
  printf '%s' "$hosts" > "/etc/netns/$ns/hosts"
done

# Its own munge key and socket (AuthInfo below): the one-node cluster's munged may come and go.
mungekey --create --keyfile "$STATE/munge/munge.key" >/dev/null 2>&1
chmod 400 "$STATE/munge/munge.key"
"$STATE/bin/tm-munged" --force --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
  --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munged.seed" --log-file="$STATE/munge/munged.log"

read -r cpus mem < <(slurmd -C | sed -nE 's/.*CPUs=([0-9]+).*RealMemory=([0-9]+).*/\1 \2/p')
mem=$((mem / 2))  # the two nodes share this machine's memory
# As scripts/slurm_cluster.sh: no cgroups, no accounting database (squeue reports states, MinJobAge keeps finished
# jobs visible). SlurmdTimeout: a node that stops answering is DOWN, and its jobs requeued, within about a minute.
cat > "$CONF" <<EOF
ClusterName=tunemake2
SlurmctldHost=tmctl(${ADDR[tmctl]})
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=$STATE/ctld
SlurmctldPidFile=$STATE/ctld/slurmctld.pid
SlurmctldLogFile=$STATE/ctld/slurmctld.log
SlurmdSpoolDir=$STATE/%n/spool
SlurmdPidFile=$STATE/%n/slurmd.pid
SlurmdLogFile=$STATE/%n/slurmd.log
SlurmUser=root
ReturnToService=2
SlurmdTimeout=30
MinJobAge=900
KillWait=10
JobRequeue=1
EOF
for host in "${NODES[@]}"; do
  mkdir -p "$STATE/$host/spool"
  echo "NodeName=$host NodeAddr=${ADDR[$host]} NodeHostname=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN" >> "$CONF"
done
echo "PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO" \
  >> "$CONF"

export SLURM_CONF=$CONF
in_node tmctl "$STATE/bin/tm-slurmctld" -f "$CONF"
for host in "${NODES[@]}"; do
  in_node "$host" "$STATE/bin/tm-slurmd" -f "$CONF" -N "$host"
done
for _ in $(seq 60); do
  if up; then
    trap - ERR
    sinfo
    exit 0
  fi
  sleep 1
done
echo "The two-node SLURM cluster did not come up; see $STATE/ctld/slurmctld.log and $STATE/tmnode*/slurmd.log" >&2
tail -n 20 "$STATE/ctld/slurmctld.log" "$STATE"/tmnode*/slurmd.log >&2 || true
stop
exit 1
