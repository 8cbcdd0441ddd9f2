package walrepl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func quietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func openTestWAL(t *testing.T, dir string) *WAL {
	t.Helper()
	o := DefaultOptions(dir)
	o.Logger = quietLogger()
	w, _, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

func TestWAL_AppendReopenRead(t *testing.T) {
	dir := t.TempDir()
	w := openTestWAL(t, dir)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				_, last, err := w.Append(1, FrameEvent, 0, [][]byte{[]byte(fmt.Sprintf(`{"w":%d,"j":%d}`, i, j))})
				if err != nil {
					t.Error(err)
					return
				}
				if err := w.WaitDurable(ctx, last); err != nil {
					t.Error(err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	w.SetSafeSeq(800)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openTestWAL(t, dir)
	defer w.Close()
	st := w.Status()
	if st.LastSeq != 800 || st.SafeSeq != 800 || st.FirstSeq != 1 {
		t.Fatalf("after reopen: %+v", st)
	}
	fr, err := w.ReadFrames(100, 800, 1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(fr) != 701 || fr[0].Seq != 100 || fr[700].Seq != 800 {
		t.Fatalf("read %d frames", len(fr))
	}
	fr, err = w.ReadFrames(1, 800, 10, 10)
	if err != nil || len(fr) != 1 || fr[0].Seq != 1 {
		t.Fatalf("maxBytes smaller than a frame: %v %d", err, len(fr))
	}
	if err := w.TruncateAfter(799); err == nil {
		t.Fatal("truncating below safe_seq must fail")
	}
}

func TestWAL_TruncateAfter(t *testing.T) {
	dir := t.TempDir()
	w := openTestWAL(t, dir)
	for e := uint64(1); e <= 3; e++ {
		for i := 0; i < 100; i++ {
			if _, _, err := w.Append(e, FrameEvent, 0, [][]byte{[]byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.WaitDurable(context.Background(), 300); err != nil {
		t.Fatal(err)
	}
	w.SetSafeSeq(100)
	if err := w.TruncateAfter(150); err != nil {
		t.Fatal(err)
	}
	if last, ep, _, _ := w.Positions(); last != 150 || ep != 2 {
		t.Fatalf("after truncate last=%d epoch=%d", last, ep)
	}
	if _, _, err := w.Append(4, FrameEvent, 0, [][]byte{[]byte(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitDurable(context.Background(), 151); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w = openTestWAL(t, dir)
	defer w.Close()
	if last, ep, _, _ := w.Positions(); last != 151 || ep != 4 {
		t.Fatalf("after reopen last=%d epoch=%d", last, ep)
	}
	if e, _ := w.EpochAt(120); e != 2 {
		t.Fatalf("EpochAt(120)=%d", e)
	}
}

// A Replica with unusable timings is refused at construction, with the
// setting named, instead of panicking later in Lead.
func TestReplicaConfig_Validate(t *testing.T) {
	o := DefaultOptions(t.TempDir())
	o.Logger = quietLogger()
	w, _, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := NewReplica(DefaultReplicaConfig("n1", w, nil)); err != nil {
		t.Fatalf("the default config is refused: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*ReplicaConfig)
		want string
	}{
		"zero config":      {func(c *ReplicaConfig) { *c = ReplicaConfig{Name: "n1", WAL: w} }, "HeartbeatInterval"},
		"no name":          {func(c *ReplicaConfig) { c.Name = "" }, "Name"},
		"no WAL":           {func(c *ReplicaConfig) { c.WAL = nil }, "WAL"},
		"quorum too short": {func(c *ReplicaConfig) { c.QuorumTimeout = c.HeartbeatInterval }, "QuorumTimeout"},
		"no promise time":  {func(c *ReplicaConfig) { c.PromiseTimeout = 0 }, "PromiseTimeout"},
		"no batch":         {func(c *ReplicaConfig) { c.MaxBatchBytes = 0 }, "MaxBatchBytes"},
		"no inflight":      {func(c *ReplicaConfig) { c.MaxInflight = 0 }, "MaxInflight"},
	} {
		c := DefaultReplicaConfig("n1", w, nil)
		tc.edit(&c)
		if _, err := NewReplica(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewReplica = %v, want an error naming %s", name, err, tc.want)
		}
	}
}

// A leader's proposals are validated once, before the core sees them (the
// append that follows skips json.Valid): a payload that is not JSON, or too
// large, is refused with nothing written and the WAL still usable, and a
// follower still validates what it receives.
func TestPropose_badPayloadRefusedBeforeTheLog(t *testing.T) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	c.mustPropose("n1", "ok", 2)
	before := len(c.frames("n1"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := []byte(`{"pad":"` + strings.Repeat("x", DefaultOptions("").MaxPayload) + `"}`)
	for _, tc := range []struct {
		payloads [][]byte
		want     error
	}{
		{[][]byte{[]byte(`{"a":1}`), []byte(`{"a":`)}, ErrInvalidPayload},
		{[][]byte{big}, ErrTooLarge},
	} {
		if _, _, err := c.node("n1").rep.Propose(ctx, time.Now().UnixNano(), tc.payloads); !errors.Is(err, tc.want) {
			t.Fatalf("Propose: %v, want %v", err, tc.want)
		}
	}
	if n := len(c.frames("n1")); n != before {
		t.Fatalf("a refused proposal wrote %d frames", n-before)
	}
	if err := c.node("n1").wal.Err(); err != nil {
		t.Fatalf("the WAL failed: %v", err)
	}
	c.mustPropose("n1", "after", 1)
	if err := c.node("n2").wal.AppendFrames([]Frame{{Seq: 1 << 40, Epoch: 1, Type: FrameEvent, Payload: []byte(`{"a":`)}}); !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("a follower's AppendFrames of invalid JSON: %v, want ErrInvalidPayload", err)
	}
}
