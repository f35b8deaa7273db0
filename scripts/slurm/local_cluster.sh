#!/usr/bin/env bash
# A one-node SLURM cluster on loopback, for CI and for trying hydra/launcher=slurm on a laptop or
# VM: slurmctld + slurmd + munge, with accounting (slurmdbd + MariaDB) so that a job killed
# before it writes its result fails cleanly instead of leaving submitit waiting.
#
#   scripts/slurm/local_cluster.sh start BASE_DIR   # installs the Debian packages if needed (root)
#   export SLURM_CONF=BASE_DIR/etc/slurm.conf       # printed by start; sbatch/squeue/submitit use it
#   scripts/slurm/local_cluster.sh status BASE_DIR
#   scripts/slurm/local_cluster.sh stop BASE_DIR    # stops only the daemons with pid files in BASE_DIR
#
# Needs root and Debian/Ubuntu (apt-get); no systemd: the daemons are started by hand.
# Everything (config, state, logs, database) lives in BASE_DIR; start again is a no-op for the
# daemons already running. Ports: ENCDEC_SLURM_PORT (default 6817) for slurmctld, +1 slurmd,
# +2 slurmdbd, +3 MariaDB. munged uses the system socket /run/munge (slurmdbd knows no other);
# one already answering there is reused.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status BASE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
ACTION=$1
BASE=$(realpath -m "$2")
PORT=${ENCDEC_SLURM_PORT:-6817}
CLUSTER=encdec
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server mariadb-client"

running() {  # running PIDFILE: the process named in PIDFILE is alive
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS COMMAND...: poll COMMAND every 0.25 s
  local tries=$(($1 * 4)); shift
  for _ in $(seq 1 "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  return 1
}

install_packages() {
  local missing=0
  for command in slurmctld slurmd slurmdbd sbatch munged mariadbd mariadb; do
    command -v "$command" >/dev/null || missing=1
  done
  [ $missing = 0 ] && return
  [ "$(id -u)" = 0 ] || { echo "error: installing SLURM needs root (apt-get)" >&2; exit 1; }
  command -v apt-get >/dev/null || { echo "error: no apt-get: install SLURM yourself" >&2; exit 1; }
  echo "installing $PACKAGES"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
}

write_slurm_conf() {
  local host cpus memory
  host=$(hostname -s)
  cpus=$(nproc)
  memory=$(( $(awk '/^MemTotal:/{print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  cat > "$BASE/etc/slurm.conf" <<CONF
# written by scripts/slurm/local_cluster.sh: one node, loopback only
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  cat > "$BASE/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$BASE/etc/slurmdbd.conf"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return  # a munged already answers on /run/munge
  fi
  if [ ! -f /etc/munge/munge.key ]; then
    mungekey --create 2>/dev/null || create-munge-key
    chown munge:munge /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
  runuser -u munge -- munged --pid-file="$BASE/munge/munged.pid" \
    --log-file="$BASE/munge/munged.log" --seed-file="$BASE/munge/munged.seed"
}

start_mariadb() {
  local socket="$BASE/mysql/mysqld.sock"
  if ! running "$BASE/mysql/mysqld.pid"; then
    [ -d "$BASE/mysql/data/mysql" ] || mariadb-install-db --user=mysql --datadir="$BASE/mysql/data" \
      --auth-root-authentication-method=normal > "$BASE/log/mariadb-install.log" 2>&1
    # a subshell, so the server outlives this script without being its child
    (runuser -u mysql -- mariadbd --no-defaults --datadir="$BASE/mysql/data" --socket="$socket" \
      --pid-file="$BASE/mysql/mysqld.pid" --bind-address=127.0.0.1 --port=$((PORT + 3)) \
      --log-error="$BASE/log/mariadb.err" --skip-log-bin </dev/null >/dev/null 2>&1 &)
  fi
  wait_for 30 mariadb -S "$socket" -u root -e 'select 1' \
    || { echo "error: MariaDB did not start; see $BASE/log/mariadb.err" >&2; exit 1; }
  mariadb -S "$socket" -u root -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY
    'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

start() {
  install_packages
  mkdir -p "$BASE"/{etc,state,spool,log,run,munge,mysql}
  chown munge:munge "$BASE/munge"
  chown mysql:mysql "$BASE/mysql"
  write_slurm_conf
  export SLURM_CONF="$BASE/etc/slurm.conf"
  start_munge
  start_mariadb
  running "$BASE/run/slurmdbd.pid" || slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 30 sacctmgr -n list cluster \
    || { echo "error: slurmdbd did not start; see $BASE/log/slurmdbd.log" >&2; exit 1; }
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true  # exists already on a restart
  running "$BASE/run/slurmctld.pid" || slurmctld
  running "$BASE/run/slurmd.pid" || slurmd
  node_idle() { sinfo -h -o %T | grep -qx idle; }
  wait_for 30 node_idle \
    || { echo "error: the node did not come up; see $BASE/log/slurm*.log" >&2; exit 1; }
  sinfo
  echo "export SLURM_CONF=$SLURM_CONF"
}

stop() {
  local pidfile pid
  for pidfile in run/slurmd.pid run/slurmctld.pid run/slurmdbd.pid mysql/mysqld.pid munge/munged.pid; do
    if running "$BASE/$pidfile"; then
      pid=$(cat "$BASE/$pidfile")
      kill "$pid"
      wait_for 20 bash -c "! kill -0 $pid 2>/dev/null" || true
      echo "stopped $(basename "$pidfile" .pid)"
    fi
  done
}

status() {
  local pidfile state
  for pidfile in munge/munged.pid mysql/mysqld.pid run/slurmdbd.pid run/slurmctld.pid run/slurmd.pid; do
    state=stopped; running "$BASE/$pidfile" && state=running
    echo "$(basename "$pidfile" .pid): $state"
  done
  echo "export SLURM_CONF=$BASE/etc/slurm.conf"
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
