package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrVoterChangePending refuses a voter removal while an earlier membership
// change has not been taken up by a started epoch.
var ErrVoterChangePending = errors.New("cluster: an earlier membership change is not yet taken up by a started epoch")

// VoterRecord is the voter set the newest started epoch began with, and the
// voter removal under way, if any.
//
// One voter removal per started epoch: the replication majority of the next
// epoch must intersect the majority that committed the last frames, and that
// holds across one change of the voter set, not two. Removing two voters of
// five before any epoch started with four could leave a majority of the
// three that remain without the newest committed frames (found in review).
type VoterRecord struct {
	Epoch    uint64   `json:"epoch"`
	Voters   []string `json:"voters"`
	Removing string   `json:"removing,omitempty"`
}

func (m *Member) votersKey() string { return m.Prefix() + "epoch_voters" }

func (m *Member) voterRecord(ctx context.Context) (rec VoterRecord, rev int64, err error) {
	resp, err := m.client.Get(ctx, m.votersKey())
	if err != nil || len(resp.Kvs) == 0 {
		return rec, 0, err
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return rec, 0, fmt.Errorf("cluster: %s: %w", m.votersKey(), err)
	}
	return rec, resp.Kvs[0].ModRevision, nil
}

// putVoterRecord writes rec if the record is still at rev (0: absent).
func (m *Member) putVoterRecord(ctx context.Context, rec VoterRecord, rev int64) (ok bool, newRev int64, err error) {
	b, _ := json.Marshal(rec)
	resp, err := m.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(m.votersKey()), "=", rev)).
		Then(clientv3.OpPut(m.votersKey(), string(b))).Commit()
	if err != nil || !resp.Succeeded {
		return false, 0, err
	}
	return true, resp.Header.Revision, nil
}

// RecordEpochVoters records, once epoch serves, the voters it began with; it
// ends any removal under way (the removal is taken up, or it failed and the
// voters are unchanged). A record of a newer epoch is kept.
func (m *Member) RecordEpochVoters(ctx context.Context, epoch uint64, voters []string) error {
	for ctx.Err() == nil {
		rec, rev, err := m.voterRecord(ctx)
		if err != nil {
			return err
		}
		if rec.Epoch >= epoch && rev != 0 {
			return nil
		}
		ok, _, err := m.putVoterRecord(ctx, VoterRecord{Epoch: epoch, Voters: slices.Sorted(slices.Values(voters))}, rev)
		if err != nil || ok {
			return err
		}
	}
	return ctx.Err()
}

// BeginVoterRemoval claims the one voter change the current epoch allows:
// the voters now (etcd's voting members) must be the voters the newest
// started epoch began with, and no other removal may be under way. undo
// gives the claim back if the removal failed.
//
// It is retried through etcd's raft leader changes, as membership changes
// are (the dead member being removed may have been etcd's raft leader).
func (m *Member) BeginVoterRemoval(ctx context.Context, name string) (undo func(), err error) {
	err = retryMembership(ctx, func(retry bool) (err error) {
		undo, err = m.beginVoterRemoval(ctx, name, retry)
		return err
	})
	return undo, err
}

func (m *Member) beginVoterRemoval(ctx context.Context, name string, retry bool) (undo func(), err error) {
	rec, rev, err := m.voterRecord(ctx)
	if err != nil {
		return nil, err
	}
	voters, err := m.Voters(ctx)
	if err != nil {
		return nil, err
	}
	slices.Sort(voters)
	switch {
	case retry && rec.Removing == name:
		// An earlier attempt's claim was applied, its answer lost.
		return m.undoClaim(VoterRecord{Epoch: rec.Epoch, Voters: rec.Voters}, rev, rev), nil
	case rec.Removing != "":
		return nil, fmt.Errorf("%w: the removal of %s is under way; wait until a leader serves without it (autonomyctl ha status), then retry", ErrVoterChangePending, rec.Removing)
	case rev != 0 && !slices.Equal(rec.Voters, voters):
		return nil, fmt.Errorf("%w: the voters are %v but epoch %d began with %v; wait until a leader serves with the current voters (autonomyctl ha status), then retry", ErrVoterChangePending, voters, rec.Epoch, rec.Voters)
	}
	claim := VoterRecord{Epoch: rec.Epoch, Voters: voters, Removing: name}
	ok, claimRev, err := m.putVoterRecord(ctx, claim, rev)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: another membership change began at the same moment; retry", ErrVoterChangePending)
	}
	rec.Removing = ""
	return m.undoClaim(rec, rev, claimRev), nil
}

// undoClaim gives a removal's claim back: the record as it was before the
// claim (absent if prevRev is 0), if the claim is still the newest write.
func (m *Member) undoClaim(prev VoterRecord, prevRev, claimRev int64) func() {
	return func() {
		if prevRev == 0 {
			m.client.Txn(context.Background()).If(clientv3.Compare(clientv3.ModRevision(m.votersKey()), "=", claimRev)).
				Then(clientv3.OpDelete(m.votersKey())).Commit()
			return
		}
		m.putVoterRecord(context.Background(), prev, claimRev)
	}
}
