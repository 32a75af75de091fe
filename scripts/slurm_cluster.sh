#!/usr/bin/env bash
# Start (or stop) a real one-node SLURM cluster on this machine: Debian's slurm-wlm + munge, run as root.
# The tests use it to send the pipeline through sbatch (tests/test_slurm.py); it is also a way to try the slurm
# profile before pointing it at a real cluster. Usage: scripts/slurm_cluster.sh start|stop|status
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "scripts/slurm_cluster.sh: starting slurmctld, slurmd and munged needs root." >&2
  exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

node=$(hostname -s)
state=/var/lib/tunemake-slurm

stop() {
  pkill -x slurmd || true
  pkill -x slurmctld || true
  pkill -x munged || true
}

case "${1:-start}" in
  stop) stop; exit 0 ;;
  status) sinfo; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
  exit 0  # already up
fi
stop
mkdir -p "$state/ctld" "$state/d" /var/log/slurm /etc/slurm /run/munge
read -r cpus mem < <(slurmd -C | sed -nE 's/.*CPUs=([0-9]+).*RealMemory=([0-9]+).*/\1 \2/p')

# No cgroups (containers rarely allow them), no accounting database: squeue reports job states, so finished jobs
# must stay visible for a while (MinJobAge). Preemption by requeue is what the requeue test exercises.
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=tunemake
SlurmctldHost=$node
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmUser=root
ReturnToService=2
MinJobAge=900
KillWait=30
JobRequeue=1
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

[ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
munged --force
slurmctld
slurmd
for _ in $(seq 30); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    sinfo
    exit 0
  fi
  sleep 1
done
echo "SLURM did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
