package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestVoterRemoval_onePerStartedEpoch: a voter removal is claimed only while
// etcd's voters are those the newest started epoch began with and no other
// removal is under way; a claim given back (the removal failed) frees it, and
// an epoch that starts frees it too. Two removals with no epoch between them
// can leave a majority without the newest committed frames (review finding).
func TestVoterRemoval_onePerStartedEpoch(t *testing.T) {
	m := startTestMember(t) // etcd's voters: [n1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	undo, err := m.BeginVoterRemoval(ctx, "n9") // no record yet: the first claim
	if err != nil {
		t.Fatalf("first removal with no epoch recorded: %v", err)
	}
	if _, err := m.BeginVoterRemoval(ctx, "n8"); !errors.Is(err, ErrVoterChangePending) {
		t.Fatalf("second removal while the first is under way: %v, want ErrVoterChangePending", err)
	}
	undo()
	undo, err = m.BeginVoterRemoval(ctx, "n8")
	if err != nil {
		t.Fatalf("removal after the first was given back: %v", err)
	}
	if err := m.RecordEpochVoters(ctx, 5, []string{"n1"}); err != nil {
		t.Fatal(err)
	}
	undo() // stale: epoch 5 has taken the record over, nothing to give back
	if _, err := m.BeginVoterRemoval(ctx, "n7"); err != nil {
		t.Fatalf("removal after epoch 5 started with the current voters: %v", err)
	}
	if err := m.RecordEpochVoters(ctx, 4, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	if err := m.RecordEpochVoters(ctx, 6, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	_, err = m.BeginVoterRemoval(ctx, "n2")
	if !errors.Is(err, ErrVoterChangePending) {
		t.Fatalf("removal while the voters [n1] differ from epoch 6's [n1 n2]: %v, want ErrVoterChangePending", err)
	}
	t.Logf("refused as: %v", err)
	if rec, _, _ := m.voterRecord(ctx); rec.Epoch != 6 {
		t.Fatalf("record %+v: an older epoch's record replaced a newer one", rec)
	}
}
