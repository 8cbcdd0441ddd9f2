#!/usr/bin/env bash
# packaging/ci-check.sh — checks the packages built by `make package`.
#
# Run from the repository root, as root, after `make build` and `make package`
# (CI: `bash packaging/ci-check.sh`). It installs the .deb on this machine with
# dpkg, checks the user, directories, permissions, binaries and the systemd unit,
# upgrades it in place, removes it, purges it, and checks what is left; then it
# compares the .rpm's file list with the .deb's. One PASS/FAIL line per check;
# exits non-zero if any check failed. Re-runnable: leftovers of an earlier run
# are cleaned up first.
#
# lintian runs when it installs. These tags are accepted, on purpose:
#   no-changelog                      vendor package built by nfpm, no Debian changelog
#   statically-linked-binary          Go binaries built with CGO_ENABLED=0 (lintian only
#                                     recognises Go through a Debian source package)
#   no-manual-page                    the binaries document themselves with --help
#   maintainer-script-calls-systemctl no debhelper/init-system-helpers dependency: the
#                                     scripts call systemctl directly, and only when
#                                     systemd runs
#   non-standard-file-perm            /etc/autonomy/*.yaml are 0640 root:autonomy on
#                                     purpose (gossip key, token digests)
#   recursive-privilege-change        postinst re-owns /var/lib/autonomy after the
#                                     autonomy user was re-created with another uid
# Any other error or warning tag fails the check.

# Helpers are passed to check as commands, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

PKG=autonomy-orchestrator
UNIT=/usr/lib/systemd/system/autonomy-orchestrator.service
DATADIR=/var/lib/autonomy
CONFDIR=/etc/autonomy
MARKER=$DATADIR/ci-check.marker
LINTIAN_ACCEPTED=(no-changelog statically-linked-binary no-manual-page
	maintainer-script-calls-systemctl non-standard-file-perm recursive-privilege-change)

passed=0
failed=0

# indent prints its argument four spaces in, line by line (command output
# under a check). Empty input prints nothing.
indent() {
	[ -z "$1" ] || printf '%s\n' "$1" | sed 's/^/    /'
}

pass() {
	echo "PASS: $*"
	passed=$((passed + 1))
}
fail() {
	echo "FAIL: $*"
	failed=$((failed + 1))
}
# check DESCRIPTION COMMAND... runs COMMAND quietly and records PASS or FAIL.
check() {
	local desc=$1
	shift
	local out
	if out=$("$@" 2>&1); then
		pass "$desc"
	else
		fail "$desc"
		indent "$out"
	fi
}
# expect_eq DESCRIPTION WANT GOT
expect_eq() {
	if [ "$2" = "$3" ]; then
		pass "$1"
	else
		fail "$1 (want '$2', got '$3')"
	fi
}
finish() {
	echo
	echo "packaging: $passed passed, $failed failed"
	if [ "$failed" -eq 0 ]; then
		echo "ci-check: PASS"
		exit 0
	fi
	echo "ci-check: FAIL"
	exit 1
}
# abort stops early when later checks cannot mean anything.
abort() {
	fail "$*"
	echo "ci-check: stopping: later checks depend on this one"
	finish
}
section() {
	echo
	echo "== $*"
}

