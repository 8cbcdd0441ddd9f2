package cluster

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/sirupsen/logrus"
)

// Health is what a node gossips about itself. It is advice for status and
// routing only: no commit or leadership decision reads it (DESIGN §6 rule 9).
type Health struct {
	Name       string `json:"n"`
	APIURL     string `json:"u"`
	Role       string `json:"r"`
	Epoch      uint64 `json:"e"`
	LastSeq    uint64 `json:"l"`
	FsyncedSeq uint64 `json:"f"`
	FailHard   string `json:"x,omitempty"`
	// Serving is what the node says of itself: ServingYes while it is the
	// leader that can commit (its epoch started, a replication majority
	// heard, the leader key held), ServingNo otherwise. A node of a version
	// that does not say leaves it ServingUnknown.
	Serving Serving `json:"s,omitempty"`
	// Version is the node's build version ("" from a version that does not
	// gossip it).
	Version string `json:"v,omitempty"`
}

// Serving is a node's own word on whether it serves as the leader.
type Serving uint8

// Values of Serving.
const (
	ServingUnknown Serving = iota // not said: a node of an older version
	ServingNo
	ServingYes
)

// PeerHealth is a gossiped node as memberlist sees it.
type PeerHealth struct {
	Health
	State string // alive, suspect, dead, left
}

// GossipConfig configures memberlist.
type GossipConfig struct {
	Name string
	// BindAddr is host:port for memberlist's TCP and UDP.
	BindAddr string
	// Key, if set, is a base64 AES key (16, 24 or 32 bytes) that encrypts gossip.
	Key    string
	Logger logrus.FieldLogger
	// Self returns this node's current health for its metadata.
	Self func() Health
}

// Gossip is this node's memberlist.
type Gossip struct {
	ml   *memberlist.Memberlist
	view *memberView
	cfg  GossipConfig
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	logw *logrusWriter
}

// DecodeGossipKey validates a --gossip-key value.
func DecodeGossipKey(k string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		return nil, fmt.Errorf("--gossip-key is not base64: %v", err)
	}
	if l := len(b); l != 16 && l != 24 && l != 32 {
		return nil, fmt.Errorf("--gossip-key decodes to %d bytes; it must be 16, 24 or 32 (e.g. `head -c32 /dev/urandom | base64`)", l)
	}
	return b, nil
}

