#!/usr/bin/env bash
# packaging/nspawn-check.sh — runs the packaged unit under a real systemd.
#
# ci-check.sh verifies the packages without a running systemd. This opt-in
# check boots this machine's own root file system as a throwaway container
# (systemd-nspawn --volatile=overlay: every write goes to a tmpfs and is gone
# afterwards; private network, so no port clashes), installs the .deb there
# with systemd running, and checks the unit for real: the empty config is
# refused with exit 78 and not restarted; a single-node config starts under
# the full sandbox (Type=notify reaches "active", /v1/health answers 200, no
# capabilities, seccomp on); an upgrade restarts a running node; a WAL
# fail-hard exits 65 and is not restarted; the runbook's drop-in recovery
# (AUTONOMYOPS_WAL_LEGACY_UPGRADE=1) and `autonomyctl wal reset` as the
# autonomy user work; removal stops and disables an enabled node.
#
# Run from the repository root, as root, after `make package`, on a machine
# (or VM) where systemd-nspawn may run: bash packaging/nspawn-check.sh
# It installs systemd-container if needed. The host is not modified, apart
# from a bind mount of / that is removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" -eq 0 ] || {
	echo "nspawn-check: must run as root" >&2
	exit 2
}
shopt -s nullglob
debs=(dist/autonomy-orchestrator_*.deb)
shopt -u nullglob
[ "${#debs[@]}" -eq 1 ] || {
	echo "nspawn-check: exactly one dist/autonomy-orchestrator_*.deb expected: run 'make package'" >&2
	exit 2
}
if ! command -v systemd-nspawn >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-container >/dev/null
fi

work=$(mktemp -d /tmp/nspawn-check.XXXXXX)
# The bind mount of / lives outside $work, and is only ever rmdir'ed: never
# rm -r anything that might still be a view of the host's root.
root=$(mktemp -d /tmp/nspawn-check-root.XXXXXX)
mkdir -p "$work/share/out"
cleanup() {
	if mountpoint -q "$root"; then
		umount "$root" || {
			echo "nspawn-check: could not unmount $root: unmount it by hand" >&2
			return
		}
	fi
	rmdir "$root"
	rm -rf "$work"
}
trap cleanup EXIT

cp "${debs[0]}" "$work/share/pkg.deb"
cat >"$work/share/orchestrator.yaml" <<'EOF'
name: n1
data-dir: /var/lib/autonomy
listen: 127.0.0.1:8888
etcd-client-url: http://127.0.0.1:2379
etcd-peer-url: http://127.0.0.1:2380
repl-addr: 127.0.0.1:7400
gossip-addr: 127.0.0.1:7946
EOF
cat >"$work/share/driver.service" <<'EOF'
[Unit]
Description=nspawn-check driver
[Service]
Type=oneshot
ExecStart=/check/driver.sh
EOF
cat >"$work/share/driver.sh" <<'EOF'
#!/bin/bash
exec >/check/out/log 2>&1
U=autonomy-orchestrator
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; }
expect() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (want '$2', got '$3')"; fi; }
prop() { systemctl show -p "$1" --value $U; }
wait_active() { for _ in $(seq 60); do [ "$(prop ActiveState)" = active ] && return 0; sleep 1; done; return 1; }

dpkg -i /check/pkg.deb >/dev/null && pass "dpkg -i with systemd running" || fail "dpkg -i"
expect "not enabled after install" disabled "$(systemctl is-enabled $U)"
expect "not started after install" inactive "$(systemctl is-active $U)"

timeout 60 systemctl start $U 2>/dev/null && fail "start with the packaged config succeeded" || pass "start refused with the packaged config"
sleep 7
expect "empty config: exit status" 78 "$(prop ExecMainStatus)"
expect "empty config: not restarted" 0 "$(prop NRestarts)"
journalctl -u $U -o cat | grep -q "has no settings" && pass "empty config: message in the journal" || fail "empty config: no message"

