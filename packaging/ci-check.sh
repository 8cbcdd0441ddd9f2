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
# It also installs lintian and fails on any lintian error, and on any warning
# not accepted below; and it installs prometheus (for promtool) and checks the
# monitoring pack: `promtool check rules` and `promtool test rules`, on the
# repository's copy and on the one the package installs.
#
# Accepted lintian warnings, on purpose:
#   maintainer-script-calls-systemctl no debhelper/init-system-helpers dependency: the
#                                     scripts call systemctl directly, and only when
#                                     systemd runs
#   non-standard-file-perm            /etc/autonomy/*.yaml are 0640 root:autonomy on
#                                     purpose (gossip key, token digests)
#   recursive-privilege-change        postinst re-owns /var/lib/autonomy after the
#                                     autonomy user was re-created with another uid
# The only lintian override the package may ship is statically-linked-binary
# (Go binaries built with CGO_ENABLED=0; packaging/files/lintian-overrides).

# Helpers are passed to check as commands, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

PKG=autonomy-orchestrator
UNIT=/usr/lib/systemd/system/autonomy-orchestrator.service
DATADIR=/var/lib/autonomy
CONFDIR=/etc/autonomy
MARKER=$DATADIR/ci-check.marker
LINTIAN_ACCEPTED=(maintainer-script-calls-systemctl non-standard-file-perm recursive-privilege-change)
LINTIAN_OVERRIDES_ALLOWED=(statically-linked-binary)
MONITORING=/usr/share/autonomy/monitoring
DOCDIR=/usr/share/doc/$PKG

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
# tool -> Debian package
declare -A tool_pkg=([rpm]=rpm [systemd-analyze]=systemd [lintian]=lintian [promtool]=prometheus)
missing=()
for tool in rpm systemd-analyze lintian promtool; do
	command -v "$tool" >/dev/null || missing+=("${tool_pkg[$tool]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || true
	for p in "${missing[@]}"; do
		apt-get install -y -qq --no-install-recommends "$p" >/dev/null || echo "could not install $p"
	done
fi
for tool in rpm systemd-analyze lintian promtool; do
	check "$tool is available" command -v "$tool"
done
for tool in rpm systemd-analyze lintian promtool; do
	command -v "$tool" >/dev/null || abort "required tools missing"
done

section "monitoring pack (repository)"
check "promtool check rules packaging/monitoring/prometheus/autonomy-alerts.yml" \
	promtool check rules packaging/monitoring/prometheus/autonomy-alerts.yml
check "promtool test rules packaging/monitoring/prometheus/autonomy-alerts.test.yml" \
	promtool test rules packaging/monitoring/prometheus/autonomy-alerts.test.yml
check "the Grafana dashboard is JSON" python3 -m json.tool packaging/monitoring/grafana/autonomy-cluster.json

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
# Exit status 0: no error tag; 2: error tags (--fail-on error); 1 or anything
# else: lintian itself failed.
lintian_out=$(lintian --allow-root --fail-on error "$DEB" 2>&1) && lintian_rc=0 || lintian_rc=$?
indent "$lintian_out"
errors=$(grep -c '^E: ' <<<"$lintian_out" || true)
warnings=$(grep -c '^W: ' <<<"$lintian_out" || true)
echo "    lintian: $errors error(s), $warnings warning(s)"
case $lintian_rc in
0 | 2) ;;
*) fail "lintian exited $lintian_rc: it did not check the package" ;;
esac
if [ "$lintian_rc" -eq 2 ] && [ "$errors" -eq 0 ]; then
	fail "lintian exited 2 (--fail-on error) but printed no E: tag"
fi
expect_eq "lintian: no error" 0 "$errors"
# The overrides the package ships, as lintian applied them (exit status not
# meaningful with --show-overrides).
overrides_out=$(lintian --allow-root --show-overrides "$DEB" 2>&1 || true)
unaccepted=$(grep -E '^W: ' <<<"$lintian_out" | awk '{print $3}' | sort -u |
	grep -vxF -f <(printf '%s\n' "${LINTIAN_ACCEPTED[@]}") || true)
if [ -z "$unaccepted" ]; then
	pass "lintian: no warning beyond the accepted ones"
else
	fail "lintian: unaccepted warnings: $(tr '\n' ' ' <<<"$unaccepted")"
fi
indent "$(grep -E '^O: ' <<<"$overrides_out")"
overridden=$(grep -E '^O: ' <<<"$overrides_out" | awk '{print $3}' | sort -u |
	grep -vxF -f <(printf '%s\n' "${LINTIAN_OVERRIDES_ALLOWED[@]}") || true)
if [ -z "$overridden" ]; then
	pass "lintian: overrides only for ${LINTIAN_OVERRIDES_ALLOWED[*]}"
else
	fail "lintian: overrides not allowed: $(tr '\n' ' ' <<<"$overridden")"
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
# The deb's version without the Debian revision is what both binaries print.
upstream=$(dpkg-deb -f "$DEB" Version)
upstream=${upstream%-*}
for bin in autonomy-orchestrator autonomyctl; do
	out=$(/usr/bin/$bin --version 2>&1) || true
	echo "    $out"
	# shellcheck disable=SC2016 # awk's $i, not the shell's
	check "/usr/bin/$bin --version prints the package version $upstream" \
		awk -v v="$upstream" '{ for (i = 1; i <= NF; i++) if ($i == v) found = 1 } END { exit !found }' <<<"$out"
