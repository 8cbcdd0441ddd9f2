package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// Config configures this node's etcd member and election.
type Config struct {
	// Name is this node's name; it is also its etcd member name.
	Name string
	// ClusterName scopes every key: /autonomy/<ClusterName>/...
	ClusterName string
	// DataDir is the etcd member's data directory (<data-dir>/etcd).
	DataDir string
	// ClientURL is where the embedded etcd serves clients (listen and advertise).
	ClientURL string
	// PeerURL is where the embedded etcd talks to its peers (listen and advertise).
	PeerURL string
	// InitialCluster is "name=peerURL,..." for bootstrapping. Empty means a
	// single-node cluster of this node alone.
	InitialCluster string
	// InitialClusterState is "new" or "existing".
	InitialClusterState string
	// LeaderTTL is the leader session's lease TTL (whole seconds, ≥ 1). A
	// leader that cannot renew within it loses leadership; a smaller TTL fails
	// over faster but risks needless elections under load.
	LeaderTTL time.Duration
	// HeartbeatInterval and ElectionTimeout are etcd's raft timing.
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// QuotaBackendBytes bounds etcd's database; the data kept there is small.
	QuotaBackendBytes int64
	// PeerTLS, when set, makes etcd's peer (and client) traffic mutual TLS
	// with these PEM files; the URLs must then be https.
	PeerTLS *TLSFiles
	// Logger receives etcd's logs (at Warn and above unless Debug; see
	// Member.SetDebug).
	Logger logrus.FieldLogger
	Debug  bool
}

// DefaultConfig returns LAN defaults tuned for fast failover
// (docs/decisions.md, "failover timing").
func DefaultConfig() Config {
	return Config{
		ClusterName:         "autonomy",
		ClientURL:           "http://127.0.0.1:2379",
		PeerURL:             "http://127.0.0.1:2380",
		InitialClusterState: embed.ClusterStateFlagNew,
		LeaderTTL:           2 * time.Second,
		HeartbeatInterval:   50 * time.Millisecond,
		ElectionTimeout:     500 * time.Millisecond,
		QuotaBackendBytes:   512 << 20,
		Logger:              logrus.StandardLogger(),
	}
}

// Validate names the first bad field and its value.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("cluster: --name is empty")
	}
	if c.ClusterName == "" || strings.ContainsAny(c.ClusterName, "/ ") {
		return fmt.Errorf("cluster: --cluster-name=%q must be non-empty without '/' or spaces", c.ClusterName)
	}
	for flag, u := range map[string]string{"--etcd-client-url": c.ClientURL, "--etcd-peer-url": c.PeerURL} {
		if _, err := parseURL(u); err != nil {
			return fmt.Errorf("cluster: %s=%q: %v", flag, u, err)
		}
	}
	if c.InitialCluster != "" {
		if _, err := ParseInitialCluster(c.InitialCluster); err != nil {
			return err
		}
	}
	if c.InitialClusterState != embed.ClusterStateFlagNew && c.InitialClusterState != embed.ClusterStateFlagExisting {
		return fmt.Errorf("cluster: --initial-cluster-state=%q must be %q or %q", c.InitialClusterState, embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting)
	}
	if c.LeaderTTL < time.Second || c.LeaderTTL%time.Second != 0 {
		return fmt.Errorf("cluster: --leader-ttl=%s must be a whole number of seconds ≥ 1s", c.LeaderTTL)
	}
	if c.HeartbeatInterval <= 0 || c.ElectionTimeout < 5*c.HeartbeatInterval {
		return fmt.Errorf("cluster: --etcd-election-timeout=%s must be at least 5× --etcd-heartbeat=%s", c.ElectionTimeout, c.HeartbeatInterval)
	}
	return nil
}

// ParseInitialCluster parses "n1=http://a:2380,n2=http://b:2380" into
// name → peer URL.
func ParseInitialCluster(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		name, u, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("cluster: --initial-cluster entry %q is not name=peerURL", part)
		}
		if _, err := parseURL(u); err != nil {
			return nil, fmt.Errorf("cluster: --initial-cluster entry %q: %v", part, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("cluster: --initial-cluster names %q twice", name)
		}
		out[name] = u
	}
	return out, nil
}

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("want http(s)://host:port")
	}
	return u, nil
}

// TLSFiles names a certificate, its key and the CA that peers must chain to.
type TLSFiles struct{ Cert, Key, CA string }

// Member is this node's running etcd member and its in-process client.
type Member struct {
	cfg    Config
	etcd   *embed.Etcd
	client *clientv3.Client
	log    logrus.FieldLogger
	zap    *zapState
	once   sync.Once
	// epochBase is added to leader keys' CreateRevisions (LoadEpochBase).
	epochBase atomic.Uint64
}

// StartMember starts the embedded etcd member and waits until it has joined
// its cluster (ReadyNotify) or ctx ends.
func StartMember(ctx context.Context, cfg Config) (*Member, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	cu, _ := parseURL(cfg.ClientURL)
	pu, _ := parseURL(cfg.PeerURL)
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = cfg.Name + "=" + cfg.PeerURL
	}
	ec.InitialClusterToken = "autonomy-" + cfg.ClusterName
	ec.ClusterState = cfg.InitialClusterState
	ec.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	ec.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	ec.AutoCompactionMode = "revision"
	ec.AutoCompactionRetention = "10000"
	zst := &zapState{}
	zst.debug.Store(cfg.Debug)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(cfg.Logger, zst))

	if t := cfg.PeerTLS; t != nil {
		ec.PeerTLSInfo = transport.TLSInfo{CertFile: t.Cert, KeyFile: t.Key, TrustedCAFile: t.CA, ClientCertAuth: true}
		if cu.Scheme == "https" {
			ec.ClientTLSInfo = transport.TLSInfo{CertFile: t.Cert, KeyFile: t.Key, TrustedCAFile: t.CA, ClientCertAuth: true}
		}
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("cluster: starting etcd member %q in %s: %w", cfg.Name, cfg.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("cluster: etcd member %q failed while starting: %w", cfg.Name, err)
	case <-ctx.Done():
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("cluster: etcd member %q did not become ready (is a quorum of --initial-cluster reachable?): %w", cfg.Name, ctx.Err())
	}
	return &Member{cfg: cfg, etcd: e, client: v3client.New(e.Server), log: cfg.Logger, zap: zst}, nil
}

// Err reports a fatal error of the running member.
func (m *Member) Err() <-chan error { return m.etcd.Err() }

// Prefix is the root of this cluster's keys (their layout: kv.go). The
// keys are read and written only through Member's methods.
func (m *Member) Prefix() string { return "/autonomy/" + m.cfg.ClusterName + "/" }

// SetDebug passes etcd's debug and info logs to the Logger (on), or only its
// warnings and errors (off), from now on.
func (m *Member) SetDebug(on bool) { m.zap.debug.Store(on) }

// Close stops the member. It is idempotent. The errors etcd logs about its
// own listeners closing are logged at debug level: a clean stop logs no
// error.
func (m *Member) Close() {
	m.once.Do(func() {
		m.zap.closing.Store(true)
		m.client.Close()
		m.etcd.Close()
	})
}
