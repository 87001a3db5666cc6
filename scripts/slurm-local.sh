#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost, for tests and for trying workflow/profiles/slurm
# (docs/pipeline.md, "A local SLURM cluster"). Debian/Ubuntu, as root.
#
#   bash scripts/slurm-local.sh up      # install (apt-get, once), configure, start, wait for idle
#   export SLURM_CONF=/var/tmp/klrpn-slurm/slurm.conf   # printed by `up`: sbatch/squeue use it
#   bash scripts/slurm-local.sh status
#   bash scripts/slurm-local.sh down    # stop exactly the daemons `up` started
#
# Debian's SLURM packages (slurmctld slurmd slurm-client munge), no accounting (no slurmdbd):
# sacct/sacctmgr do not work on this cluster, squeue does (MinJobAge below). The node has the
# machine's CPUs and memory and a fake 2-GPU GRES (type "fake": device nodes made with mknod that
# are /dev/null underneath) so that `--gpus=N` / `--gpus=fake:N` jobs schedule and get
# CUDA_VISIBLE_DEVICES. Two partitions on the node: `cpu` (default) and `gpu`.
# Everything lives in $KLRPN_SLURM_STATE (default /var/tmp/klrpn-slurm); the daemons are started
# with -f, clients read $SLURM_CONF. One exception: Snakemake's job step (plugin
# snakemake-executor-plugin-slurm-jobstep) removes SLURM_CONF before its `srun`, which then reads
# /etc/slurm/slurm.conf; so `up` links that path to this config when nothing is there (`down`
# removes the link) and refuses to run where another cluster's /etc/slurm/slurm.conf exists.
set -euo pipefail

STATE=${KLRPN_SLURM_STATE:-/var/tmp/klrpn-slurm}
CONF=$STATE/slurm.conf
NODE=$(hostname -s)
PACKAGES=(slurmctld slurmd slurm-client munge)
# squeue must see a finished job until the plugin's status check notices it: the plugin honours
# `slurm-status-command: squeue` only when MinJobAge >= 3 x slurm-init-seconds-before-status-checks
# (40 s by default) and checks at most every 180 s. SLURM's own default is 300 s.
MIN_JOB_AGE=${KLRPN_SLURM_MIN_JOB_AGE:-300}
ETC_CONF=/etc/slurm/slurm.conf

die() { echo "slurm-local: $*" >&2; exit 1; }

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get (Debian/Ubuntu only)"
    echo "slurm-local: installing ${missing[*]} (apt-get)"
    # no service may start at install time: this script starts the daemons itself
    local policy=/usr/sbin/policy-rc.d created_policy=0 rc=0
    if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; created_policy=1; fi
    apt_install "${missing[@]}" || rc=$?
    [ $created_policy = 1 ] && rm -f $policy
    [ $rc = 0 ] || die "apt-get install ${missing[*]} failed, see $STATE/apt.log"
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "$@" > "$STATE/apt.log" 2>&1 && return 0
    # a fresh machine may have no package lists yet
    apt-get update -q >> "$STATE/apt.log" 2>&1 || return 1
    apt-get install -y -q --no-install-recommends "$@" >> "$STATE/apt.log" 2>&1
}

