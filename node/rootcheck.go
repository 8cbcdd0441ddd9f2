package node

import (
	"errors"
	"fmt"
	"os/user"
	"regexp"
	"strconv"
	"strings"

	"github.com/autonomyops/orchestrator/node/datadir"
)

// MsgServeRefusedAsRoot is the log code (and the last word of the error) of
// a `serve` that root started on a data directory another user owns.
const MsgServeRefusedAsRoot = "SERVE_REFUSED_AS_ROOT"

// ErrServeRefusedAsRoot: root ran `serve` on a data directory that belongs
// to another user. A *ServeAsRootError is errors.Is this.
var ErrServeRefusedAsRoot = errors.New("node: refusing to serve as root on a data directory another user owns")

// ServeAsRootError is run's error when root starts `serve` on a data
// directory that another user owns (the packaged /var/lib/autonomy belongs
// to autonomy). Every file root created there (etcd's, the WAL's, node.json)
// would belong to root, and the node that normally runs as the owner could
// no longer open them: it would fail at its next start. Its text says what
// to run instead; the daemon exits with ExitUsage.
type ServeAsRootError struct {
	DataDir  string
	OwnerUID int
	Owner    string   // the owner's user name; "" when uid has none
	Args     []string // the daemon's arguments, for the command to suggest; nil: `serve --data-dir DIR`
}

func (e *ServeAsRootError) Error() string {
	who := fmt.Sprintf("uid %d", e.OwnerUID)
	sudoUser := "'#" + strconv.Itoa(e.OwnerUID) + "'" // sudo's syntax for a uid
	if e.Owner != "" {
		who = fmt.Sprintf("user %s (uid %d)", e.Owner, e.OwnerUID)
		sudoUser = e.Owner
	}
	args := e.Args
	if len(args) == 0 {
		args = []string{"serve", "--data-dir", e.DataDir}
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return fmt.Sprintf("autonomy-orchestrator: refusing to serve as root on --data-dir %s, which belongs to %s: "+
		"files created there as root (etcd, telemetry, node.json) would stop the node that runs as its owner from starting. "+
		"Nothing was written (%s). Instead:\n"+
		"  the packaged node:      sudo systemctl start autonomy-orchestrator   (then systemctl status autonomy-orchestrator, journalctl -u autonomy-orchestrator)\n"+
		"  by hand, as the owner:  sudo -u %s autonomy-orchestrator %s",
		e.DataDir, who, MsgServeRefusedAsRoot, sudoUser, strings.Join(quoted, " "))
}

// Is makes errors.Is(err, ErrServeRefusedAsRoot) hold.
func (e *ServeAsRootError) Is(target error) bool { return target == ErrServeRefusedAsRoot }

// checkServeUser refuses, when euid is root's, a data directory that exists
// and belongs to another user. It writes nothing. A data directory that does
// not exist yet is root's to create; one root owns is root's to use (a
// development node run with sudo).
func checkServeUser(dataDir string, euid int, args []string) error {
	if euid != 0 {
		return nil
	}
	uid, ok, err := datadir.Owner(dataDir)
	if err != nil {
		return fmt.Errorf("node: checking the owner of --data-dir %s: %w", dataDir, err)
	}
	if !ok || uid == 0 {
		return nil
	}
	e := &ServeAsRootError{DataDir: dataDir, OwnerUID: uid, Args: args}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		e.Owner = u.Username
	}
	return e
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
