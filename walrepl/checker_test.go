package walrepl

import (
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/test/checker"
)

// checkHistory runs the project's history checker (test/checker, the one
// the Docker suite and the multi-process tests use) over every running
// node's committed frames, with the acknowledged frames as the history (an
// event's id is its payload, unique in these tests): each acknowledged
// payload once, at its Seq, on every node; identical frames where the logs
// overlap; no Seq gap; epochs that begin with their epoch-start frame and
// never go back; one leader an epoch. ref is the reference log.
func (c *testCluster) checkHistory(a *ackLog, ref string) {
	c.t.Helper()
	logs := map[string][]wire.Frame{}
	for _, n := range c.names {
		w := c.walOf(n)
		if w == nil {
			continue
		}
		safe := w.SafeSeq()
		var fs []wire.Frame
		for _, f := range c.frames(n) {
			if f.Seq > safe {
				break
			}
			fs = append(fs, wire.Frame{Seq: f.Seq, Epoch: f.Epoch, TS: time.Unix(0, f.Time).UTC(), Type: f.Type.String(), Event: f.Payload})
		}
		logs[n] = fs
	}
	a.mu.Lock()
	events := make([]checker.Event, 0, len(a.acked))
	for seq, p := range a.acked {
		events = append(events, checker.Event{ID: string(p), Outcome: checker.OK, Seq: seq})
	}
	a.mu.Unlock()
	r := checker.CheckWith(logs, events, checker.Options{Ref: ref, Partial: true, ID: func(b []byte) string { return string(b) }})
	for _, e := range r.Errors {
		c.t.Error(e)
	}
}
