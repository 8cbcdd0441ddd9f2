package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// Version is set at build time (-ldflags -X).
var Version = "dev"

// Config is everything `autonomy-orchestrator serve` is told. Each field is a
// flag of the same name; a --config YAML file uses the flag names as keys.
type Config struct {
	Name                string        // --name: this node's name, unique in the cluster
	DataDir             string        // --data-dir
	Listen              string        // --listen: API address
	AdvertiseURL        string        // --advertise-url: API URL peers and clients are sent to
	EtcdClientURL       string        // --etcd-client-url
	EtcdPeerURL         string        // --etcd-peer-url
	ReplAddr            string        // --repl-addr: replication listener (host:port)
	GossipAddr          string        // --gossip-addr: memberlist (host:port)
	GossipKey           string        // --gossip-key: base64 AES key encrypting gossip
	InitialCluster      string        // --initial-cluster: name=peerURL,...
	InitialClusterState string        // --initial-cluster-state: new|existing
	ClusterName         string        // --cluster-name
	LeaderTTL           time.Duration // --leader-ttl
	EtcdHeartbeat       time.Duration // --etcd-heartbeat
	EtcdElectionTimeout time.Duration // --etcd-election-timeout
	MaxBodyBytes        int64         // --max-body-bytes
	WALRetentionBytes   int64         // --wal-retention-bytes: 0 = no size bound
	WALRetentionAge     time.Duration // --wal-retention-age: 0 = no age bound
	WALSegmentBytes     int64         // --wal-segment-bytes: bound of one WAL segment file
	TokensFile          string        // --tokens-file: RBAC tokens (YAML); empty: auth off
	TLSCert, TLSKey     string        // --tls-cert, --tls-key: serve the API over HTTPS
	TLSCA               string        // --tls-ca: verify client certificates that clients present
	PeerTLSCert         string        // --peer-tls-cert: mutual TLS for replication and etcd peers
	PeerTLSKey          string        // --peer-tls-key
	PeerTLSCA           string        // --peer-tls-ca: the cluster CA peers must chain to
	LogLevel            string        // --log-level
	LogFormat           string        // --log-format: json|text
	// --memory-limit-bytes: the Go runtime's soft memory limit (0: none).
	// GOMEMLIMIT, when set, wins (memlimit.go).
	MemoryLimitBytes int64
}

// DefaultDataDir is the seed's default: $XDG_CACHE_HOME/autonomyops/orchestrator.
func DefaultDataDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		if home, err := os.UserHomeDir(); err == nil {
			base = filepath.Join(home, ".cache")
		} else {
			base = os.TempDir()
		}
	}
	return filepath.Join(base, "autonomyops", "orchestrator")
}

// DefaultConfig returns the development defaults: a single node on loopback
// for etcd and replication, the API on 0.0.0.0:8888. The etcd and election
// defaults are cluster.DefaultConfig's and the body limit api.DefaultConfig's:
// each package owns its own.
func DefaultConfig() Config {
	name, _ := os.Hostname()
	if name == "" {
		name = "node1"
	}
	cc, ac := cluster.DefaultConfig(), api.DefaultConfig()
	return Config{
		Name:                name,
		DataDir:             DefaultDataDir(),
		Listen:              "0.0.0.0:8888",
		EtcdClientURL:       cc.ClientURL,
		EtcdPeerURL:         cc.PeerURL,
		ReplAddr:            "127.0.0.1:7400",
		GossipAddr:          "127.0.0.1:7946",
		InitialClusterState: cc.InitialClusterState,
		ClusterName:         cc.ClusterName,
		LeaderTTL:           cc.LeaderTTL,
		EtcdHeartbeat:       cc.HeartbeatInterval,
		EtcdElectionTimeout: cc.ElectionTimeout,
		MaxBodyBytes:        ac.MaxBodyBytes,
		WALRetentionBytes:   8 << 30,
		WALSegmentBytes:     walrepl.DefaultSegmentBytes,
		LogLevel:            "info",
		LogFormat:           "json",
		MemoryLimitBytes:    DefaultMemoryLimit,
	}
}

