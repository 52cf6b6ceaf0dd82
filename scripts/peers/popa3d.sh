#!/usr/bin/env bash
# popa3d (Openwall's tiny POP3 server) from Debian's packages as a private peer on loopback.
#
#   popa3d.sh start  DIR            extract if needed, configure DIR, start, wait for +OK
#   popa3d.sh stop   DIR            SIGTERM by PID, SIGKILL after PEER_STOP_TIMEOUT s
#   popa3d.sh seed   DIR USER FILE...   append messages to USER's mbox spool (From_ line, >From quoting)
#   popa3d.sh status DIR            print state; exit 0 running, 3 stopped
#   popa3d.sh env    DIR            print DIR/peer.env (shell-sourceable)
#
# popa3d has no options, no configuration file and no TLS: everything is
# compiled in (spool /var/mail/USER, chroot /var/lib/popa3d, user popa3d,
# PAM service "popa3d", syslog).  It conflicts with every other pop3-server,
# so its .deb is fetched with `apt-get download` and unpacked into DIR/root,
# and it runs inetd-style (one process per connection) behind socat on
# 127.0.0.1, inside a private mount namespace (unshare -m) that shows it
# DIR's accounts, spool and syslog socket:
#   /etc       overlay with DIR/ns/etc on top (passwd, group, shadow, pam.d/popa3d)
#   /var/lib   overlay with DIR/ns/varlib on top (the empty popa3d chroot)
#   /var/mail  bind mount of DIR/mail
#   /dev       overlay with DIR/ns/dev on top (a /dev/log read into DIR/syslog.log)
# The system's /etc, /var/mail and /var/lib are never written.
#
# Environment (read by start): PEER_POP3_PORT (23110), PEER_PASSWORD (s3cret),
# PEER_USERS ("alice bob carol"), PEER_MAIL_USER (pop3peer), PEER_PYTHON
# (the project's .venv python), PEER_START_TIMEOUT (20), PEER_STOP_TIMEOUT (10).
#
# Exit codes: 0 ok, 1 error, 2 usage, 3 not running (status), 4 the peer
# cannot run here (not root, no apt-get/socat, download failed, no mount namespaces).
set -euo pipefail

PROG=$(basename "$0")
SELF=$(cd "$(dirname "$0")" && pwd -P)/$PROG
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
HOST=127.0.0.1
DEB_CACHE=/var/cache/pop3suite-peers
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

say() { echo "$PROG: $*" >&2; }
die() { say "error: $*"; exit 1; }
unavailable() { say "popa3d peer unavailable here: $*"; exit 4; }
usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
python_bin() { echo "${PEER_PYTHON:-$ROOT/.venv/bin/python}"; }

# ----------------------------------------------------------------- paths

resolve_dir() {  # resolve_dir DIR CREATE: absolute, symlink-free path of DIR
  local dir=$1 create=$2
  [ -n "$dir" ] || usage
  if [ "$create" = 1 ]; then
    mkdir -p -- "$dir" || die "cannot create $dir"
  elif [ ! -d "$dir" ]; then
    die "$dir is not a peer directory (run '$PROG start $dir' first)"
  fi
  (cd -- "$dir" && pwd -P)
}

# After login popa3d runs as the mail user and opens /var/mail/USER, i.e.
# DIR/mail/USER: every ancestor of DIR must be traversable by others.
make_traversable() {
  local path=$1
  chmod 755 "$path"
  path=$(dirname "$path")
  while [ "$path" != / ]; do
    if [ "$(( 0$(stat -c %a "$path") & 1 ))" = 0 ]; then
      chmod o+x "$path" || die "$path is not traversable by others and chmod o+x failed; use a directory such as /var/tmp/pop3suite-peers/NAME"
      say "made $path traversable (o+x): popa3d's unprivileged sessions must reach DIR"
    fi
    path=$(dirname "$path")
  done
}

# ----------------------------------------------------------------- process state

alive() {  # alive PID: the process exists and is not a zombie
  local stat
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ "$stat" != [ZX]* ]]
}

