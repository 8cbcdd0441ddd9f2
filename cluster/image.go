package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Snapshot and restore of the keys a cluster needs (autonomyctl snapshot).
//
//	restored     RestoreMarker (JSON): this cluster was seeded from a snapshot
//	epoch_base   decimal: added to every leader key's CreateRevision to form
//	             the epoch (0 when absent)
func (m *Member) restoredKey() string  { return m.Prefix() + "restored" }
func (m *Member) epochBaseKey() string { return m.Prefix() + "epoch_base" }

// KV is one key relative to Prefix() (e.g. "config/ingest/max_batch") and
// its value.
type KV struct {
	Key   string
	Value []byte
}

// Image is the part of etcd a snapshot keeps, read at one revision.
type Image struct {
	Revision int64
	Settings []KV // config/
	Audit    []KV // audit/, oldest first
	Members  []KV // members/
	WALPos   []KV // walpos/
}

// imagePage bounds the keys of one read of ReadImage.
const imagePage = 1000

// ReadImage reads the settings, audit trail, node registry and WAL position
// records, every page at the revision of the first read, so that the image
// is one consistent state of etcd. It fails if that revision is compacted
// while it reads (retry).
func (m *Member) ReadImage(ctx context.Context) (Image, error) {
	var img Image
	prefix := m.Prefix()
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(imagePage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if img.Revision != 0 {
			opts = append(opts, clientv3.WithRev(img.Revision))
		}
		resp, err := m.client.Get(ctx, from, opts...)
		if err != nil {
			return Image{}, fmt.Errorf("cluster: reading the keys for a snapshot: %w", err)
		}
		if img.Revision == 0 {
			img.Revision = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			rel := strings.TrimPrefix(string(kv.Key), prefix)
			e := KV{Key: rel, Value: kv.Value}
			switch {
			case strings.HasPrefix(rel, "config/"):
				img.Settings = append(img.Settings, e)
			case strings.HasPrefix(rel, "audit/"):
				img.Audit = append(img.Audit, e)
			case strings.HasPrefix(rel, "members/"):
				img.Members = append(img.Members, e)
			case strings.HasPrefix(rel, "walpos/"):
				img.WALPos = append(img.WALPos, e)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return img, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// RestoreImage is what a restored node loads into a new cluster's etcd.
type RestoreImage struct {
	// Settings and Audit are put as they are; their keys must be under
	// config/ and audit/.
	Settings []KV
	Audit    []KV
	// EpochBase is stored as epoch_base: every later epoch is above it.
	EpochBase uint64
	// Marker is stored under restored (JSON), last: its presence means the
	// restore is complete, and no later ApplyRestore writes anything.
	Marker []byte
	// Record, if set, is one more key (an audit record of the restore)
	// written with the marker.
	Record *KV
}

// Bounds of one restore transaction: etcd's default --max-txn-ops is 128
// and its request limit 1.5 MiB.
const (
	restoreTxnOps   = 100
	restoreTxnBytes = 1 << 20
)

// ErrRestoreKey: a RestoreImage key outside config/ and audit/.
var ErrRestoreKey = errors.New("cluster: a restored key must be under config/ or audit/")

// ApplyRestore loads img once for the whole cluster: every write is
// conditional on the restored marker being absent, and the marker is
// written last with epoch_base. Several nodes may run it at once (each
// holds the same seed); they write the same values, and once one has
// written the marker the others write nothing. applied is false when the
// marker was already there.
func (m *Member) ApplyRestore(ctx context.Context, img RestoreImage) (applied bool, err error) {
	cond := clientv3.Compare(clientv3.CreateRevision(m.restoredKey()), "=", 0)
	var ops []clientv3.Op
	size := 0
	flush := func() (bool, error) {
		if len(ops) == 0 {
			return true, nil
		}
		resp, err := m.client.Txn(ctx).If(cond).Then(ops...).Commit()
		ops, size = ops[:0], 0
		if err != nil {
			return false, fmt.Errorf("cluster: loading the restored keys: %w", err)
		}
		return resp.Succeeded, nil
	}
	for _, kv := range append(append([]KV(nil), img.Settings...), img.Audit...) {
		if !strings.HasPrefix(kv.Key, "config/") && !strings.HasPrefix(kv.Key, "audit/") {
			return false, fmt.Errorf("%w: %q", ErrRestoreKey, kv.Key)
		}
		if len(ops) >= restoreTxnOps || (len(ops) > 0 && size+len(kv.Key)+len(kv.Value) > restoreTxnBytes) {
			if ok, err := flush(); err != nil || !ok {
				return false, err
			}
		}
		ops = append(ops, clientv3.OpPut(m.Prefix()+kv.Key, string(kv.Value)))
		size += len(kv.Key) + len(kv.Value)
	}
	if ok, err := flush(); err != nil || !ok {
		return false, err
	}
	ops = append(ops, clientv3.OpPut(m.epochBaseKey(), strconv.FormatUint(img.EpochBase, 10)))
	if img.Record != nil {
		ops = append(ops, clientv3.OpPut(m.Prefix()+img.Record.Key, string(img.Record.Value)))
	}
	ops = append(ops, clientv3.OpPut(m.restoredKey(), string(img.Marker)))
	return flush()
}

// LoadEpochBase reads epoch_base: from now on every epoch this Member
// reports or compares (Campaign, WatchLeader, CurrentLeader, RevokeLeader,
// EpochFloor) is the leader key's CreateRevision plus it. A node calls it
// once at start, after ApplyRestore and before it reads any epoch; on a
// cluster that was never restored the base is 0.
func (m *Member) LoadEpochBase(ctx context.Context) (uint64, error) {
	resp, err := m.client.Get(ctx, m.epochBaseKey())
	if err != nil {
		return 0, fmt.Errorf("cluster: reading epoch_base: %w", err)
	}
	if len(resp.Kvs) == 0 {
		m.epochBase.Store(0)
		return 0, nil
	}
	b, err := strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cluster: epoch_base %q is not a number: %v", resp.Kvs[0].Value, err)
	}
	m.epochBase.Store(b)
	return b, nil
}

// epochOf turns a leader key's CreateRevision into an epoch.
func (m *Member) epochOf(rev int64) uint64 { return m.epochBase.Load() + uint64(rev) }

// RestoreMarker returns the restored marker (JSON) when this cluster was
// seeded from a snapshot.
func (m *Member) RestoreMarker(ctx context.Context) ([]byte, bool, error) {
	resp, err := m.client.Get(ctx, m.restoredKey())
	if err != nil || len(resp.Kvs) == 0 {
		return nil, false, err
	}
	return resp.Kvs[0].Value, true, nil
}