stat_of() { stat -L -c '%a %U %G' "$1" 2>/dev/null || echo missing; }
user_exists() { getent passwd autonomy >/dev/null; }
group_exists() { getent group autonomy >/dev/null; }
not() { ! "$@"; }
pkg_known() { dpkg-query -W -f='${Status}' "$PKG" >/dev/null 2>&1; }
pkg_status() { dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null || echo not-installed; }
no_settings() { ! grep -Eq '^[[:space:]]*[^#[:space:]]' "$1"; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section "preconditions"
[ "$(id -u)" -eq 0 ] || abort "must run as root (it installs the package)"
shopt -s nullglob
debs=(dist/"$PKG"_*.deb)
rpms=(dist/"$PKG"-*.rpm)
shopt -u nullglob
[ "${#debs[@]}" -eq 1 ] || abort "exactly one dist/${PKG}_*.deb expected, found ${#debs[@]}: run 'make package'"
[ "${#rpms[@]}" -eq 1 ] || abort "exactly one dist/${PKG}-*.rpm expected, found ${#rpms[@]}: run 'make package'"
DEB=${debs[0]}
RPM=${rpms[0]}
pass "packages built: $DEB, $RPM"

section "tools"
missing=()
command -v rpm >/dev/null || missing+=(rpm)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v lintian >/dev/null || missing+=(lintian)
if [ "${#missing[@]}" -gt 0 ]; then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || true
	for p in "${missing[@]}"; do
		apt-get install -y -qq --no-install-recommends "$p" >/dev/null || echo "could not install $p"
	done
fi
check "rpm is available" command -v rpm
check "systemd-analyze is available" command -v systemd-analyze
if ! command -v rpm >/dev/null || ! command -v systemd-analyze >/dev/null; then
	abort "required tools missing"
fi

section "clean up leftovers of an earlier run"
if pkg_known; then
	echo "purging an installed $PKG ($(pkg_status))"
	dpkg -P "$PKG" >/dev/null
fi
if [ -d "$DATADIR" ]; then
	if [ -e "$MARKER" ] || [ -z "$(ls -A "$DATADIR")" ]; then
		rm -rf "$DATADIR"
	else
		abort "$DATADIR exists with data this script did not create: not touching it"
	fi
fi
user_exists && userdel autonomy
group_exists && groupdel autonomy
rm -rf "$CONFDIR"
check "clean start: no package, user, group, $CONFDIR or $DATADIR" \
	bash -c "! dpkg-query -W $PKG >/dev/null 2>&1 && ! getent passwd autonomy && ! getent group autonomy && [ ! -e $CONFDIR ] && [ ! -e $DATADIR ]"

section "lintian"
if command -v lintian >/dev/null; then
	lintian_out=$(lintian --allow-root "$DEB" 2>&1) || true
	indent "$lintian_out"
	unaccepted=$(grep -E '^[EW]: ' <<<"$lintian_out" | awk '{print $3}' | sort -u |
		grep -vxF -f <(printf '%s\n' "${LINTIAN_ACCEPTED[@]}") || true)
	if [ -z "$unaccepted" ]; then
		pass "lintian: no error or warning beyond the accepted ones"
	else
		fail "lintian: unaccepted tags: $(tr '\n' ' ' <<<"$unaccepted")"
	fi
else
	echo "SKIP: lintian is not installed (apt-get install lintian failed)"
fi

section "deb contents"
deb_conffiles=$(dpkg-deb -I "$DEB" conffiles 2>/dev/null || true)
expect_eq "deb conffiles are exactly the two /etc/autonomy files" \
	"$(printf '%s\n' $CONFDIR/orchestrator.yaml $CONFDIR/tokens.yaml)" "$(sort <<<"$deb_conffiles")"
check "the unit is not a conffile" not grep -qx "$UNIT" <<<"$deb_conffiles"
check "the data directory is not in the deb (created by postinst, never deleted by dpkg)" \
	not grep -q " \./var/lib/autonomy/\?$" <(dpkg -c "$DEB")

section "install: dpkg -i"
if out=$(dpkg -i "$DEB" 2>&1); then
	pass "dpkg -i $DEB"
else
	indent "$out"
	abort "dpkg -i $DEB"
fi
expect_eq "package state" "install ok installed" "$(pkg_status)"
check "user autonomy exists" user_exists
check "group autonomy exists" group_exists
shell=$(getent passwd autonomy | cut -d: -f7)
check "user autonomy has no login shell ($shell)" bash -c "case '$shell' in */nologin) true ;; *) false ;; esac"
uid=$(id -u autonomy 2>/dev/null || echo 99999)
check "user autonomy is a system user (uid $uid < 1000)" test "$uid" -lt 1000
expect_eq "$DATADIR is 0700 autonomy:autonomy" "700 autonomy autonomy" "$(stat_of $DATADIR)"
expect_eq "$CONFDIR/tokens.yaml is 0640 root:autonomy" "640 root autonomy" "$(stat_of $CONFDIR/tokens.yaml)"
expect_eq "$CONFDIR/orchestrator.yaml is 0640 root:autonomy" "640 root autonomy" "$(stat_of $CONFDIR/orchestrator.yaml)"
check "the packaged orchestrator.yaml has no setting (every line is a comment)" no_settings $CONFDIR/orchestrator.yaml
check "the packaged tokens.yaml has no setting (every line is a comment)" no_settings $CONFDIR/tokens.yaml
for bin in autonomy-orchestrator autonomyctl; do
	check "/usr/bin/$bin --version" /usr/bin/$bin --version
	echo "    $(/usr/bin/$bin --version 2>&1 | head -1)"
done
check "bash completion installed" test -s /usr/share/bash-completion/completions/autonomyctl
check "unit installed at $UNIT" test -f $UNIT
check "unit is not enabled (no auto-start)" not bash -c "ls /etc/systemd/system/*.wants/autonomy-orchestrator.service 2>/dev/null | grep -q ."

section "systemd unit"
if verify_out=$(systemd-analyze verify "$UNIT" 2>&1) && [ -z "$verify_out" ]; then
	pass "systemd-analyze verify $UNIT"
else
	fail "systemd-analyze verify $UNIT"
	indent "$verify_out"
fi
exposure=$(systemd-analyze security --offline=true "$UNIT" 2>/dev/null |
	sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
check "systemd-analyze security exposure ${exposure:-?} <= 3.0" \
	awk -v e="${exposure:-99}" 'BEGIN { exit !(e + 0 <= 3.0) }'
for want in Type=notify User=autonomy ReadWritePaths=/var/lib/autonomy LimitNOFILE=65536; do
	check "unit has $want" grep -qx "$want" $UNIT
done
check "unit's RestartPreventExitStatus= has 65 (WAL fail-hard)" \
	grep -Eqx 'RestartPreventExitStatus=(.* )?65( .*)?' $UNIT
check "unit's RestartPreventExitStatus= has 78" grep -Eqx 'RestartPreventExitStatus=(.* )?78( .*)?' $UNIT
# ExecStart is: /bin/sh -c '<empty-config guard>; exec /usr/bin/autonomy-orchestrator serve --config ...'.
# Run the guard part as the autonomy user, as systemd would, without the exec.
execstart=$(sed -n "s/^ExecStart=\/bin\/sh -c '\(.*\)'$/\1/p" $UNIT)
check "ExecStart ends by exec'ing the daemon with the packaged config" \
	grep -q '; exec /usr/bin/autonomy-orchestrator serve --config /etc/autonomy/orchestrator.yaml$' <<<"$execstart"
guard=${execstart%; exec *}
check "unit has the empty-config guard" test -n "$guard" -a "$guard" != "$execstart"
guard_out=$(runuser -u autonomy -- /bin/sh -c "$guard" 2>&1) && guard_rc=0 || guard_rc=$?
expect_eq "guard refuses the packaged (all-commented) config with exit 78" 78 "$guard_rc"
check "guard says why" grep -q "has no settings" <<<"$guard_out"
indent "$guard_out"
echo "name: n1" >>$CONFDIR/orchestrator.yaml
check "guard accepts a config with a setting (read through group autonomy)" runuser -u autonomy -- /bin/sh -c "$guard"

section "upgrade in place (dpkg -i of the same package again)"
echo "ci-check data: must survive remove and purge" >"$MARKER"
chown autonomy:autonomy "$MARKER"
check "dpkg -i again (prerm upgrade, postinst configure <old>)" dpkg -i --force-confold "$DEB"
check "edited orchestrator.yaml kept on upgrade" grep -qx "name: n1" $CONFDIR/orchestrator.yaml
expect_eq "tokens.yaml still 0640 root:autonomy after upgrade" "640 root autonomy" "$(stat_of $CONFDIR/tokens.yaml)"
check "data kept on upgrade" test -f "$MARKER"

section "remove: dpkg -r"
check "dpkg -r $PKG" dpkg -r "$PKG"
expect_eq "package state after remove" "deinstall ok config-files" "$(pkg_status)"
check "binaries removed" not test -e /usr/bin/autonomy-orchestrator -o -e /usr/bin/autonomyctl
check "unit removed" not test -e $UNIT
check "conffile orchestrator.yaml kept (with the edit)" grep -qx "name: n1" $CONFDIR/orchestrator.yaml
check "conffile tokens.yaml kept" test -f $CONFDIR/tokens.yaml
expect_eq "$DATADIR kept, 0700 autonomy:autonomy" "700 autonomy autonomy" "$(stat_of $DATADIR)"
check "data in $DATADIR kept" test -f "$MARKER"
check "user autonomy kept" user_exists

section "purge: dpkg -P"
check "dpkg -P $PKG" dpkg -P "$PKG"
check "package unknown to dpkg after purge" not pkg_known
check "user autonomy removed" not user_exists
check "group autonomy removed" not group_exists
check "$CONFDIR removed (conffiles purged)" not test -e $CONFDIR
check "$DATADIR kept after purge (data is never deleted)" test -d $DATADIR
check "data in $DATADIR kept after purge" test -f "$MARKER"
rm -rf "$DATADIR"

section "rpm"
deb_files=$(dpkg -c "$DEB" | awk '/^-/ { sub(/^\./, "", $6); print $6 }' | sort)
rpm_files=$(rpm -qlpv "$RPM" 2>/dev/null | awk '/^-/ { print $NF }' | sort)
if [ -n "$deb_files" ] && [ "$deb_files" = "$rpm_files" ]; then
	pass "rpm -qlp and dpkg -c list the same $(wc -l <<<"$deb_files") regular files"
else
	fail "rpm and deb regular files differ (< deb, > rpm)"
	diff <(echo "$deb_files") <(echo "$rpm_files") | sed 's/^/    /' || true
fi
check "rpm lists the unit at $UNIT" grep -qx "$UNIT" <(rpm -qlp "$RPM" 2>/dev/null)
expect_eq "rpm config files" "$(printf '%s\n' $CONFDIR/orchestrator.yaml $CONFDIR/tokens.yaml)" \
	"$(rpm -qpc "$RPM" 2>/dev/null | sort)"
rpm_tokens=$(rpm -qlpv "$RPM" 2>/dev/null | awk '$NF == "/etc/autonomy/tokens.yaml" { print $1, $3, $4 }')
expect_eq "rpm tokens.yaml mode and owner" "-rw-r----- root autonomy" "$rpm_tokens"
rpm_scripts=$(rpm -qp --scripts "$RPM" 2>/dev/null)
for s in preinstall postinstall preuninstall postuninstall posttrans; do
	check "rpm has a $s scriptlet" grep -q "^$s scriptlet" <<<"$rpm_scripts"
done
check "rpm version matches deb version" test \
	"$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$RPM" 2>/dev/null)" = "$(dpkg-deb -f "$DEB" Version)"

finish