type gossipDelegate struct{ self func() Health }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(d.self())
	if len(b) > limit {
		h := d.self()
		h.FailHard = h.FailHard[:min(len(h.FailHard), 64)]
		h.APIURL = ""
		b, _ = json.Marshal(h)
	}
	return b
}
func (gossipDelegate) NotifyMsg([]byte)                           {}
func (gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (gossipDelegate) LocalState(join bool) []byte                { return nil }
func (gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// StartGossip starts memberlist on cfg.BindAddr. Timing is tuned for a LAN
// of three appliances: failures are suspected within about a second.
func StartGossip(cfg GossipConfig) (*Gossip, error) {
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("--gossip-addr=%q: %v", cfg.BindAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("--gossip-addr=%q: bad port", cfg.BindAddr)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	mc.ProbeInterval = 300 * time.Millisecond
	mc.ProbeTimeout = 150 * time.Millisecond
	mc.GossipInterval = 100 * time.Millisecond
	mc.SuspicionMult = 2
	mc.PushPullInterval = 10 * time.Second
	mc.Delegate = gossipDelegate{self: cfg.Self}
	view := &memberView{nodes: map[string]PeerHealth{}}
	mc.Events = view
	lw := &logrusWriter{log: cfg.Logger.WithField("component", "memberlist")}
	mc.Logger = log.New(lw, "", 0)
	if cfg.Key != "" {
		key, err := DecodeGossipKey(cfg.Key)
		if err != nil {
			return nil, err
		}
		mc.SecretKey = key
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: starting gossip on %s: %w", cfg.BindAddr, err)
	}
	g := &Gossip{ml: ml, view: view, cfg: cfg, stop: make(chan struct{}), logw: lw}
	g.wg.Add(1)
	go g.refreshMeta()
	return g, nil
}

// refreshMeta re-broadcasts this node's metadata as its positions move.
func (g *Gossip) refreshMeta() {
	defer g.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var last Health
	for {
		select {
		case <-t.C:
		case <-g.stop:
			return
		}
		if h := g.cfg.Self(); h != last {
			last = h
			g.ml.UpdateNode(time.Second)
		}
	}
}

// Join contacts the given gossip addresses (from the etcd registry).
func (g *Gossip) Join(addrs []string) (int, error) { return g.ml.Join(addrs) }

// memberView is memberlist's membership as its event delegate reports it.
// memberlist's Members() hands out pointers into its own state, which it
// keeps writing (Meta at every update), so reading them races; the event
// callbacks run under memberlist's lock, so the copies made there are safe.
// memberlist reports no suspicion through events, and the State field of its
// Node is never set: a node is alive from its join until it is declared dead
// or leaves (one event, NotifyLeave, for both), and dead from then on, with
// the last health it gossiped, until it joins again. "unknown" is left for a
// node this one has never seen in gossip.
type memberView struct {
	mu    sync.Mutex
	nodes map[string]PeerHealth
}

func (v *memberView) put(n *memberlist.Node) {
	var h Health
	json.Unmarshal(n.Meta, &h)
	h.Name = n.Name
	v.mu.Lock()
	v.nodes[n.Name] = PeerHealth{Health: h, State: "alive"}
	v.mu.Unlock()
}

func (v *memberView) NotifyJoin(n *memberlist.Node)   { v.put(n) }
func (v *memberView) NotifyUpdate(n *memberlist.Node) { v.put(n) }
func (v *memberView) NotifyLeave(n *memberlist.Node) {
	v.mu.Lock()
	if p, ok := v.nodes[n.Name]; ok {
		p.State = "dead"
		v.nodes[n.Name] = p
	} else {
		v.nodes[n.Name] = PeerHealth{Health: Health{Name: n.Name}, State: "dead"}
	}
	v.mu.Unlock()
}

// Peers returns every node gossip has seen, this one included: alive, or
// dead once memberlist declared it dead or saw it leave (see memberView).
func (g *Gossip) Peers() map[string]PeerHealth {
	g.view.mu.Lock()
	defer g.view.mu.Unlock()
	out := make(map[string]PeerHealth, len(g.view.nodes))
	for name, p := range g.view.nodes {
		out[name] = p
	}
	return out
}

// State returns name's gossip state: alive; dead once memberlist has
// declared it dead or seen it leave (see memberView); unknown for a node
// never seen in gossip.
func (g *Gossip) State(name string) string {
	g.view.mu.Lock()
	defer g.view.mu.Unlock()
	if p, ok := g.view.nodes[name]; ok {
		return p.State
	}
	return "unknown"
}

// Close leaves the cluster and stops memberlist. Idempotent.
func (g *Gossip) Close() {
	g.once.Do(func() {
		g.logw.closing.Store(true)
		close(g.stop)
		g.wg.Wait()
		g.ml.Leave(500 * time.Millisecond)
		g.ml.Shutdown()
	})
}

// logrusWriter turns memberlist's log.Logger lines ("[WARN] memberlist: ...")
// into logrus entries at the matching level. Once the node is leaving
// (closing), memberlist's complaints about its own sockets being closed are
// expected and logged at debug: a clean stop logs no error.
type logrusWriter struct {
	log     logrus.FieldLogger
	closing atomic.Bool
}

func (w *logrusWriter) Write(p []byte) (int, error) {
	s := strings.TrimRight(string(p), "\r\n")
	if w.closing.Load() && strings.Contains(s, "use of closed network connection") {
		w.log.WithField("memberlist_line", s).Debug("memberlist: socket closed while leaving")
		return len(p), nil
	}
	if m, ok := strings.CutPrefix(s, "[ERR] "); ok {
		w.log.Error(m)
	} else if m, ok := strings.CutPrefix(s, "[WARN] "); ok {
		w.log.Warn(m)
	} else if m, ok := strings.CutPrefix(s, "[INFO] "); ok {
		w.log.Info(m)
	} else if m, ok := strings.CutPrefix(s, "[DEBUG] "); ok {
		w.log.Debug(m)
	} else {
		w.log.Info(s)
	}
	return len(p), nil
}

var _ io.Writer = (*logrusWriter)(nil)