pid_of() {  # print the launcher PID if our popa3d peer runs for DIR
  local dir=$1 pid=""
  [ -s "$dir/popa3d.pid" ] && pid=$(head -n1 "$dir/popa3d.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$PROG __run $dir " || return 1
  echo "$pid"
}

session_pids() {  # live PIDs whose session id is $1 (the launcher is a session leader)
  local sid=$1 stat rest p
  local -a fields
  for stat in /proc/[0-9]*/stat; do
    { read -r rest < "$stat"; } 2>/dev/null || continue
    read -r -a fields <<< "${rest##*) }"
    [[ "${fields[0]:-}" == [ZX] ]] && continue
    if [ "${fields[3]:-}" = "$sid" ]; then p=${stat#/proc/}; echo "${p%/stat}"; fi
  done
  return 0
}

# ----------------------------------------------------------------- install

ensure_socat() {
  command -v socat >/dev/null && return 0
  command -v apt-get >/dev/null || unavailable "socat is missing and apt-get is not available"
  say "installing socat"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=900 socat >/dev/null 2>&1 || unavailable "apt-get install socat failed"
}

# popa3d's only dependencies (libc6, libpam0g) are part of every Debian
# system; its Pre-Depends (adduser, update-inetd, debconf) serve only its
# maintainer scripts, which we do not run.
ensure_extracted() {
  local dir=$1 version deb
  [ -x "$dir/root/usr/sbin/popa3d" ] && [ -s "$dir/root/VERSION" ] && return 0
  version=$(apt-cache policy popa3d 2>/dev/null | awk '/Candidate:/ { print $2 }')
  [ -n "$version" ] && [ "$version" != "(none)" ] || unavailable "no popa3d package known to apt (apt-get update?)"
  mkdir -p "$DEB_CACHE"
  deb=$(ls "$DEB_CACHE"/popa3d_"${version/*:/}"_*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    command -v apt-get >/dev/null || unavailable "apt-get is not available to download popa3d"
    say "downloading popa3d $version (conflicts with pop3-server: extracted, not installed)"
    chown _apt "$DEB_CACHE" 2>/dev/null || true
    (cd "$DEB_CACHE" && apt-get download -q -o DPkg::Lock::Timeout=900 "popa3d=$version" >/dev/null 2>"$DEB_CACHE/download.err") \
      || { cat "$DEB_CACHE/download.err" >&2; unavailable "apt-get download popa3d=$version failed"; }
    deb=$(ls "$DEB_CACHE"/popa3d_"${version/*:/}"_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$deb" ] || unavailable "apt-get download popa3d=$version left no .deb in $DEB_CACHE"
  fi
  rm -rf "$dir/root"
  dpkg-deb -x "$deb" "$dir/root" || die "dpkg-deb -x $deb failed"
  dpkg-deb -f "$deb" Version > "$dir/root/VERSION"
}

ensure_mail_user() {
  local user=$1
  if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user" || die "cannot create system user $user"
    say "created system user $user (mail files are owned by it)"
  fi
}

# ----------------------------------------------------------------- config

# DIR/ns/etc lies over /etc in the namespace: minimal passwd, group and
# shadow (root, popa3d, the accounts; no copy of the system's secrets) and
# the package's own /etc/pam.d/popa3d (common-auth/common-account, i.e.
# pam_unix against this shadow).
write_accounts() {
  local dir=$1 uid=$2 gid=$3 password=$4 hash user etc=$1/ns/etc
  case "$password" in
    *:*|*$'\n'*) die "PEER_PASSWORD may not contain ':' or a newline (shadow fields)";;
  esac
  # SHA512-crypt: Debian's default yescrypt costs ~20 ms a login (real-peers.md).
  hash=$(printf '%s' "$password" | openssl passwd -6 -stdin) || die "openssl passwd -6 failed"
  mkdir -p "$etc/pam.d" "$dir/ns/etc.work" "$dir/ns/varlib/popa3d" "$dir/ns/varlib.work" \
    "$dir/ns/dev" "$dir/ns/dev.work"
  local mail_gid popa3d_id=${PEER_POPA3D_UID:-}
  mail_gid=$(getent group mail | cut -d: -f3); mail_gid=${mail_gid:-8}
  # popa3d's pre-login child runs as 'popa3d': a private system id unused on the host.
  if [ -z "$popa3d_id" ]; then
    popa3d_id=$(awk -F: 'FNR == NR { used[$3] = 1; next } { used[$3] = 1 }
      END { for (i = 999; i > 100; i--) if (!(i in used)) { print i; exit } }' /etc/passwd /etc/group)
  fi
  {
    echo "root:x:0:0:root:/root:/bin/sh"
    echo "popa3d:x:$popa3d_id:$popa3d_id:popa3d:/var/lib/popa3d:/usr/sbin/nologin"
    for user in $PEER_USERS; do
      [[ "$user" =~ ^[a-z_][a-z0-9._-]*$ ]] || die "bad user name '$user' in PEER_USERS"
      echo "$user:x:$uid:$gid:pop3suite peer account:/nonexistent:/usr/sbin/nologin"
    done
  } > "$etc/passwd"
  {
    echo "root:x:0:"
    echo "mail:x:$mail_gid:"
    echo "popa3d:x:$popa3d_id:"
    echo "$PEER_MAIL_USER:x:$gid:"
  } > "$etc/group"
  {
    echo "root:*:19000:0:99999:7:::"
    echo "popa3d:*:19000:0:99999:7:::"
    for user in $PEER_USERS; do echo "$user:$hash:19000:0:99999:7:::"; done
  } > "$etc/shadow"
  chmod 644 "$etc/passwd" "$etc/group"
  chown root:shadow "$etc/shadow" 2>/dev/null || true
  chmod 640 "$etc/shadow"
  cp "$dir/root/etc/pam.d/popa3d" "$etc/pam.d/popa3d"
  chmod 644 "$etc/pam.d/popa3d"
  chmod 755 "$dir/ns/varlib/popa3d"    # the chroot: root-owned, empty, as the package makes it
  rm -f "$dir/ns/dev/log"              # a socket left by the last run
}

ensure_mbox() {  # ensure_mbox DIR USER UID GID: an empty spool file, as Debian's MDAs leave it
  local box="$1/mail/$2"
  if [ ! -f "$box" ]; then
    : > "$box"
    chown "$3:$(getent group mail | cut -d: -f3)" "$box"
    chmod 660 "$box"
  fi
}

write_env() {
  local dir=$1
  {
    echo "# popa3d peer, written by scripts/peers/popa3d.sh start"
    printf 'PEER_NAME=popa3d\n'
    printf 'PEER_DIR=%q\n' "$dir"
    printf 'PEER_HOST=%q\n' "$HOST"
    printf 'PEER_POP3_PORT=%q\n' "$PEER_POP3_PORT"
    printf 'PEER_POP3S_PORT=\n'          # popa3d has no TLS at all
    printf 'PEER_STLS=no\n'
    printf 'PEER_CA=\n'
    printf 'PEER_USERS=%q\n' "$PEER_USERS"
    printf 'PEER_PASSWORD=%q\n' "$PEER_PASSWORD"
    printf 'PEER_USER=alice\n'
    printf 'PEER_SECOND_USER=bob\n'
    # No PEER_APOP_USER: popa3d has no APOP (nor SASL, nor CAPA).
    printf 'PEER_SPOOL_ROOT=%q\n' "$dir/mail"
    printf 'PEER_MAIL_USER=%q\n' "$PEER_MAIL_USER"
    printf 'PEER_VERSION=%q\n' "$(cat "$dir/root/VERSION")"
    printf 'PEER_PID=%q\n' "$2"
    printf 'PEER_SEED=%q\n' "exec:$SELF seed $dir"
    printf 'PEER_EXPECTATIONS=%q\n' "$ROOT/conformance/expectations/popa3d.toml"
  } > "$dir/peer.env.tmp"
  chmod 600 "$dir/peer.env.tmp"
  mv -f "$dir/peer.env.tmp" "$dir/peer.env"
}

# ----------------------------------------------------------------- the namespace

# A /dev/log reader: popa3d logs only to syslog and this image runs no
# syslog daemon.  One line per datagram into DIR/syslog.log.
SYSLOG_READER='
import os, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/dev/log")
os.chmod("/dev/log", 0o666)
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        out.write(sock.recv(65536).rstrip(b"\0\n") + b"\n")
'

# __run DIR PORT: the launcher, started by `start` as `setsid unshare -m
# --propagation private popa3d.sh __run DIR PORT`.
cmd_run() {
  local dir=$1 port=$2
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$dir/ns/etc,workdir=$dir/ns/etc.work" /etc
  mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$dir/ns/varlib,workdir=$dir/ns/varlib.work" /var/lib
  mount --bind "$dir/mail" /var/mail
  mount -t overlay overlay -o "lowerdir=/dev,upperdir=$dir/ns/dev,workdir=$dir/ns/dev.work" /dev
  local -a kids=()
  trap 'kill -TERM "${kids[@]}" 2>/dev/null; wait; exit 0' TERM INT
  "$(python_bin)" -c "$SYSLOG_READER" "$dir/syslog.log" </dev/null >>"$dir/launcher.log" 2>&1 &
  kids+=($!)
  local i
  for (( i = 0; i < 100; i++ )); do [ -S /dev/log ] && break; sleep 0.05; done
  # inetd-style: one popa3d per connection on its stdin/stdout.
  socat "TCP-LISTEN:$port,bind=$HOST,fork,reuseaddr,backlog=128" \
    "EXEC:$dir/root/usr/sbin/popa3d,nofork" </dev/null >>"$dir/socat.log" 2>&1 &
  kids+=($!)
  wait
}

# ----------------------------------------------------------------- greeting probe

port_busy() {  # port_busy PORT: something accepts connections there already
  { exec 3<>"/dev/tcp/$HOST/$1"; } 2>/dev/null || return 1
  exec 3<&- 3>&-
}

greets_ok() {  # greets_ok PORT: the POP3 port accepts and answers +OK
  local port=$1 line=""
  { exec 3<>"/dev/tcp/$HOST/$port"; } 2>/dev/null || return 1
  IFS= read -r -t 2 line <&3 || true
  printf 'QUIT\r\n' >&3 2>/dev/null || true
  exec 3<&- 3>&-
  [[ "$line" == "+OK"* ]]
}

# ----------------------------------------------------------------- commands

cmd_start() {
  [ $# -eq 1 ] || usage
  local dir pid t0
  dir=$(resolve_dir "$1" 1)
  if pid=$(pid_of "$dir"); then
    say "already running (PID $pid) for $dir; nothing to do"
    return 0
  fi
  [ "$(id -u)" = 0 ] || unavailable "start needs root (mount namespace, popa3d's privilege drops)"
  command -v unshare >/dev/null || unavailable "unshare (util-linux) is missing"
  unshare -m --propagation private true 2>/dev/null || unavailable "cannot create a mount namespace (unshare -m)"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
  grep -qw overlay /proc/filesystems || unavailable "the kernel has no overlay file system"
  # Mount points must exist; both are part of every Debian system (base-files).
  [ -d /var/mail ] && [ -d /var/lib ] || unavailable "/var/mail or /var/lib is missing (popa3d's paths are compiled in)"

  : "${PEER_POP3_PORT:=23110}" "${PEER_PASSWORD:=s3cret}"
  : "${PEER_USERS:=alice bob carol}" "${PEER_MAIL_USER:=pop3peer}"
  [[ "$PEER_POP3_PORT" =~ ^[0-9]+$ ]] && [ "$PEER_POP3_PORT" -ge 1 ] && [ "$PEER_POP3_PORT" -le 65535 ] \
    || die "bad port '$PEER_POP3_PORT'"
  ! port_busy "$PEER_POP3_PORT" || die "$HOST:$PEER_POP3_PORT is in use by another program; choose PEER_POP3_PORT"
  [ -x "$(python_bin)" ] || die "no Python at $(python_bin) for the syslog reader and seed (set PEER_PYTHON)"

  ensure_socat
  ensure_extracted "$dir"
  ensure_mail_user "$PEER_MAIL_USER"
  local uid gid user
  uid=$(id -u "$PEER_MAIL_USER"); gid=$(id -g "$PEER_MAIL_USER")
  [ "$uid" != 0 ] || die "PEER_MAIL_USER must not be root"

  t0=$(now)
  make_traversable "$dir"
  mkdir -p "$dir/mail"
  chown root:mail "$dir/mail"; chmod 2775 "$dir/mail"   # as Debian's /var/mail
  rm -f "$dir/popa3d.pid"
  write_accounts "$dir" "$uid" "$gid" "$PEER_PASSWORD"
  for user in $PEER_USERS; do ensure_mbox "$dir" "$user" "$uid" "$gid"; done

  setsid unshare -m --propagation private bash "$SELF" __run "$dir" "$PEER_POP3_PORT" \
    </dev/null >>"$dir/launcher.log" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/popa3d.pid"
  local deadline
  deadline=$(( $(date +%s) + ${PEER_START_TIMEOUT:-20} ))
  until greets_ok "$PEER_POP3_PORT"; do
    if [ "$(date +%s)" -ge "$deadline" ] || ! alive "$pid"; then
      tail -n 20 "$dir/launcher.log" "$dir/socat.log" "$dir/syslog.log" >&2 2>/dev/null || true
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "no +OK greeting on $HOST:$PEER_POP3_PORT within ${PEER_START_TIMEOUT:-20} s (see $dir/*.log)"
    fi
    sleep 0.05
  done
  write_env "$dir" "$pid"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (no STLS, no POP3S: popa3d has no TLS); env in $dir/peer.env"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir pid
  [ -d "$1" ] || { say "$1 does not exist; not running"; return 0; }
  dir=$(resolve_dir "$1" 0)
  if ! pid=$(pid_of "$dir"); then
    rm -f "$dir/popa3d.pid"
    say "not running ($dir)"
    return 0
  fi
  local timeout=${PEER_STOP_TIMEOUT:-10} i left
  # The launcher TERMs socat and the syslog reader; running sessions
  # (popa3d processes of the same session) get TERM here too.
  kill -TERM "$pid" 2>/dev/null || true
  left=$(session_pids "$pid")
  [ -z "$left" ] || kill -TERM $left 2>/dev/null || true
  for (( i = 0; i < timeout * 10; i++ )); do
    [ -z "$(session_pids "$pid")" ] && break
    sleep 0.1
  done
  left=$(session_pids "$pid")
  if [ -n "$left" ]; then
    say "still alive after ${timeout} s: $left; sending SIGKILL"
    kill -KILL $left 2>/dev/null || true
    for (( i = 0; i < 50; i++ )); do [ -z "$(session_pids "$pid")" ] && break; sleep 0.1; done
  fi
  rm -f "$dir/popa3d.pid" "$dir/ns/dev/log"
  say "stopped (was PID $pid)"
}

# Local delivery to an mbox spool as Debian's MDAs do it (exim's appendfile,
# mail.local): under popa3d's own lock (fcntl, plus flock for other MUAs),
# a "From SENDER DATE" line, the message with CRLF turned into LF, lines
# starting with "From " quoted as ">From ", a final newline added if
# missing, and an empty line before the next message.
SEED_MBOX='
import fcntl, os, re, sys, time
box, sender = sys.argv[1], sys.argv[2]
with open(box, "ab") as out:
    fcntl.lockf(out, fcntl.LOCK_EX)
    fcntl.flock(out, fcntl.LOCK_EX)
    for path in sys.argv[3:]:
        with open(path, "rb") as message:
            data = message.read().replace(b"\r\n", b"\n")
        data = re.sub(rb"^From ", b">From ", data, flags=re.MULTILINE)
        if not data.endswith(b"\n"):
            data += b"\n"
        stamp = time.strftime("%a %b %e %H:%M:%S %Y", time.localtime()).encode()
        out.write(b"From " + sender.encode() + b" " + stamp + b"\n" + data + b"\n")
    out.flush()
    os.fsync(out.fileno())
'

cmd_seed() {
  [ $# -ge 3 ] || usage
  local dir user
  dir=$(resolve_dir "$1" 0); user=$2; shift 2
  [ -f "$dir/peer.env" ] || die "$dir/peer.env is missing (run '$PROG start $dir' first)"
  local PEER_USERS PEER_MAIL_USER file
  PEER_USERS=$(. "$dir/peer.env"; echo "$PEER_USERS")
  PEER_MAIL_USER=$(. "$dir/peer.env"; echo "$PEER_MAIL_USER")
  [[ " $PEER_USERS " == *" $user "* ]] || die "unknown user '$user' (peer users: $PEER_USERS)"
  for file in "$@"; do
    [ -f "$file" ] && [ -r "$file" ] || die "cannot read message file $file"
  done
  local uid gid
  uid=$(id -u "$PEER_MAIL_USER") || die "mail user $PEER_MAIL_USER is missing"
  gid=$(id -g "$PEER_MAIL_USER")
  ensure_mbox "$dir" "$user" "$uid" "$gid"
  "$(python_bin)" -c "$SEED_MBOX" "$dir/mail/$user" "${PEER_SEED_SENDER:-pop3suite@localhost}" "$@" \
    || die "appending to $dir/mail/$user failed"
  say "seeded $# message(s) for $user"
}

cmd_status() {
  [ $# -eq 1 ] || usage
  [ -d "$1" ] || { echo "stopped: $1 does not exist"; return 3; }
  local dir pid
  dir=$(resolve_dir "$1" 0)
  if pid=$(pid_of "$dir"); then
    local p3="?"
    [ -f "$dir/peer.env" ] && p3=$(. "$dir/peer.env"; echo "$PEER_POP3_PORT")
    echo "running: PID $pid, pop3 $HOST:$p3 (no TLS), dir $dir"
    return 0
  fi
  echo "stopped: $dir"
  return 3
}

cmd_env() {
  [ $# -eq 1 ] || usage
  local dir
  dir=$(resolve_dir "$1" 0)
  [ -f "$dir/peer.env" ] || die "$dir/peer.env is missing (run '$PROG start $dir' first)"
  cat "$dir/peer.env"
}

main() {
  [ $# -ge 1 ] || usage
  local cmd=$1; shift
  case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    seed) cmd_seed "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env "$@" ;;
    __run) [ $# -eq 2 ] || usage; cmd_run "$1" "$2" ;;
    -h|--help|help) usage ;;
    *) say "unknown command '$cmd'"; usage ;;
  esac
}

# exit here: bash reads a script as it runs, so a long-running launcher must
# not read on after main if the file is edited meanwhile.
main "$@"; exit
