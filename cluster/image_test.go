package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestMember_imageAndRestore: ReadImage pages through every key at one
// revision; ApplyRestore loads settings and audit once (a second apply
// writes nothing); LoadEpochBase lifts every epoch the member reports.
func TestMember_imageAndRestore(t *testing.T) {
	src := startTestMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if _, err := src.PutSetting(ctx, fmt.Sprintf("k/%d", i), []byte(fmt.Sprint(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	// More audit records than one page, to cross page boundaries.
	for i := 0; i < imagePage+5; i++ {
		if err := src.PutAudit(ctx, time.Unix(0, int64(i+1)), "n1", []byte(fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.PutNodeInfo(ctx, NodeInfo{Name: "n1", APIURL: "http://a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.RecordWALPositions(ctx, map[string]WALPos{"n1": {WALID: "ab", Durable: 9}}); err != nil {
		t.Fatal(err)
	}
	img, err := src.ReadImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Settings) != 3 || len(img.Audit) != imagePage+5 || len(img.Members) != 1 || len(img.WALPos) != 1 || img.Revision == 0 {
		t.Fatalf("image: %d settings, %d audit, %d members, %d walpos, revision %d",
			len(img.Settings), len(img.Audit), len(img.Members), len(img.WALPos), img.Revision)
	}
	if img.Audit[0].Key >= img.Audit[len(img.Audit)-1].Key {
		t.Errorf("audit not oldest first: %s .. %s", img.Audit[0].Key, img.Audit[len(img.Audit)-1].Key)
	}

	dst := startTestMember(t)
	floorBefore, err := dst.EpochFloor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ri := RestoreImage{Settings: img.Settings, Audit: img.Audit, EpochBase: 1 << 40, Marker: []byte(`{"safe_seq":7}`),
		Record: &KV{Key: "audit/99999999999999999999-n1", Value: []byte(`{"action":"snapshot_restore"}`)}}
	applied, err := dst.ApplyRestore(ctx, ri)
	if err != nil || !applied {
		t.Fatalf("first apply: %v, %v", applied, err)
	}
	// A second node holding the same seed writes nothing.
	if _, err := dst.PutSetting(ctx, "k/0", []byte(`"changed"`), nil); err != nil {
		t.Fatal(err)
	}
	if applied, err := dst.ApplyRestore(ctx, ri); err != nil || applied {
		t.Fatalf("second apply: %v, %v", applied, err)
	}
	if st, _, _ := dst.Setting(ctx, "k/0"); string(st.Value) != `"changed"` {
		t.Errorf("a second apply overwrote k/0: %s", st.Value)
	}
	got, err := dst.ReadImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Settings) != 3 || len(got.Audit) != imagePage+6 || len(got.Members) != 0 {
		t.Fatalf("restored: %d settings, %d audit, %d members", len(got.Settings), len(got.Audit), len(got.Members))
	}
	base, err := dst.LoadEpochBase(ctx)
	if err != nil || base != 1<<40 {
		t.Fatalf("epoch base %d, %v", base, err)
	}
	floor, err := dst.EpochFloor(ctx)
	if err != nil || floor <= 1<<40 || floor-(1<<40) < floorBefore {
		t.Fatalf("epoch floor %d (before the base: %d), %v", floor, floorBefore, err)
	}
	l, err := dst.Campaign(ctx, NodeInfo{Name: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Resign(context.Background())
	if l.Epoch <= floor {
		t.Errorf("epoch %d not above the floor %d", l.Epoch, floor)
	}
	if li, err := dst.CurrentLeader(ctx); err != nil || li.Epoch != l.Epoch {
		t.Errorf("current leader %+v, %v; campaign epoch %d", li, err, l.Epoch)
	}

	if _, err := startTestMember(t).ApplyRestore(ctx, RestoreImage{Settings: []KV{{Key: "leader/x", Value: []byte("1")}}}); !errors.Is(err, ErrRestoreKey) {
		t.Errorf("a key outside config/ and audit/: %v", err)
	}
}
