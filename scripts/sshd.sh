#!/usr/bin/env bash
# An unprivileged OpenSSH sshd on 127.0.0.1 for the SSH tests and benchmark: the target host an
# agent reaches through sluice (or through a jump host).
#
#   scripts/sshd.sh DIR PORT AUTHORIZED_KEYS [forwarding]
#
# Makes DIR/host_key (Ed25519, the first time; its public half in DIR/host_key.pub) and
# DIR/sshd_config, then runs sshd in the foreground (stop it with SIGTERM): key authentication
# only, for the keys in AUTHORIZED_KEYS; TCP forwarding only with `forwarding` (a jump host).
# Its log is DIR/sshd.log. As root it needs /run/sshd, which it makes.
set -euo pipefail

dir=${1:-}
port=${2:-}
keys=${3:-}
[ -n "$dir" ] && [ -n "$port" ] && [ -n "$keys" ] || {
  echo "usage: $0 DIR PORT AUTHORIZED_KEYS [forwarding]" >&2
  exit 2
}
forwarding=no
[ "${4:-}" = forwarding ] && forwarding=yes

sshd=/usr/sbin/sshd
[ -x "$sshd" ] || sshd=$(command -v sshd || true)
[ -n "$sshd" ] || { echo "sshd.sh: sshd is not installed (scripts/setup.sh test installs openssh-server)" >&2; exit 1; }

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$dir/host_key"
cat > "$dir/sshd_config" <<CONFIG
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
AuthorizedKeysFile $keys
PidFile $dir/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding $forwarding
MaxStartups 100
Subsystem sftp internal-sftp
CONFIG
if [ "$(id -u)" = 0 ]; then
  mkdir -p /run/sshd
  chmod 755 /run/sshd
fi
exec "$sshd" -D -e -f "$dir/sshd_config" 2>>"$dir/sshd.log"
