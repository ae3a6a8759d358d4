#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost (munge + slurmctld + slurmd), for the HPC
# tests and for trying the recipes in workflows/ on one machine. Needs root (it installs
# Debian's slurm-wlm and munge with apt-get when they are missing, and runs the daemons
# as root).
#
#   bash tests/hpc/start_local_slurm.sh [STATE_DIR]     (default: /tmp/qsmflow-slurm)
#   bash tests/hpc/start_local_slurm.sh --stop [STATE_DIR]
#
# On success it prints the SLURM_CONF line to export and exits 0; the configuration and
# the daemons' logs are in STATE_DIR. Exit 1 when the cluster cannot be started here (the
# reason is printed). Memory is a consumable resource (CR_Core_Memory) so that jobs' --mem
# requests are scheduled as on a real cluster; nothing enforces them (no cgroups).
set -euo pipefail

stop=0
if [ "${1:-}" = "--stop" ]; then
  stop=1
  shift
fi
state=${1:-/tmp/qsmflow-slurm}
conf=$state/slurm.conf

stop_daemons() {
  local pidfile pid
  for pidfile in "$state/slurmd.pid" "$state/slurmctld.pid" "$state/munged.pid"; do
    if [ -s "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
    fi
  done
}

if [ "$stop" -eq 1 ]; then
  stop_daemons
  echo "local SLURM in $state stopped"
  exit 0
fi

fail() {
  echo "start_local_slurm: $*" >&2
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  fail "needs root (to install slurm-wlm and run slurmd); not starting"
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  echo "start_local_slurm: installing Debian's slurmctld, slurmd, slurm-client and munge"
  command -v apt-get >/dev/null || fail "no apt-get to install SLURM with"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || fail "apt-get update failed"
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
    >"${TMPDIR:-/tmp}/qsmflow-slurm-apt.log" 2>&1 \
    || fail "apt-get install failed (see ${TMPDIR:-/tmp}/qsmflow-slurm-apt.log)"
fi

stop_daemons
sleep 1
rm -rf "$state"
mkdir -p "$state/state" "$state/spool" "$state/munge"

# munge: the key the Debian package generated, or a new one.
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then
    mungekey --create --force >/dev/null
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
  fi
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 400 /etc/munge/munge.key
chown munge:munge "$state/munge"
install -d -o munge -g munge /run/munge /var/lib/munge /var/log/munge
socket=/run/munge/munge.socket.2
if ! munge -n -S "$socket" 2>/dev/null | unmunge -S "$socket" >/dev/null 2>&1; then
  runuser -u munge -- munged --force --socket="$socket" \
    --pid-file="$state/munge/munged.pid" --log-file="$state/munge/munged.log" \
    || fail "munged did not start (see $state/munge/munged.log)"
  cp "$state/munge/munged.pid" "$state/munged.pid" 2>/dev/null || true
fi
munge -n -S "$socket" | unmunge -S "$socket" >/dev/null || fail "munge does not work"

# This machine's CPUs and memory (slurmd drains a node that has less than it claims).
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
if [ "$mem_mb" -gt 20000 ]; then mem_mb=20000; fi

cat >"$conf" <<EOF
# Single-node SLURM for qsmflow's HPC tests (tests/hpc/start_local_slurm.sh).
ClusterName=qsmflowtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
NodeName=localhost NodeHostname=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf

slurmctld -f "$conf" || fail "slurmctld did not start (see $state/slurmctld.log)"
slurmd -f "$conf" -N localhost || fail "slurmd did not start (see $state/slurmd.log)"

# Wait for the node to be usable.
for _ in $(seq 1 30); do
  node_state=$(sinfo -h -n localhost -o %t 2>/dev/null || true)
  case "$node_state" in
    idle | mix | alloc) break ;;
  esac
  sleep 1
done
case "${node_state:-}" in
  idle | mix | alloc) ;;
  *)
    tail -n 5 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
    fail "the node did not become idle (state '${node_state:-none}')"
    ;;
esac

# A job must really run.
out=$(srun -N1 -n1 -t 1 echo slurm-ok 2>&1) || fail "srun failed: $out"
[ "$out" = "slurm-ok" ] || fail "srun printed '$out'"
echo "local SLURM is up: $(sinfo -h -o '%P %D %c CPUs %m MB %t')"
echo "export SLURM_CONF=$conf"
