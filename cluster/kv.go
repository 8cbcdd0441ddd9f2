package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The key layout under Prefix(), /autonomy/<cluster>/, has one owner: this
// package. The rest of the node reads and writes it through typed methods.
//
//	leader/<lease>       the election (concurrency.Election); epoch = CreateRevision
//	members/<name>       NodeInfo (JSON)
//	walpos/<name>        WALPos (JSON)
//	config/<key>         cluster settings, one key each (JSON values; package settings)
//	audit/<ns>-<node>    audit records (JSON), ns = UnixNano zero-padded to 20 digits
//	failover             FailoverHint (JSON), under a lease while a planned failover runs
//	restored, epoch_base a snapshot restore's marker and epoch base (image.go)
func (m *Member) configPrefix() string { return m.Prefix() + "config/" }
func (m *Member) auditPrefix() string  { return m.Prefix() + "audit/" }
func (m *Member) failoverKey() string  { return m.Prefix() + "failover" }

// Errors of the conditional settings writes.
var (
	ErrNotFound         = errors.New("cluster: no such key")
	ErrRevisionMismatch = errors.New("cluster: revision mismatch")
)

// Setting is one stored cluster setting.
type Setting struct {
	Key      string // without the config/ prefix, e.g. "ingest/max_batch"
	Value    []byte
	Revision int64 // the key's ModRevision
}

// SettingEvent is one change to the settings: a put, or a delete.
type SettingEvent struct {
	Setting
	Deleted bool
}

// Settings reads every stored setting, and the store's revision at the read.
func (m *Member) Settings(ctx context.Context) ([]Setting, int64, error) {
	resp, err := m.client.Get(ctx, m.configPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	out := make([]Setting, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, Setting{Key: strings.TrimPrefix(string(kv.Key), m.configPrefix()), Value: kv.Value, Revision: kv.ModRevision})
	}
	return out, resp.Header.Revision, nil
}

// Setting reads one setting; ok is false when it is not stored.
func (m *Member) Setting(ctx context.Context, key string) (s Setting, ok bool, err error) {
	resp, err := m.client.Get(ctx, m.configPrefix()+key)
	if err != nil || len(resp.Kvs) == 0 {
		return Setting{}, false, err
	}
	kv := resp.Kvs[0]
	return Setting{Key: key, Value: kv.Value, Revision: kv.ModRevision}, true, nil
}

// ifRevision is the compare for a write conditional on rev: the key's
// ModRevision is rev, or for rev 0 the key does not exist.
func (m *Member) ifRevision(key string, rev int64) clientv3.Cmp {
	if rev == 0 {
		return clientv3.Compare(clientv3.CreateRevision(m.configPrefix()+key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(m.configPrefix()+key), "=", rev)
}

// PutSetting stores value under key and returns the store's revision after
// the write. ifRev, when not nil, makes the write conditional: it applies
// only if the key's revision is *ifRev (0: absent), else it fails with
// ErrRevisionMismatch.
func (m *Member) PutSetting(ctx context.Context, key string, value []byte, ifRev *int64) (int64, error) {
	if ifRev == nil {
		resp, err := m.client.Put(ctx, m.configPrefix()+key, string(value))
		if err != nil {
			return 0, err
		}
		return resp.Header.Revision, nil
	}
	resp, err := m.client.Txn(ctx).If(m.ifRevision(key, *ifRev)).Then(clientv3.OpPut(m.configPrefix()+key, string(value))).Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, ErrRevisionMismatch
	}
	return resp.Header.Revision, nil
}

// DeleteSetting deletes key and returns the store's revision after the
// delete. It fails with ErrNotFound when the key is absent, and with
// ErrRevisionMismatch when ifRev is not nil and the key's revision is not
// *ifRev.
func (m *Member) DeleteSetting(ctx context.Context, key string, ifRev *int64) (int64, error) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(m.configPrefix()+key), ">", 0)}
	if ifRev != nil {
		cmps = append(cmps, m.ifRevision(key, *ifRev))
	}
	resp, err := m.client.Txn(ctx).If(cmps...).Then(clientv3.OpDelete(m.configPrefix() + key)).Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		if _, ok, err := m.Setting(ctx, key); err != nil {
			return 0, err
		} else if !ok {
			return 0, ErrNotFound
		}
		return 0, ErrRevisionMismatch
	}
	return resp.Header.Revision, nil
}

// WatchSettings calls fn with every change to the settings after revision
// rev, a watch response at a time, in order, with the store's revision after
// it. It returns nil when ctx ends, or the watch's error (its revision
// compacted, say): the caller then reads the settings again.
func (m *Member) WatchSettings(ctx context.Context, rev int64, fn func(rev int64, changes []SettingEvent)) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range m.client.Watch(wctx, m.configPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		evs := make([]SettingEvent, 0, len(wr.Events))
		for _, ev := range wr.Events {
			evs = append(evs, SettingEvent{Setting: Setting{Key: strings.TrimPrefix(string(ev.Kv.Key), m.configPrefix()),
				Value: ev.Kv.Value, Revision: ev.Kv.ModRevision}, Deleted: ev.Type == clientv3.EventTypeDelete})
		}
		fn(wr.Header.Revision, evs)
	}
	return nil
}

// PutAudit stores one audit record (JSON), keyed by its time and node so
// that listing newest first is a reverse range read.
func (m *Member) PutAudit(ctx context.Context, at time.Time, node string, record []byte) error {
	_, err := m.client.Put(ctx, fmt.Sprintf("%s%020d-%s", m.auditPrefix(), at.UnixNano(), node), string(record))
	return err
}

// AuditRecords returns up to limit audit records, newest first.
func (m *Member) AuditRecords(ctx context.Context, limit int) ([][]byte, error) {
	resp, err := m.client.Get(ctx, m.auditPrefix(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, kv.Value)
	}
	return out, nil
}

// FailoverHint tells the other winners of an election to step aside for
// the target of a planned failover.
type FailoverHint struct {
	To    string `json:"to"`
	From  string `json:"from"`
	Epoch uint64 `json:"epoch"`
}

// PutFailoverHint stores h under a lease of ttl (whole seconds, at least
// one), so that a hint whose failover died with its leader goes away on its
// own. revoke removes it now.
func (m *Member) PutFailoverHint(ctx context.Context, h FailoverHint, ttl time.Duration) (revoke func(), err error) {
	lease, err := m.client.Grant(ctx, max(int64(ttl/time.Second), 1))
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(h)
	if _, err := m.client.Put(ctx, m.failoverKey(), string(b), clientv3.WithLease(lease.ID)); err != nil {
		return nil, err
	}
	return func() { m.client.Revoke(context.Background(), lease.ID) }, nil
}

// FailoverHint reads the hint of a planned failover; ok is false when there
// is none, or it cannot be read.
func (m *Member) FailoverHint(ctx context.Context) (h FailoverHint, ok bool) {
	resp, err := m.client.Get(ctx, m.failoverKey())
	if err != nil || len(resp.Kvs) == 0 {
		return FailoverHint{}, false
	}
	if json.Unmarshal(resp.Kvs[0].Value, &h) != nil {
		return FailoverHint{}, false
	}
	return h, true
}

// ClearFailoverHint deletes the hint if it names to: its target leads now.
func (m *Member) ClearFailoverHint(ctx context.Context, to string) {
	if h, ok := m.FailoverHint(ctx); ok && h.To == to {
		m.client.Delete(ctx, m.failoverKey())
	}
}
