package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/cluster"
	"github.com/spf13/pflag"
)

func TestLoadFile_keysAreFlagNames(t *testing.T) {
	cfg := DefaultConfig()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	cfg.BindFlags(fs)
	if err := fs.Parse([]string{"--listen", "127.0.0.1:9999"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("name: n7\nmax-body-bytes: 1048576\nlisten: 0.0.0.0:1\nleader-ttl: 3s\n"), 0o600)
	if err := LoadFile(path, fs); err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "n7" || cfg.MaxBodyBytes != 1048576 || cfg.LeaderTTL.String() != "3s" {
		t.Fatalf("config not applied: %+v", cfg)
	}
	if cfg.Listen != "127.0.0.1:9999" {
		t.Fatalf("a command-line flag must win over the file, got listen=%s", cfg.Listen)
	}
	os.WriteFile(path, []byte("nmae: typo\n"), 0o600)
	if err := LoadFile(path, fs); err == nil || !strings.Contains(err.Error(), `unknown key "nmae"`) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestConfig_ValidateNamesFlag(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "nonsense"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("got %v", err)
	}
}

func TestConfig_ValidateRefusesUnknownLogLevel(t *testing.T) {
	for _, lvl := range []string{"verbose", "warning", "trace", ""} {
		cfg := DefaultConfig()
		cfg.LogLevel = lvl
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--log-level") || !strings.Contains(err.Error(), "debug, info, warn, error") {
			t.Errorf("--log-level=%q: %v", lvl, err)
		}
	}
}

// TestDefaultConfig_takesEtcdDefaultsFromCluster: the etcd and election
// defaults are cluster's, not retyped here.
func TestDefaultConfig_takesEtcdDefaultsFromCluster(t *testing.T) {
	c, cc := DefaultConfig(), cluster.DefaultConfig()
	if c.EtcdClientURL != cc.ClientURL || c.EtcdPeerURL != cc.PeerURL || c.InitialClusterState != cc.InitialClusterState ||
		c.ClusterName != cc.ClusterName || c.LeaderTTL != cc.LeaderTTL || c.EtcdHeartbeat != cc.HeartbeatInterval ||
		c.EtcdElectionTimeout != cc.ElectionTimeout {
		t.Fatalf("node defaults %+v differ from cluster's %+v", c, cc)
	}
	if c.MaxBodyBytes != api.DefaultConfig().MaxBodyBytes {
		t.Fatalf("--max-body-bytes default %d differs from api's", c.MaxBodyBytes)
	}
}

// TestConfig_segmentBytes: --wal-segment-bytes is validated, and the bound in
// effect is at most a quarter of the retention bound, so retention (whole
// segments) keeps the directory within its bound.
func TestConfig_segmentBytes(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.WALSegmentBytes != 64<<20 || cfg.SegmentBytes() != 64<<20 {
		t.Fatalf("default %d, in effect %d", cfg.WALSegmentBytes, cfg.SegmentBytes())
	}
	cfg.WALRetentionBytes = 1 << 20
	if got := cfg.SegmentBytes(); got != 256<<10 {
		t.Fatalf("with a 1 MiB retention bound the segments are %d bytes", got)
	}
	cfg.WALRetentionBytes = 0
	if got := cfg.SegmentBytes(); got != 64<<20 {
		t.Fatalf("without a retention bound the segments are %d bytes", got)
	}
	cfg.WALSegmentBytes = 100
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--wal-segment-bytes=100") {
		t.Fatalf("got %v", err)
	}
}