done
check "bash completion installed" test -s /usr/share/bash-completion/completions/autonomyctl
check "zsh completion installed" grep -q '^#compdef autonomyctl' /usr/share/zsh/vendor-completions/_autonomyctl
check "fish completion installed" grep -q 'complete -c autonomyctl' /usr/share/fish/vendor_completions.d/autonomyctl.fish
for page in autonomy-orchestrator autonomy-orchestrator-serve autonomyctl autonomyctl-ha-status autonomyctl-wal-verify; do
	check "man page $page(1) installed" bash -c "zcat /usr/share/man/man1/$page.1.gz | grep -q '^\\.TH'"
done
if command -v man >/dev/null; then
	man_warnings=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z /usr/share/man/man1/autonomy*.1.gz 2>&1 >/dev/null)
	check "man --warnings: the man pages render without warnings" test -z "$man_warnings"
	indent "$man_warnings"
fi
for doc in copyright README.md install.md operations.md autonomyctl.md; do
	check "$DOCDIR/$doc installed" test -s "$DOCDIR/$doc"
done
changelog_top=$(zcat $DOCDIR/changelog.Debian.gz 2>/dev/null | head -1)
check "changelog.Debian.gz starts with this version ($(dpkg-deb -f "$DEB" Version))" \
	grep -qF "$PKG ($(dpkg-deb -f "$DEB" Version))" <<<"$changelog_top"
for f in README.md prometheus/autonomy-alerts.yml prometheus/autonomy-alerts.test.yml grafana/autonomy-cluster.json; do
	check "monitoring pack: $MONITORING/$f installed" test -s "$MONITORING/$f"
done
check "promtool check rules on the installed pack" promtool check rules $MONITORING/prometheus/autonomy-alerts.yml
check "promtool test rules on the installed pack" bash -c "cd $MONITORING/prometheus && promtool test rules autonomy-alerts.test.yml"
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
check "user autonomy kept (its uid still owns $DATADIR)" user_exists
check "group autonomy kept" group_exists
expect_eq "account autonomy expired (expiry day 1)" 1 "$(getent shadow autonomy | cut -d: -f8)"
check "$CONFDIR removed (conffiles purged)" not test -e $CONFDIR
check "$DATADIR kept after purge (data is never deleted)" test -d $DATADIR
check "data in $DATADIR kept after purge" test -f "$MARKER"
expect_eq "data in $DATADIR still owned by autonomy" "autonomy autonomy" "$(stat -c '%U %G' "$MARKER")"

section "install again after a purge, then purge a node that never ran"
rm -rf "$DATADIR"
check "dpkg -i $DEB (after a purge)" dpkg -i "$DEB"
expect_eq "account autonomy no longer expired" "" "$(getent shadow autonomy | cut -d: -f8)"
check "user autonomy can run a command again" runuser -u autonomy -- true
expect_eq "$DATADIR re-created, 0700 autonomy:autonomy" "700 autonomy autonomy" "$(stat_of $DATADIR)"
check "dpkg -P $PKG" dpkg -P "$PKG"
check "the empty $DATADIR removed by the purge" not test -e $DATADIR
check "$CONFDIR removed" not test -e $CONFDIR
check "no file of the package left in /usr" not bash -c "ls -d /usr/bin/autonomy* /usr/share/autonomy /usr/share/man/man1/autonomy* $DOCDIR 2>/dev/null | grep -q ."

section "rpm"
# The same files, but for what differs on purpose: zsh's vendor directory
# (Debian: vendor-completions, Fedora: site-functions), and the deb-only
# lintian overrides and changelog.Debian.gz (the rpm has a %changelog).
deb_files=$(dpkg -c "$DEB" | awk '/^-/ { sub(/^\./, "", $6); print $6 }' |
	sed 's|^/usr/share/zsh/vendor-completions/|/usr/share/zsh/site-functions/|' |
	grep -vx -e "/usr/share/lintian/overrides/$PKG" -e "$DOCDIR/changelog.Debian.gz" | sort)
rpm_files=$(rpm -qlpv "$RPM" 2>/dev/null | awk '/^-/ { print $NF }' | sort)
if [ -n "$deb_files" ] && [ "$deb_files" = "$rpm_files" ]; then
	pass "rpm -qlp and dpkg -c list the same $(wc -l <<<"$deb_files") regular files"
else
	fail "rpm and deb regular files differ (< deb, > rpm)"
	diff <(echo "$deb_files") <(echo "$rpm_files") | sed 's/^/    /' || true
fi
rpm_release=$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$RPM" 2>/dev/null)
check "rpm %changelog starts with this version ($rpm_release)" \
	bash -c "rpm -qp --changelog '$RPM' 2>/dev/null | head -1 | grep -qF -- '- $rpm_release'"
check "rpm %doc has the docs" bash -c "rpm -qpd '$RPM' 2>/dev/null | grep -qx '$DOCDIR/install.md'"
check "rpm %license is the copyright" bash -c "rpm -qpL '$RPM' 2>/dev/null | grep -qx '$DOCDIR/copyright'"
check "rpm has the zsh completion in site-functions" grep -qx /usr/share/zsh/site-functions/_autonomyctl <(rpm -qlp "$RPM" 2>/dev/null)
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
