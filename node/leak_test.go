package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/node/proctest"
	"github.com/autonomyops/orchestrator/test/leak"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives the tests. Most
// tests here run the node as a separate process; TestRun_joinsItsGoroutines
// runs it in this one.
func TestMain(m *testing.M) { leak.VerifyTestMain(m, proctest.Client) }

// TestRun_joinsItsGoroutines runs a single node in this process until it
// is healthy, stops it, and checks that every goroutine it started (its
// own, etcd's, memberlist's, the API server's) ended with it.
func TestRun_joinsItsGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir = "n1", filepath.Join(t.TempDir(), "data")
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cfg.EtcdClientURL = fmt.Sprintf("http://127.0.0.1:%d", proctest.FreePort(t))
	cfg.EtcdPeerURL = fmt.Sprintf("http://127.0.0.1:%d", proctest.FreePort(t))
	cfg.ReplAddr = fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cfg.GossipAddr = fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cfg.LogLevel = "warn"
	log := logrus.New()
	log.SetOutput(io.Discard)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, log) }()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get("http://" + cfg.Listen + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("Run returned before the node was healthy: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatal("the node did not become healthy within 60s")
		}
	}
	hc.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after a requested stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context ending")
	}
	goleak.VerifyNone(t, before)
}
