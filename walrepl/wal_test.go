package walrepl

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

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
