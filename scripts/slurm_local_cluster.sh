#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the SLURM integration test (make test-slurm).
#
#   scripts/slurm_local_cluster.sh start    # install (Debian packages) if needed, start the daemons
#   scripts/slurm_local_cluster.sh stop     # stop every daemon `start` started, by pid
#   scripts/slurm_local_cluster.sh status
#
# Runs as root, without systemd: munged (as the munge user), mariadb, slurmdbd, slurmctld and
# slurmd run in the foreground of background shells, their pids kept in $STATE/pids. Accounting
# (slurmdbd + mariadb) is on because submitit reads job states from sacct: without it a job
# cancelled with scancel never looks finished and the launcher waits forever.
set -euo pipefail

STATE=${GAN_ABLATE_SLURM_STATE:-/var/tmp/gan-ablate-slurm}
CLUSTER=ganablate
PACKAGES="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"

die() { echo "slurm_local_cluster: $*" >&2; exit 1; }

install_packages() {
    local missing=""
    for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        echo "installing$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq $missing >/dev/null
    fi
}

write_configs() {
    local node cpus memory
    node=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    mkdir -p /etc/slurm "$STATE"/{ctld,spool,log}
    cat >/etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=5
MinJobAge=300
NodeName=localhost CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
}

# start NAME COMMAND...: run COMMAND in the background, remember its pid under NAME
start_daemon() {
    local name=$1; shift
    setsid "$@" >"$STATE/log/$name.out" 2>&1 &
    echo "$!" >"$STATE/pids/$name"
}

wait_for() {  # wait_for SECONDS DAEMON COMMAND...: until COMMAND succeeds, while DAEMON lives
    local seconds=$1 what=$2 why; shift 2
    why="did not come up within ${seconds}s"
    for _ in $(seq "$seconds"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        kill -0 "$(cat "$STATE/pids/$what")" 2>/dev/null || { why="exited"; break; }
        sleep 1
    done
    echo "--- logs ---" >&2; tail -n 20 "$STATE"/log/* >&2 || true
    die "$what $why; stop the others with: $0 stop"
}

start() {
    [ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"
    if [ -d "$STATE/pids" ] && [ -n "$(ls -A "$STATE/pids")" ]; then die "already started (pids in $STATE/pids): stop first"; fi
    install_packages
    write_configs
    mkdir -p "$STATE/pids" /run/munge /run/mysqld
    chown munge:munge /run/munge
    chown mysql:mysql /run/mysqld

    start_daemon munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
    wait_for 20 munged munge -n

    start_daemon mariadb setpriv --reuid=mysql --regid=mysql --init-groups /usr/sbin/mariadbd \
        --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid --skip-networking=0 \
        --bind-address=127.0.0.1
    wait_for 60 mariadb mariadb -e "select 1"
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

    start_daemon slurmdbd /usr/sbin/slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true

    start_daemon slurmctld /usr/sbin/slurmctld -D -i
    wait_for 60 slurmctld scontrol ping
    start_daemon slurmd /usr/sbin/slurmd -D -N localhost
    wait_for 60 slurmd sh -c "sinfo -h -N -o %T | grep -Eq '^(idle|mixed|allocated)'"
    sinfo
    echo "slurm_local_cluster: up (logs in $STATE/log)"
}

stop() {
    [ -d "$STATE/pids" ] || { echo "slurm_local_cluster: nothing started"; return 0; }
    scancel --user=root >/dev/null 2>&1 || true
    for name in slurmd slurmctld slurmdbd mariadb munged; do
        local pidfile="$STATE/pids/$name"
        [ -f "$pidfile" ] || continue
        local pid; pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
        rm -f "$pidfile"
        echo "stopped $name ($pid)"
    done
}

status() {
    for f in "$STATE"/pids/*; do
        [ -f "$f" ] || continue
        if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f") running ($(cat "$f"))";
        else echo "$(basename "$f") NOT running"; fi
    done
    sinfo 2>/dev/null || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
