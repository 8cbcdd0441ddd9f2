package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startTestMember starts a single-member cluster in a temporary directory.
func startTestMember(t *testing.T) *Member {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir = "n1", t.TempDir()
	cfg.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cfg.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	log.SetOutput(testWriter{t})
	cfg.Logger = log
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := StartMember(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// TestMember_keyLayouts: settings (conditional writes and the watch), audit
// records (newest first) and the failover hint, through the typed methods
// that own their keys.
func TestMember_keyLayouts(t *testing.T) {
	m := startTestMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Settings.
	zero := int64(0)
	rev, err := m.PutSetting(ctx, "ingest/max_batch", []byte("5"), &zero)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.PutSetting(ctx, "ingest/max_batch", []byte("6"), &zero); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("create over an existing key: %v", err)
	}
	s, ok, err := m.Setting(ctx, "ingest/max_batch")
	if !ok || err != nil || string(s.Value) != "5" || s.Revision != rev {
		t.Fatalf("Setting: %+v ok=%t err=%v (put at %d)", s, ok, err, rev)
	}
	all, readRev, err := m.Settings(ctx)
	if err != nil || len(all) != 1 || all[0].Key != "ingest/max_batch" || readRev < rev {
		t.Fatalf("Settings: %+v at %d, %v", all, readRev, err)
	}
	stale := rev - 1
	if _, err := m.DeleteSetting(ctx, "ingest/max_batch", &stale); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("delete at a stale revision: %v", err)
	}
	if _, err := m.DeleteSetting(ctx, "nope", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of an absent key: %v", err)
	}

	wctx, wcancel := context.WithCancel(ctx)
	got := make(chan SettingEvent, 4)
	done := make(chan error, 1)
	go func() {
		done <- m.WatchSettings(wctx, readRev, func(_ int64, evs []SettingEvent) {
			for _, ev := range evs {
				got <- ev
			}
		})
	}()
	if _, err := m.PutSetting(ctx, "log/level", []byte(`"debug"`), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.DeleteSetting(ctx, "ingest/max_batch", &rev); err != nil {
		t.Fatal(err)
	}
	for _, want := range []SettingEvent{{Setting: Setting{Key: "log/level", Value: []byte(`"debug"`)}}, {Setting: Setting{Key: "ingest/max_batch"}, Deleted: true}} {
		select {
		case ev := <-got:
			if ev.Key != want.Key || ev.Deleted != want.Deleted || string(ev.Value) != string(want.Value) {
				t.Fatalf("watch: %+v, want %+v", ev, want)
			}
		case <-ctx.Done():
			t.Fatal("watch: no event")
		}
	}
	wcancel()
	if err := <-done; err != nil {
		t.Fatalf("WatchSettings after its context ended: %v", err)
	}

	// Audit records, newest first.
	t0 := time.Unix(1700000000, 0)
	for i := range 3 {
		if err := m.PutAudit(ctx, t0.Add(time.Duration(i)*time.Second), "n1", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := m.AuditRecords(ctx, 2)
	if err != nil || len(recs) != 2 || string(recs[0]) != "2" || string(recs[1]) != "1" {
		t.Fatalf("AuditRecords: %q %v", recs, err)
	}

	// The failover hint: put, read, cleared only by its target, revoked.
	if _, ok := m.FailoverHint(ctx); ok {
		t.Fatal("a hint before any failover")
	}
	revoke, err := m.PutFailoverHint(ctx, FailoverHint{To: "n2", From: "n1", Epoch: 7}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := m.FailoverHint(ctx); !ok || h != (FailoverHint{To: "n2", From: "n1", Epoch: 7}) {
		t.Fatalf("FailoverHint: %+v %t", h, ok)
	}
	m.ClearFailoverHint(ctx, "n3")
	if _, ok := m.FailoverHint(ctx); !ok {
		t.Fatal("cleared by a node it does not name")
	}
	revoke()
	if _, ok := m.FailoverHint(ctx); ok {
		t.Fatal("the hint outlived its revoked lease")
	}
}

// The position records are raised in one transaction, never lowered for the
// same WAL id, replaced by a new WAL id, and not written at all when nothing
// moved (one etcd write per round, not one per voter).
func TestMember_RecordWALPositions(t *testing.T) {
	m := startTestMember(t)
	ctx := context.Background()
	n, err := m.RecordWALPositions(ctx, map[string]WALPos{"n1": {WALID: "a", Durable: 10}, "n2": {WALID: "b", Durable: 7}})
	if err != nil || n != 2 {
		t.Fatalf("first round wrote %d (%v), want 2", n, err)
	}
	rev := func() int64 {
		r, err := m.client.Get(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Revision
	}
	before := rev()
	n, err = m.RecordWALPositions(ctx, map[string]WALPos{"n1": {WALID: "a", Durable: 9}, "n2": {WALID: "b", Durable: 7}})
	if err != nil || n != 0 || rev() != before {
		t.Fatalf("a lower or equal position wrote %d records (%v); revision %d → %d", n, err, before, rev())
	}
	n, err = m.RecordWALPositions(ctx, map[string]WALPos{"n1": {WALID: "a", Durable: 12}, "n2": {WALID: "c", Durable: 1}})
	if err != nil || n != 2 || rev() != before+1 {
		t.Fatalf("raise + new WAL id wrote %d (%v) in %d revisions, want 2 in one", n, err, rev()-before)
	}
	for name, want := range map[string]WALPos{"n1": {WALID: "a", Durable: 12}, "n2": {WALID: "c", Durable: 1}} {
		got, ok, err := m.WALPosOf(ctx, name)
		if err != nil || !ok || got != want {
			t.Errorf("%s: %+v %v %v, want %+v", name, got, ok, err, want)
		}
	}
}

// TestMember_suspectLeader: a follower's record that it does not hear the
// leader counts toward a majority of the voters only while it lasts, only for
// its epoch, and only for a voter; a withdrawn record no longer counts.
func TestMember_suspectLeader(t *testing.T) {
	m := startTestMember(t) // one voter, n1: a majority is n1 alone
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := m.suspectAs(ctx, "n9", 7, time.Second) // not a voter
	if err != nil {
		t.Fatal(err)
	}
	if s.Majority || !slices.Equal(s.Voters, []string{"n1"}) {
		t.Fatalf("a non-voter's record made %+v", s)
	}
	if s, err = m.SuspectLeader(ctx, 8, time.Second); err != nil || !slices.Equal(s.Suspects, []string{"n1"}) {
		t.Fatalf("another epoch's records counted: %+v, %v", s, err)
	}
	if err := m.WithdrawSuspicion(ctx, s.Lease); err != nil {
		t.Fatal(err)
	}
	s, err = m.SuspectLeader(ctx, 7, time.Second)
	if err != nil || !s.Majority || !slices.Equal(s.Suspects, []string{"n1", "n9"}) {
		t.Fatalf("n1's record for epoch 7: %+v, %v; want a majority with suspects [n1 n9]", s, err)
	}
	if err := m.WithdrawSuspicion(ctx, s.Lease); err != nil {
		t.Fatal(err)
	}
	s, err = m.suspectAs(ctx, "n9", 7, time.Second)
	if err != nil || s.Majority || slices.Contains(s.Suspects, "n1") {
		t.Fatalf("n1's withdrawn record still counts: %+v, %v", s, err)
	}
}

// TestIsMajority: of three voters two are needed, of five three; learners
// and strangers are not voters.
func TestIsMajority(t *testing.T) {
	three := []string{"n1", "n2", "n3"}
	five := []string{"n1", "n2", "n3", "n4", "n5"}
	for _, tc := range []struct {
		names, voters []string
		want          bool
	}{
		{[]string{"n2"}, three, false}, // one follower cut off alone
		{[]string{"n2", "n3"}, three, true},
		{[]string{"n2", "n9"}, three, false},
		{[]string{"n2", "n3"}, five, false},
		{[]string{"n2", "n3", "n4"}, five, true},
		{nil, nil, false},
	} {
		if got := isMajority(tc.names, tc.voters); got != tc.want {
			t.Errorf("isMajority(%v, %v) = %v, want %v", tc.names, tc.voters, got, tc.want)
		}
	}
}
