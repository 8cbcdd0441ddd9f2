package walrepl

// Generator of the format-version-1 fixtures under testdata/v1/ (see its
// README). Run on the last commit with the single-file WAL:
//
//	WALREPL_GEN_V1=1 go test ./walrepl/ -run TestGenerateV1Fixtures
//
// It is a no-op otherwise.

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGenerateV1Fixtures(t *testing.T) {
	if os.Getenv("WALREPL_GEN_V1") != "1" {
		t.Skip("set WALREPL_GEN_V1=1 to regenerate testdata/v1")
	}
	gen := func(name string, n int, trimTo uint64) {
		dir := filepath.Join("testdata", "v1", name)
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		o := DefaultOptions(dir)
		o.Logger = quietLogger()
		w, _, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
		var last uint64
		for i := 1; i <= n; i++ {
			epoch := uint64(3)
			if i > n/2 {
				epoch = 9
			}
			typ := FrameEvent
			p := fmt.Sprintf(`{"kind":"k%d","agent":"a%d","i":%d,"pad":"%0*d"}`, i%3, i%5, i, 40+i%50, i)
			if i == 1 || i == n/2+1 {
				typ = FrameEpochStart
				p = fmt.Sprintf(`{"leader":"n1","epoch":%d}`, epoch)
			}
			_, last, err = w.Append(epoch, typ, ts+int64(i)*int64(time.Millisecond), [][]byte{[]byte(p)})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := w.WaitDurable(t.Context(), last); err != nil {
			t.Fatal(err)
		}
		w.SetSafeSeq(last - 3) // the last three frames are not known committed
		w.persistSafeSeq()
		if trimTo > 0 {
			if b, err := w.TrimTo(trimTo); err != nil || b != trimTo {
				t.Fatalf("TrimTo(%d) = %d, %v", trimTo, b, err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	gen("plain", 300, 0)
	gen("trimmed", 2000, 1+20*indexStride)
}