cp /check/orchestrator.yaml /etc/autonomy/orchestrator.yaml
timeout 120 systemctl start $U && pass "start with a config (Type=notify READY)" || fail "start with a config"
pid=$(prop MainPID)
expect "sandbox: no effective capabilities" 0000000000000000 "$(awk '/^CapEff/ {print $2}' /proc/$pid/status)"
expect "sandbox: seccomp filter on" 2 "$(awk '/^Seccomp:/ {print $2}' /proc/$pid/status)"
expect "runs as autonomy" autonomy "$(ps -o user= -p $pid)"
sleep 3
expect "GET /v1/health" 200 "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8888/v1/health)"

dpkg -i /check/pkg.deb >/dev/null
wait_active
[ "$(prop MainPID)" != "$pid" ] && [ "$(prop ActiveState)" = active ] && pass "upgrade restarted the running node" || fail "upgrade did not restart the node"

systemctl stop $U
expect "stop: exit status 0" 0 "$(prop ExecMainStatus)"

rm -f /var/lib/autonomy/telemetry/telemetry.safe_seq
timeout 60 systemctl start $U 2>/dev/null
sleep 7
expect "WAL fail-hard: exit status" 65 "$(prop ExecMainStatus)"
expect "WAL fail-hard: not restarted" 0 "$(prop NRestarts)"
expect "WAL fail-hard: unit failed" failed "$(prop ActiveState)"

mkdir -p /etc/systemd/system/$U.service.d
printf '[Service]\nEnvironment=AUTONOMYOPS_WAL_LEGACY_UPGRADE=1\n' >/etc/systemd/system/$U.service.d/wal-recovery.conf
systemctl daemon-reload
timeout 60 systemctl start $U && pass "runbook path 1 through a drop-in" || fail "runbook path 1 through a drop-in"
rm /etc/systemd/system/$U.service.d/wal-recovery.conf
systemctl daemon-reload
systemctl stop $U

runuser -u autonomy -- autonomyctl wal reset --data-dir /var/lib/autonomy --yes >/dev/null &&
	pass "autonomyctl wal reset as the autonomy user" || fail "autonomyctl wal reset"
timeout 60 systemctl start $U && pass "start after the reset" || fail "start after the reset"
journalctl -u $U -o cat | grep -q WAL_RESET_BY_OPERATOR && pass "WAL_RESET_BY_OPERATOR logged" || fail "no WAL_RESET_BY_OPERATOR"

systemctl enable $U 2>/dev/null
dpkg -r $U >/dev/null
expect "remove: stopped" inactive "$(systemctl is-active $U)"
[ -e /etc/systemd/system/multi-user.target.wants/$U.service ] && fail "remove: still enabled" || pass "remove: disabled"
dpkg -P $U >/dev/null
getent passwd autonomy >/dev/null && pass "purge: user kept, its uid owns the data" || fail "purge: user removed"
expect "purge: account expired" 1 "$(getent shadow autonomy | cut -d: -f8)"
[ -d /var/lib/autonomy/etcd ] && pass "purge: data kept" || fail "purge: data deleted"
echo DONE
systemctl poweroff 2>/dev/null || systemctl --force poweroff
EOF
chmod +x "$work/share/driver.sh"

# nspawn refuses "/" itself; a bind mount of it is fine, and the overlay keeps it read-only.
# The boot goes straight to the driver unit (and what it needs), not to
# multi-user.target: none of the host's own services start in the container.
mount --bind / "$root"
echo "nspawn-check: booting the container (about a minute)"
timeout 600 systemd-nspawn -D "$root" --volatile=overlay --private-network --register=no --keep-unit \
	--link-journal=no -M nspawn-check --bind="$work/share:/check" \
	--bind-ro="$work/share/driver.service:/etc/systemd/system/nspawn-check-driver.service" \
	-b systemd.unit=nspawn-check-driver.service >"$work/nspawn.log" 2>&1 || true

log=$work/share/out/log
if [ ! -s "$log" ]; then
	tail -n 30 "$work/nspawn.log"
	echo "nspawn-check: FAIL (the container did not run the checks)"
	exit 1
fi
cat "$log"
passed=$(grep -c '^PASS' "$log" || true)
failed=$(grep -c '^FAIL' "$log" || true)
grep -qx DONE "$log" || failed=$((failed + 1))
echo "nspawn-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
