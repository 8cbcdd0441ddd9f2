//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// leaderAndFollowers waits for the leader and returns it with the others.
func (s *S) leaderAndFollowers() (*Node, uint64, []*Node, error) {
	l, h, err := s.Leader()
	if err != nil {
		return nil, 0, nil, err
	}
	return l, h.Epoch, s.C.Others(l), nil
}

// waitCaughtUp waits until n has fsynced everything the leader had
// committed when called.
func (s *S) waitCaughtUp(n *Node, d time.Duration) error {
	l, _, err := s.C.WaitLeader(d)
	if err != nil {
		return err
	}
	lw, err := l.WALStatus(context.Background())
	if err != nil {
		return err
	}
	target := lw.SafeSeq
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		ws, err := n.WALStatus(context.Background())
		if err == nil && ws.FsyncedSeq >= target && ws.Failed == "" {
			return nil
		}
		last = fmt.Sprintf("%+v %v", ws, err)
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not catch up to Seq=%d within %s (last: %s)", n.Name, target, d, last)
}

// waitAnswering waits until the node's API answers at all.
func waitAnswering(n *Node, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := n.WALStatus(context.Background()); err == nil {
			return nil
		}
		if st := n.State(); st.Exists && !st.Running {
			return fmt.Errorf("%s exited with status %d", n.Name, st.ExitCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s's API did not answer within %s", n.Name, d)
}

// waitRole waits until the node reports one of the roles in its health.
func waitRole(n *Node, d time.Duration, roles ...string) (string, bool) {
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		if _, h, err := n.Health(context.Background()); err == nil {
			last = h.Role
			for _, r := range roles {
				if h.Role == r {
					return h.Role, true
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return last, false
}

// handOver tries once to make x the next leader with graceful restarts,
// using the election's queue order (the oldest campaign key wins next): the
// third node is restarted so that its key is younger than x's, then the
// leader is stopped gracefully (it resigns) and started again. It does not
// wait for x to serve.
func (s *S) handOver(x *Node) error {
	l, _, err := s.Leader()
	if err != nil {
		return err
	}
	if l == x {
		return nil
	}
	for _, y := range s.C.Others(x, l) {
		if err := y.Stop(); err != nil {
			return err
		}
		if err := y.Start(); err != nil {
			return err
		}
		if err := waitAnswering(y, 30*time.Second); err != nil {
			return err
		}
		if _, ok := waitRole(y, 20*time.Second, "follower"); !ok {
			return fmt.Errorf("%s did not become a follower again", y.Name)
		}
	}
	time.Sleep(500 * time.Millisecond) // y campaigns: its key is now younger than x's
	if err := l.Stop(); err != nil {
		return err
	}
	return l.Start()
}

// makeLeader makes x the serving leader (see handOver).
func (s *S) makeLeader(x *Node) error {
	for try := 0; try < 3; try++ {
		l, _, err := s.Leader()
		if err != nil {
			return err
		}
		if l == x {
			return nil
		}
		if err := s.handOver(x); err != nil {
			return err
		}
	}
	l, _, err := s.Leader()
	if err != nil {
		return err
	}
	if l != x {
		return fmt.Errorf("could not make %s the leader (leader is %s)", x.Name, l.Name)
	}
	return nil
}

// healthNot200For checks that n never answers /v1/health 200 during d.
func healthNot200For(n *Node, d time.Duration) (bool, string) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		code, h, err := n.Health(context.Background())
		if err == nil && code == http.StatusOK {
			return false, fmt.Sprintf("%s answered /v1/health 200 (role %s epoch %d safe_seq %d)", n.Name, h.Role, h.Epoch, h.SafeSeq)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true, ""
}

// logHas reports whether the node's logs (all incarnations) contain every
// one of the strings.
func logHas(n *Node, subs ...string) bool {
	logs := n.Logs()
	for _, sub := range subs {
		if !strings.Contains(logs, sub) {
			return false
		}
	}
	return true
}

// grepLog returns the node's log lines containing sub (at most max).
func grepLog(n *Node, sub string, max int) []string {
	var out []string
	for _, line := range strings.Split(n.Logs(), "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
			if len(out) == max {
				break
			}
		}
	}
	return out
}