// BindFlags registers every field as a flag on fs, defaulting to c's values.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Name, "name", c.Name, "this node's name, unique in the cluster (default: hostname)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "data directory: WAL, etcd member, node identity")
	fs.StringVar(&c.Listen, "listen", c.Listen, "REST API listen address host:port")
	fs.StringVar(&c.AdvertiseURL, "advertise-url", c.AdvertiseURL, "API URL that followers redirect clients to (default: http://<listen>, 127.0.0.1 for 0.0.0.0)")
	fs.StringVar(&c.EtcdClientURL, "etcd-client-url", c.EtcdClientURL, "embedded etcd client URL (listen and advertise)")
	fs.StringVar(&c.EtcdPeerURL, "etcd-peer-url", c.EtcdPeerURL, "embedded etcd peer URL (listen and advertise)")
	fs.StringVar(&c.ReplAddr, "repl-addr", c.ReplAddr, "WAL replication listen address host:port")
	fs.StringVar(&c.GossipAddr, "gossip-addr", c.GossipAddr, "memberlist gossip address host:port")
	fs.StringVar(&c.GossipKey, "gossip-key", c.GossipKey, "base64 16/24/32-byte key that encrypts gossip (all nodes the same)")
	fs.StringVar(&c.InitialCluster, "initial-cluster", c.InitialCluster, "etcd bootstrap: name=peerURL,... (empty: single-node cluster)")
	fs.StringVar(&c.InitialClusterState, "initial-cluster-state", c.InitialClusterState, "new (bootstrap) or existing (join)")
	fs.StringVar(&c.ClusterName, "cluster-name", c.ClusterName, "cluster name; scopes etcd keys /autonomy/<name>/")
	fs.DurationVar(&c.LeaderTTL, "leader-ttl", c.LeaderTTL, "leader session lease TTL (whole seconds)")
	fs.DurationVar(&c.EtcdHeartbeat, "etcd-heartbeat", c.EtcdHeartbeat, "etcd raft heartbeat interval")
	fs.DurationVar(&c.EtcdElectionTimeout, "etcd-election-timeout", c.EtcdElectionTimeout, "etcd raft election timeout")
	fs.StringVar(&c.TokensFile, "tokens-file", c.TokensFile, "YAML file of API tokens: tokens: [{name, role, sha256}] (empty: auth off)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate: serve the API over HTTPS")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM key of --tls-cert")
	fs.StringVar(&c.TLSCA, "tls-ca", c.TLSCA, "PEM CA: verify client certificates presented to the API")
	fs.StringVar(&c.PeerTLSCert, "peer-tls-cert", c.PeerTLSCert, "PEM certificate for mutual TLS with peers (replication, etcd peers)")
	fs.StringVar(&c.PeerTLSKey, "peer-tls-key", c.PeerTLSKey, "PEM key of --peer-tls-cert")
	fs.StringVar(&c.PeerTLSCA, "peer-tls-ca", c.PeerTLSCA, "PEM cluster CA: peers must present a certificate it signed")
	fs.Int64Var(&c.WALRetentionBytes, "wal-retention-bytes", c.WALRetentionBytes, "keep at most this many bytes of WAL frames; the oldest are trimmed (0: no size bound; the setting retention/max_bytes overrides it live)")
	fs.DurationVar(&c.WALRetentionAge, "wal-retention-age", c.WALRetentionAge, "trim frames older than this, e.g. 720h (0: no age bound; the setting retention/max_age overrides it live)")
	fs.Int64Var(&c.WALSegmentBytes, "wal-segment-bytes", c.WALSegmentBytes, "bound of one WAL segment file in bytes (a file may exceed it by one frame); retention deletes whole segments, so the segments in use are at most a quarter of --wal-retention-bytes when that is smaller")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest accepted ingest body in bytes (larger: 413; the setting ingest/max_body_bytes overrides it live)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (the cluster setting log/level overrides it live)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json (default, for journald and collectors) or text")
	fs.Int64Var(&c.MemoryLimitBytes, "memory-limit-bytes", c.MemoryLimitBytes, "soft limit of the Go runtime's memory: the garbage collector works harder near it instead of growing the heap (0: none; the environment variable GOMEMLIMIT, when set, wins)")
}

