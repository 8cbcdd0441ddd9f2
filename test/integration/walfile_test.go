//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/autonomyops/orchestrator/walrepl"
)

// The host-side WAL editors on a multi-segment WAL written by walrepl (no
// Docker needed): go test -tags integration ./test/integration/ -run TestWALFile
func TestWALFile_multiSegment(t *testing.T) {
	mk := func(t *testing.T) (string, uint64) {
		dir := t.TempDir()
		l := logrus.New()
		l.SetOutput(io.Discard)
		o := walrepl.DefaultOptions(dir)
		o.Logger, o.SegmentBytes = l, walrepl.MinSegmentBytes
		w, _, err := walrepl.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		var last uint64
		for i := 0; i < 150; i++ {
			_, last, _ = w.Append(1, walrepl.FrameEvent, time.Now().UnixNano(), [][]byte{[]byte(fmt.Sprintf(`{"i":%d,"pad":"%090d"}`, i, i))})
		}
		if err := w.WaitDurable(context.Background(), last); err != nil {
			t.Fatal(err)
		}
		w.SetSafeSeq(last - 5)
		w.Close()
		return dir, last
	}
	dir, last := mk(t)
	fs, _, err := scanWALDir(dir)
	if err != nil || len(fs) != int(last) || fs[len(fs)-1].Seq != last {
		t.Fatalf("scanWALDir: %d frames, %v", len(fs), err)
	}
	if fs[0].Path == fs[len(fs)-1].Path {
		t.Fatal("the test WAL has one segment")
	}
	// A bit flip in a committed frame of a sealed segment.
	if err := flipPayloadBit(dir, 3); err != nil {
		t.Fatal(err)
	}
	_, err = walrepl.Verify(dir, true, 0)
	var re *walrepl.RecoveryError
	if !errors.As(err, &re) || re.Cause != walrepl.CauseCommittedFrameCorrupt || re.Seq != 3 {
		t.Fatalf("after the flip: %v", err)
	}
	// Torn tails: above safe_seq (cut), and at safe_seq (a fragment).
	for _, safe := range []uint64{last - 5, last} {
		dir, _ := mk(t)
		what, err := tearTail(dir, safe)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := walrepl.Verify(dir, true, 0)
		if err != nil || !rep.TornTail {
			t.Fatalf("%s: Verify %+v, %v", what, rep, err)
		}
		t.Log(what)
	}
}
