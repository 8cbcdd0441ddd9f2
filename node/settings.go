package node

import (
	"context"
	"time"

	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/settings"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

// Live settings: every node watches the config/ prefix in etcd and applies
// each change as it arrives, with no restart (docs/autonomyctl.md,
// "settings"). What reads each value:
//
//	ingest/max_batch, ingest/max_body_bytes  the API's ingest handler, per request
//	ingest/idempotency_window(_bytes)       the id index (setLimits)
//	retention/max_bytes, retention/max_age  the retention loop, at every check
//	log/level                               the logger and etcd's log routing
//
// A key absent from etcd, or holding a value the schema refuses, applies the
// node's default: its serve flag, or the built-in default.

// settingsDefaults are this node's values when etcd stores no setting.
func settingsDefaults(cfg Config) settings.Values {
	return settings.Values{
		IdempotencyWindow: settings.DefaultIdempotencyWindow,
		IdempotencyBytes:  settings.DefaultIdempotencyBytes,
		MaxBatch:          settings.DefaultMaxBatch,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		LogLevel:          cfg.LogLevel,
		RetentionAge:      cfg.WALRetentionAge,
		RetentionBytes:    cfg.WALRetentionBytes,
	}
}

// readSettings reads every stored setting and the revision of the read.
func (n *Node) readSettings(ctx context.Context) (map[string]settings.Stored, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all, rev, err := n.member.Settings(ctx)
	if err != nil {
		return nil, 0, err
	}
	stored := map[string]settings.Stored{}
	for _, st := range all {
		stored[st.Key] = settings.Stored{Value: st.Value, Revision: st.Revision}
	}
	return stored, rev, nil
}

// loadSettings applies the stored settings once, before the node serves.
// It returns what it read, for watchSettings to go on from (nil if etcd
// could not be read: the watch retries).
func (n *Node) loadSettings(ctx context.Context) (map[string]settings.Stored, int64) {
	stored, rev, err := n.readSettings(ctx)
	if err != nil {
		n.log.WithError(err).Warn("SETTINGS_READ_FAILED: applying the defaults until etcd answers")
		return nil, 0
	}
	n.applySettings(stored, rev)
	return stored, rev
}

// watchSettings follows the config/ prefix from revision rev+1, stored
// being the settings as of rev, and applies every change until ctx ends. A
// watch that fails (its revision compacted, say) is replaced by a fresh read
// and a new watch.
func (n *Node) watchSettings(ctx context.Context, stored map[string]settings.Stored, rev int64) {
	for ctx.Err() == nil {
		if stored == nil {
			s, r, err := n.readSettings(ctx)
			if err != nil {
				if ctx.Err() == nil {
					n.log.WithError(err).Warn("SETTINGS_READ_FAILED: retrying")
					walrepl.Sleep(ctx, time.Second)
				}
				continue
			}
			stored, rev = s, r
			n.applySettings(stored, rev)
		}
		err := n.member.WatchSettings(ctx, rev, func(r int64, changes []cluster.SettingEvent) {
			for _, ev := range changes {
				if ev.Deleted {
					delete(stored, ev.Key)
				} else {
					stored[ev.Key] = settings.Stored{Value: ev.Value, Revision: ev.Revision}
				}
			}
			rev = r
			n.applySettings(stored, rev)
		})
		if err != nil && ctx.Err() == nil {
			n.log.WithError(err).Warn("SETTINGS_WATCH_FAILED: reading the settings again")
		}
		stored = nil // read everything again before the next watch
		walrepl.Sleep(ctx, 200*time.Millisecond)
	}
}

// applySettings makes the resolution of stored the one in effect and logs
// every key whose value, source or refusal changed.
func (n *Node) applySettings(stored map[string]settings.Stored, rev int64) {
	before, after := n.live.Load(stored, rev)
	for i, inf := range after.Infos {
		b := before.Infos[i]
		if string(inf.Value) == string(b.Value) && inf.Source == b.Source && inf.Refused == b.Refused {
			continue
		}
		f := n.log.WithFields(logrus.Fields{"key": inf.Spec.Key, "value": string(inf.Value), "source": inf.Source,
			"revision": inf.Revision, "etcd_revision": rev})
		if inf.Refused != "" {
			f.WithField("refused", inf.Refused).Warn("SETTING_REFUSED: etcd holds a value outside the schema; the default applies")
			continue
		}
		f.Info("SETTING_APPLIED")
	}
	known := map[string]bool{}
	for _, k := range before.Unknown {
		known[k] = true
	}
	for _, k := range after.Unknown {
		if !known[k] {
			n.log.WithFields(logrus.Fields{"key": k, "etcd_revision": rev}).
				Warn("SETTING_UNKNOWN: etcd holds a key that is not a setting; it has no effect (autonomyctl settings delete removes it)")
		}
	}
	v := after.Values
	if lvl, err := ParseLogLevel(v.LogLevel); err == nil {
		n.log.SetLevel(lvl)
		n.member.SetDebug(lvl == logrus.DebugLevel)
	}
	n.ids.setLimits(v.IdempotencyWindow, v.IdempotencyBytes)
	n.warnMemoryTight(v.IdempotencyBytes)
}
