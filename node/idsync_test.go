package node

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

// TestIDIndex_truncatedBelowWhatItIndexed: a node indexed frames 1..60 as a
// follower; a later leader truncated its log to 49 and replaced 50..55; the
// node is then elected with its epoch-start frame at 56, at or below what it
// had indexed. The index must drop the truncated ids and index the frames
// that replaced them, or a retry of a replaced event would be written twice
// and a retry of a truncated one never answered (DESIGN §6 rule 10; found in
// review).
func TestIDIndex_truncatedBelowWhatItIndexed(t *testing.T) {
	o := walrepl.DefaultOptions(filepath.Join(t.TempDir(), "telemetry"))
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	o.Logger = log
	w, _, err := walrepl.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	appendIDs := func(epoch uint64, prefix string, from, to int) {
		t.Helper()
		var ps [][]byte
		for i := from; i <= to; i++ {
			ps = append(ps, fmt.Appendf(nil, `{"id":"%s-%d","kind":"k"}`, prefix, i))
		}
		_, last, err := w.Append(epoch, walrepl.FrameEvent, time.Now().UnixNano(), ps)
		if err == nil {
			err = w.WaitDurable(ctx, last)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	appendIDs(5, "old", 1, 60)
	x := defaultIDIndex()
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.syncLocked(w, 0); err != nil || x.upTo != 60 {
		t.Fatalf("following: indexed up to %d (%v), want 60", x.upTo, err)
	}
	if err := w.TruncateAfter(49); err != nil {
		t.Fatal(err)
	}
	appendIDs(7, "new", 50, 55)
	if err := x.syncLocked(w, 56); err != nil { // now leading, epoch start at 56
		t.Fatal(err)
	}
	for _, id := range []string{"old-50", "old-55", "old-60"} {
		if x.has(id) {
			t.Errorf("truncated %s is still indexed", id)
		}
	}
	for i := 50; i <= 55; i++ {
		if p, ok := x.lookupLocked(fmt.Sprintf("new-%d", i)); !ok || p.seq != uint64(i) || p.epoch != 7 {
			t.Errorf("new-%d: indexed %v at %+v, want Seq %d epoch 7", i, ok, p, i)
		}
	}
	if p, ok := x.lookupLocked("old-49"); !ok || p.seq != 49 {
		t.Errorf("old-49 (kept by the truncation): %v %+v", ok, p)
	}
}
