package settings

import (
	"encoding/json"
	"sort"
	"sync"
	"time"
)

// Values are the settings a node applies.
type Values struct {
	IdempotencyWindow int           // ingest/idempotency_window, events
	IdempotencyBytes  int64         // ingest/idempotency_window_bytes
	MaxBatch          int           // ingest/max_batch, events per request
	MaxBodyBytes      int64         // ingest/max_body_bytes
	LogLevel          string        // log/level
	RetentionAge      time.Duration // retention/max_age; 0: no age bound
	RetentionBytes    int64         // retention/max_bytes; 0: no size bound
}

// Built-in defaults of the keys that have no serve flag.
const (
	DefaultIdempotencyWindow = 200_000
	// DefaultIdempotencyBytes holds DefaultIdempotencyWindow ids of up to
	// 64 bytes (a UUID has 36), so by default the count binds.
	DefaultIdempotencyBytes = 32 << 20
	DefaultMaxBatch         = 10_000
)

// Stored is one key as read from etcd.
type Stored struct {
	Value    json.RawMessage
	Revision int64 // etcd ModRevision
}

// Source says where an applied value comes from.
const (
	SourceDefault = "default"
	SourceEtcd    = "etcd"
)

// Info is one key as a node resolves it.
type Info struct {
	Spec     Spec
	Value    json.RawMessage // applied
	Default  json.RawMessage // this node's default (its flag, or built in)
	Source   string          // SourceDefault or SourceEtcd
	Revision int64           // etcd ModRevision of the stored value, if any
	// Refused is why a stored value is not applied ("" when none is refused).
	Refused string
}

// Resolution is the outcome of Resolve.
type Resolution struct {
	Values Values
	Infos  []Info // one per schema key, sorted by key
	// Unknown are stored keys that are not in the schema (written by an
	// older version or around the API); they have no effect.
	Unknown []string
}

func encode(x any) json.RawMessage {
	b, _ := json.Marshal(x)
	return b
}

// Resolve computes what a node with these defaults applies, given the keys
// stored in etcd (key relative to the config prefix).
func Resolve(defaults Values, stored map[string]Stored) Resolution {
	r := Resolution{Values: defaults}
	for _, s := range schema {
		inf := Info{Spec: s, Default: encode(s.get(&defaults)), Source: SourceDefault}
		if st, ok := stored[s.Key]; ok {
			inf.Revision = st.Revision
			if x, err := s.Parse(st.Value); err != nil {
				inf.Refused = err.Error()
			} else {
				s.set(&r.Values, x)
				inf.Source = SourceEtcd
			}
		}
		inf.Value = encode(s.get(&r.Values))
		r.Infos = append(r.Infos, inf)
	}
	for k := range stored {
		if _, ok := Lookup(k); !ok {
			r.Unknown = append(r.Unknown, k)
		}
	}
	sort.Strings(r.Unknown)
	return r
}

// Live holds the resolution a node applies now. Readers (the ingest path)
// call Values on every request; the etcd watch calls Load. Safe for
// concurrent use.
type Live struct {
	mu       sync.RWMutex
	defaults Values
	res      Resolution
	revision int64
}

// NewLive starts with every key at its default.
func NewLive(defaults Values) *Live {
	return &Live{defaults: defaults, res: Resolve(defaults, nil)}
}

// Defaults returns this node's defaults.
func (l *Live) Defaults() Values {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.defaults
}

// Values returns the values applied now.
func (l *Live) Values() Values {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.res.Values
}

// Resolution returns the last resolution and the etcd revision it reflects.
func (l *Live) Resolution() (Resolution, int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.res, l.revision
}

// Load replaces the stored keys with a complete view as of etcd revision
// rev, and returns the old and the new resolution.
func (l *Live) Load(stored map[string]Stored, rev int64) (before, after Resolution) {
	cp := make(map[string]Stored, len(stored))
	for k, v := range stored {
		cp[k] = v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	before = l.res
	l.revision = rev
	l.res = Resolve(l.defaults, cp)
	return before, l.res
}