write_config() {
    local cpus mem_mb
    cpus=$(nproc)
    # leave 1 GiB (at most a quarter) of the machine's memory to the system
    mem_mb=$(awk '/^MemTotal:/ {m = int($2 / 1024); r = (m / 4 < 1024) ? int(m / 4) : 1024; print m - r}' /proc/meminfo)
    mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/dev"
    for i in 0 1; do
        [ -c "$STATE/dev/fakegpu$i" ] || mknod "$STATE/dev/fakegpu$i" c 1 3   # /dev/null's numbers
    done
    cat > "$CONF.tmp" <<EOF
# written by scripts/slurm-local.sh (klrpn): a one-node test cluster on localhost
ClusterName=klrpn-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it may start again (SLURM default 120)
AuthInfo=cred_expire=10
CryptoType=crypto/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=${KLRPN_SLURM_CTLD_PORT:-6817}
SlurmdPort=${KLRPN_SLURM_D_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default every job is given the whole node's memory, and they run one at a time
DefMemPerCPU=1000
MinJobAge=$MIN_JOB_AGE
# SIGTERM -> SIGKILL grace for cancelled / requeued jobs (klrpn train checkpoints in between)
KillWait=30
ReturnToService=2
# quick scheduling passes: a requeued job starts again seconds after it becomes eligible
SchedulerParameters=sched_interval=2,bf_interval=2
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:fake:2 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
    cat > "$STATE/gres.conf.tmp" <<EOF
NodeName=$NODE Name=gpu Type=fake File=$STATE/dev/fakegpu[0-1]
EOF
    # no cgroup plugin is configured (proctrack/linuxproc, task/none); slurmd still reads this file
    cat > "$STATE/cgroup.conf.tmp" <<EOF
CgroupAutomount=no
EOF
    mv "$CONF.tmp" "$CONF"; mv "$STATE/gres.conf.tmp" "$STATE/gres.conf"
    mv "$STATE/cgroup.conf.tmp" "$STATE/cgroup.conf"
    if [ ! -e $ETC_CONF ] && [ ! -L $ETC_CONF ]; then
        mkdir -p "$(dirname $ETC_CONF)"
        ln -s "$CONF" $ETC_CONF
        echo $ETC_CONF > "$STATE/etc-link"
    fi
}

check_etc_conf() {
    if [ -e $ETC_CONF ] || [ -L $ETC_CONF ]; then
        [ "$(readlink $ETC_CONF 2>/dev/null)" = "$CONF" ] && return 0
        die "$ETC_CONF exists (another cluster's configuration). Snakemake's SLURM job steps read it (the jobstep plugin drops SLURM_CONF before srun), so this test cluster cannot work here; use that cluster instead"
    fi
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null | unmunge >/dev/null 2>&1; then
        echo "slurm-local: using the running munged"
        return 0
    fi
    [ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || create-munge-key -f; }
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge; chown munge:munge /run/munge /var/log/munge /var/lib/munge
    local pidfile=/run/munge/klrpn-munged.pid
    rm -f $pidfile
    runuser -u munge -- /usr/sbin/munged --pid-file=$pidfile \
        || die "munged did not start (see /var/log/munge/munged.log)"
    # munged daemonises and writes its pid file; our copy marks that `up` started it
    for _ in $(seq 50); do [ -s $pidfile ] && break; sleep 0.1; done
    cp $pidfile "$STATE/munged.pid"
}

wait_idle() {
    local state=""
    for _ in $(seq 60); do
        state=$(SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %t 2>/dev/null | sort -u | tr '\n' ' ' || true)
        case "$state" in
            "idle "|"mix "|"alloc ") return 0 ;;
        esac
        sleep 0.5
    done
    die "node $NODE is '${state:-unreachable}' after 30 s (logs: $STATE/slurmctld.log, $STATE/slurmd.log)"
}

up() {
    [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts the SLURM daemons)"
    mkdir -p "$STATE"
    check_etc_conf
    install_packages
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
        echo "slurm-local: already up"
    else
        write_config
        start_munge
        if ! alive "$STATE/slurmctld.pid"; then
            # -i: ignore state saved by an earlier `up` (no jobs or node state carried over)
            slurmctld -f "$CONF" -i || die "slurmctld did not start, see $STATE/slurmctld.log"
        fi
        if ! alive "$STATE/slurmd.pid"; then
            slurmd -f "$CONF" || die "slurmd did not start, see $STATE/slurmd.log"
        fi
    fi
    wait_idle
    echo "slurm-local: node $NODE idle (partitions cpu, gpu; 2 fake GPUs); for sbatch/squeue/snakemake:"
    echo "export SLURM_CONF=$CONF"
}

down() {
    local name pidfile pid stopped=()
    # jobs still on the cluster would outlive slurmd (their slurmstepd): cancel them first
    if alive "$STATE/slurmctld.pid"; then
        SLURM_CONF=$CONF scancel --quiet --full --signal=KILL $(SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null) 2>/dev/null || true
    fi
    for name in slurmd slurmctld munged; do
        pidfile=$STATE/$name.pid
        alive "$pidfile" || { rm -f "$pidfile"; continue; }
        pid=$(cat "$pidfile")
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        rm -f "$pidfile"
        stopped+=("$name")
    done
    if [ -s "$STATE/etc-link" ] && [ "$(readlink "$(cat "$STATE/etc-link")")" = "$CONF" ]; then
        rm -f "$(cat "$STATE/etc-link")"
    fi
    rm -f "$STATE/etc-link"
    echo "slurm-local: stopped ${stopped[*]:-nothing (not up)}"
}

status() {
    for name in munged slurmctld slurmd; do
        if alive "$STATE/$name.pid"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"
        else echo "$name: not started by slurm-local"; fi
    done
    if [ -f "$CONF" ]; then SLURM_CONF=$CONF sinfo 2>&1 || true; fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status   (state and config in \$KLRPN_SLURM_STATE, default $STATE)" >&2; exit 2 ;;
esac