// LoadFile applies a YAML config file whose keys are flag names. Flags given
// on the command line win over the file. An unknown key is an error.
func LoadFile(path string, fs *pflag.FlagSet) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var m map[string]any
	// UseNumber keeps 1048576 from arriving as the float 1.048576e+06.
	if err := yaml.Unmarshal(b, &m, func(d *json.Decoder) *json.Decoder { d.UseNumber(); return d }); err != nil {
		return fmt.Errorf("--config %s: not valid YAML: %w", path, err)
	}
	for k, v := range m {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			return fmt.Errorf("--config %s: unknown key %q (keys are the serve flag names, e.g. data-dir, listen)", path, k)
		}
		if f.Changed {
			continue
		}
		val := fmt.Sprint(v)
		if v == nil {
			val = ""
		}
		if err := fs.Set(k, val); err != nil {
			return fmt.Errorf("--config %s: key %q: %w", path, k, err)
		}
	}
	return nil
}

// Validate checks what can be checked without side effects, naming the flag
// and the bad value.
func (c *Config) Validate() error {
	if c.Name == "" || strings.ContainsAny(c.Name, "/ =,") {
		return fmt.Errorf("--name=%q must be non-empty without '/', ' ', '=' or ','", c.Name)
	}
	if c.DataDir == "" {
		return errors.New("--data-dir is empty")
	}
	for flag, v := range map[string]string{"--listen": c.Listen, "--repl-addr": c.ReplAddr, "--gossip-addr": c.GossipAddr} {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%s=%q is not host:port: %v", flag, v, err)
		}
	}
	if c.WALRetentionBytes != 0 && c.WALRetentionBytes < 1<<20 {
		return fmt.Errorf("--wal-retention-bytes=%d must be 0 (off) or at least 1 MiB", c.WALRetentionBytes)
	}
	if c.WALSegmentBytes < walrepl.MinSegmentBytes || c.WALSegmentBytes > 1<<30 {
		return fmt.Errorf("--wal-segment-bytes=%d must be between %d and 1 GiB", c.WALSegmentBytes, walrepl.MinSegmentBytes)
	}
	if c.WALRetentionAge < 0 {
		return fmt.Errorf("--wal-retention-age=%s must not be negative", c.WALRetentionAge)
	}
	if c.MemoryLimitBytes != 0 && c.MemoryLimitBytes < MinMemoryLimit {
		return fmt.Errorf("--memory-limit-bytes=%d must be 0 (none) or at least %d (32 MiB)", c.MemoryLimitBytes, MinMemoryLimit)
	}
	if c.MaxBodyBytes < 1024 {
		return fmt.Errorf("--max-body-bytes=%d must be at least 1024", c.MaxBodyBytes)
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		return fmt.Errorf("--log-format=%q must be json or text", c.LogFormat)
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return err
	}
	return nil
}

// SegmentBytes is the WAL segment bound in effect: --wal-segment-bytes, but
// at most a quarter of --wal-retention-bytes, so that retention (which
// deletes whole sealed segments) keeps the directory within its bound plus
// one segment.
func (c *Config) SegmentBytes() int64 {
	n := c.WALSegmentBytes
	if c.WALRetentionBytes > 0 && c.WALRetentionBytes/4 < n {
		n = max(c.WALRetentionBytes/4, walrepl.MinSegmentBytes)
	}
	return n
}

// APIURL is the URL this node's API is reached at.
func (c *Config) APIURL() string {
	if c.AdvertiseURL != "" {
		return c.AdvertiseURL
	}
	host, port, _ := net.SplitHostPort(c.Listen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if c.TLSCert != "" {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port)
}
