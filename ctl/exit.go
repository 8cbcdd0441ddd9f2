package ctl

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/walrepl"
)

// Exit statuses of autonomyctl. Public interface: docs/autonomyctl.md lists
// them and scripts test them.
const (
	ExitOK          = 0
	ExitError       = 1   // anything not listed below
	ExitUsage       = 2   // bad flags or arguments, or a confirmation that cannot be asked
	ExitUnreachable = 3   // no endpoint configured, or no node could be reached
	ExitNotFound    = 4   // the server answered 404
	ExitHTTP        = 5   // the server answered another error status
	ExitConflict    = 6   // the server answered 409: a compare-and-set revision mismatch, a refused failover
	ExitNoLeader    = 7   // `status`, `ha status`: nodes answered, but no leader can commit (no quorum, or no leader elected)
	ExitBadSnapshot = 8   // `snapshot status`, `snapshot restore`: the file is corrupt, truncated or of another format version
	ExitWALViolated = 65  // a WAL invariant is violated (= walrepl.ExitFailHard)
	ExitInterrupted = 130 // SIGINT or SIGTERM cancelled the command
)

var _ = [1]struct{}{}[ExitWALViolated-walrepl.ExitFailHard] // keep the two equal

// usageError is a mistake in the command line.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitError carries a chosen exit status for an error already explained.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errSilent is returned by a command that has printed everything already and
// only needs the exit status.
type errSilent struct{ code int }

func (e *errSilent) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitCode maps a command's error to the process exit status.
func exitCode(err error) int {
	var (
		silent *errSilent
		ex     *exitError
		usage  *usageError
		noEP   *noEndpointError
		unr    *client.UnreachableError
		ue     *url.Error
		he     *client.HTTPError
		re     *walrepl.RecoveryError
		bad    *badSnapshotError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &silent):
		return silent.code
	case errors.As(err, &bad):
		return ExitBadSnapshot
	case errors.As(err, &ex):
		return ex.code
	case errors.As(err, &usage):
		return ExitUsage
	case errors.As(err, &noEP), errors.As(err, &unr), errors.As(err, &ue):
		return ExitUnreachable
	case errors.As(err, &he):
		switch he.Status {
		case http.StatusNotFound:
			return ExitNotFound
		case http.StatusConflict:
			return ExitConflict
		}
		return ExitHTTP
	case errors.As(err, &re):
		return ExitWALViolated
	}
	return ExitError
}
