package cluster

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestGossip_StoppedPeerIsDead: a peer that leaves (a clean stop) is shown
// dead, with the health it last gossiped, not dropped to "unknown"
// (docs/operations.md: "gossip dead"); "unknown" stays for a node never
// seen; a peer that comes back is alive again.
func TestGossip_StoppedPeerIsDead(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	start := func(name, addr string, last uint64) *Gossip {
		g, err := StartGossip(GossipConfig{Name: name, BindAddr: addr, Logger: log,
			Self: func() Health { return Health{Name: name, Role: "follower", LastSeq: last, FsyncedSeq: last} }})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a := start("a", freeAddr(t), 1)
	defer a.Close()
	bAddr := freeAddr(t)
	b := start("b", bAddr, 7)
	if _, err := b.Join([]string{a.cfg.BindAddr}); err != nil {
		t.Fatal(err)
	}
	waitState := func(name, want string) PeerHealth {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for a.State(name) != want {
			if time.Now().After(deadline) {
				t.Fatalf("a sees %s %s after 10 s, want %s", name, a.State(name), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return a.Peers()[name]
	}
	if p := waitState("b", "alive"); p.LastSeq != 7 {
		t.Fatalf("b alive with %+v, want LastSeq 7", p)
	}
	if s := a.State("nobody"); s != "unknown" {
		t.Fatalf("a node never seen: %s, want unknown", s)
	}

	b.Close()
	p := waitState("b", "dead")
	if p.LastSeq != 7 || p.Role != "follower" {
		t.Errorf("dead b keeps its last health: %+v", p)
	}
	if _, ok := a.Peers()["b"]; !ok {
		t.Error("Peers() drops the dead node")
	}

	b = start("b", bAddr, 9)
	defer b.Close()
	if _, err := b.Join([]string{a.cfg.BindAddr}); err != nil {
		t.Fatal(err)
	}
	if p := waitState("b", "alive"); p.LastSeq != 9 {
		t.Errorf("b back: %+v, want alive with LastSeq 9", p)
	}
}
