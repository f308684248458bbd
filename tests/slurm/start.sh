#!/usr/bin/env bash
# Start a private one-node SLURM cluster on this machine (docs/cluster.md, "Tested against a
# real SLURM"):
# its own munged, slurmctld and slurmd, all files under STATE_DIR, free TCP ports, and the
# machine's real CPUs and memory. Outside STATE_DIR it writes only /etc/slurm/slurm.conf, a symlink
# to STATE_DIR/slurm.conf: snakemake-executor-plugin-slurm runs each job through a nested `srun`
# with every SLURM_* variable (SLURM_CONF too) removed, so clients inside jobs must find the
# config at SLURM's default path. A slurm.conf there that this script did not write (a real
# cluster's) is never replaced: the script exits 5. Stop the cluster with tests/slurm/stop.sh.
#
# Usage: tests/slurm/start.sh STATE_DIR [PARTITION [GPUS]]
#   PARTITION  name of the single (default) partition          [default: rkdtest]
#   GPUS       fake GPUs on the node (gres gpu:a100:N; 0 for none) [default: 2]
#
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge (.ci/slurm-setup installs
# them). Keep STATE_DIR short: munge's socket path must fit in 108 bytes.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 STATE_DIR [PARTITION [GPUS]]" >&2
    exit 2
fi
state=$(realpath -m "$1")
partition=${2:-rkdtest}
gpus=${3:-2}
sbin=/usr/sbin
export PATH="$sbin:/usr/bin:$PATH"

for cmd in munged slurmctld slurmd; do
    [ -x "$sbin/$cmd" ] || { echo "start.sh: $sbin/$cmd not installed" >&2; exit 3; }
done
for cmd in sinfo scontrol srun; do
    command -v "$cmd" >/dev/null || { echo "start.sh: $cmd not installed" >&2; exit 3; }
done
if [ "$(id -u)" -ne 0 ]; then
    echo "start.sh: must run as root (slurmd starts jobs as their user)" >&2
    exit 3
fi

etc_conf=/etc/slurm/slurm.conf
marker="# Written by tests/slurm/start.sh"
if [ -e "$etc_conf" ] || [ -L "$etc_conf" ]; then
    owner_state=""
    if [ -L "$etc_conf" ] && head -n 1 "$etc_conf" 2>/dev/null | grep -qF "$marker"; then
        owner_state=$(dirname "$(readlink "$etc_conf")")
    elif [ -L "$etc_conf" ] && [ ! -e "$etc_conf" ]; then
        owner_state=$(dirname "$(readlink "$etc_conf")") # dangling: a removed test cluster
    fi
    if [ -z "$owner_state" ]; then
        echo "start.sh: $etc_conf exists and was not written by this script (a real cluster?)" >&2
        exit 5
    fi
    pid=$(cat "$owner_state/pids/slurmctld.pid" 2>/dev/null || true)
    if [ "$owner_state" != "$state" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "start.sh: another test cluster ($owner_state) is running" >&2
        exit 5
    fi
fi

mkdir -p "$state"/{munge,spool/ctld,spool/d,log,pids,gpu}
chmod 0700 "$state/munge"
conf="$state/slurm.conf"
host=$(hostname -s)

# A TCP port nobody listens on, above the usual 6817/6818 of a real cluster.
free_port() {
    local p=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || grep -qw "$p" "$state/ports" 2>/dev/null; do
        p=$((p + 1))
    done
    echo "$p" >>"$state/ports"
    echo "$p"
}
: >"$state/ports"
ctld_port=$(free_port 16817)
slurmd_port=$(free_port $((ctld_port + 1)))

# Run a daemon in the foreground, detached from our stdio, and record its pid.
launch() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$state/log/$name.out" 2>&1 &
    echo $! >"$state/pids/$name.pid"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "start.sh: timed out waiting for $what; logs in $state/log" >&2
            tail -n 20 "$state"/log/* >&2 || true
            exit 4
        fi
        sleep 0.2
    done
}

# munge: a private daemon with its own key and socket (the machine's munged, if any, is left alone).
key="$state/munge/munge.key"
[ -s "$key" ] || head -c 1024 /dev/urandom >"$key"
chmod 0400 "$key"
socket="$state/munge/socket"
launch munged "$sbin/munged" --foreground --force --socket="$socket" --key-file="$key" \
    --pid-file="$state/munge/munged.pid" --seed-file="$state/munge/seed" \
    --log-file="$state/log/munged.log"
wait_for 20 munged bash -c "munge -S '$socket' -n | unmunge -S '$socket'"

# Memory: MemTotal minus a 2 GB margin for the OS and the daemons.
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
real_mb=$((mem_mb > 3072 ? mem_mb - 2048 : mem_mb / 2))
cpus=$(nproc)

gres_line=""
if [ "$gpus" -gt 0 ]; then
    # Fake GPUs: character devices equal to /dev/null; jobs then get CUDA_VISIBLE_DEVICES. They
    # have a type (a100), so that typed requests (--gres=gpu:a100:2, the README's example) and
    # untyped ones (--gpus=1) both work.
    for i in $(seq 0 $((gpus - 1))); do
        [ -c "$state/gpu/fakegpu$i" ] || mknod "$state/gpu/fakegpu$i" c 1 3
    done
    echo "NodeName=$host Name=gpu Type=a100 File=$state/gpu/fakegpu[0-$((gpus - 1))]" \
        >"$state/gres.conf"
    gres_line="Gres=gpu:a100:$gpus"
else
    : >"$state/gres.conf"
fi

cat >"$conf" <<CONF
$marker: a private one-node cluster for tests (state in $state).
ClusterName=robustkd-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
$( [ "$gpus" -gt 0 ] && echo "GresTypes=gpu" )
StateSaveLocation=$state/spool/ctld
SlurmdSpoolDir=$state/spool/d
SlurmctldPidFile=$state/pids/slurmctld.daemon.pid
SlurmdPidFile=$state/pids/slurmd.daemon.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
MailProg=/bin/true
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb $gres_line State=UNKNOWN
PartitionName=$partition Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

mkdir -p /etc/slurm
ln -sfn "$conf" "$etc_conf"
cat >"$state/env" <<ENV
export SLURM_CONF=$conf
ENV
export SLURM_CONF="$conf"

launch slurmctld "$sbin/slurmctld" -D -i -f "$conf"
wait_for 30 "slurmctld (scontrol ping)" bash -c "scontrol ping | grep -q UP"
launch slurmd "$sbin/slurmd" -D -f "$conf" -N "$host"
wait_for 60 "node $host idle in sinfo" bash -c \
    "[ \"\$(sinfo -h -N -n '$host' -o %t)\" = idle ]"
timeout 30 srun -N1 -n1 true
echo "SLURM up: node $host ($cpus CPUs, ${real_mb} MB, $gpus fake GPUs), partition $partition," \
    "SLURM_CONF=$conf"
