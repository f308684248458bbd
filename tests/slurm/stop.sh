#!/usr/bin/env bash
# Stop the cluster tests/slurm/start.sh started in STATE_DIR: cancel its jobs, then end slurmd,
# slurmctld and munged by the pids start.sh recorded (and nothing else), and remove the
# /etc/slurm/slurm.conf symlink start.sh made. Safe to run twice.
#
# Usage: tests/slurm/stop.sh STATE_DIR
set -uo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 STATE_DIR" >&2
    exit 2
fi
state=$(realpath -m "$1")
export PATH="/usr/sbin:/usr/bin:$PATH"
export SLURM_CONF="$state/slurm.conf"

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

pid_of() { cat "$state/pids/$1.pid" 2>/dev/null; }

# Jobs first, while slurmctld and slurmd still run, so no slurmstepd outlives the cluster.
if alive "$(pid_of slurmctld)" && [ -f "$SLURM_CONF" ]; then
    timeout 10 scancel --full --quiet --partition="$(awk -F'[= ]' '/^PartitionName=/ {print $2}' \
        "$SLURM_CONF")" 2>/dev/null || true
    for _ in $(seq 50); do
        [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.2
    done
fi

for name in slurmd slurmctld munged; do
    pid=$(pid_of "$name")
    alive "$pid" || { rm -f "$state/pids/$name.pid"; continue; }
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do
        alive "$pid" || break
        sleep 0.1
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    rm -f "$state/pids/$name.pid"
done
if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$SLURM_CONF" ]; then
    rm -f /etc/slurm/slurm.conf
fi
echo "SLURM in $state stopped"
