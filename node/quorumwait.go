package node

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/cluster"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
)

// Reporting while the etcd member waits for a quorum of --initial-cluster at
// start (a fresh node whose peers are not up yet stays there, and systemd
// shows the unit "activating" meanwhile).
const (
	// quorumWaitGrace: a start that reaches its quorum this fast (a restart
	// with its peers up) reports nothing.
	quorumWaitGrace = time.Second
	// quorumWaitProbe is how often the peers' etcd peer ports are probed.
	quorumWaitProbe = time.Second
	// quorumWaitDial bounds one probe (a firewall that drops packets).
	quorumWaitDial = 500 * time.Millisecond
)

// quorumWait is the state reported while waiting: which members of
// --initial-cluster answer on their etcd peer port (this node counts as
// reachable).
type quorumWait struct {
	members     int
	reachable   int
	unreachable []string // "n2 (10.0.0.12:2380)", sorted
}

func (q quorumWait) need() int { return q.members/2 + 1 }

// status is the sd_notify STATUS= text, shown by `systemctl status`.
func (q quorumWait) status() string {
	s := fmt.Sprintf("waiting for quorum (%d of %d reachable)", q.reachable, q.members)
	if q.reachable < q.need() {
		s += fmt.Sprintf("; %d needed, no answer from %s", q.need(), strings.Join(q.unreachable, ", "))
	}
	return s
}

// waitForQuorumReport probes the other members of --initial-cluster every
// quorumWaitProbe until ctx ends (the member became ready, or the start was
// abandoned). From quorumWaitGrace on, it tells systemd (STATUS=) and the log
// (one line) how many are reachable, and again only when that changes. It
// returns whether it reported anything. With no other member (a single-node
// cluster) it does nothing.
func waitForQuorumReport(ctx context.Context, cfg Config, log logrus.FieldLogger) bool {
	peers := map[string]string{} // name → host:port of its etcd peer URL
	if cfg.InitialCluster != "" {
		ic, err := cluster.ParseInitialCluster(cfg.InitialCluster)
		if err != nil {
			return false // Validate has refused it already
		}
		for name, u := range ic {
			if name == cfg.Name {
				continue
			}
			if pu, err := url.Parse(u); err == nil {
				peers[name] = pu.Host
			}
		}
	}
	if len(peers) == 0 {
		return false
	}
	t := time.NewTimer(quorumWaitGrace)
	defer t.Stop()
	var last *quorumWait
	for {
		select {
		case <-ctx.Done():
			return last != nil
		case <-t.C:
		}
		q := probePeers(ctx, peers)
		if ctx.Err() != nil {
			return last != nil
		}
		if last == nil || q.reachable != last.reachable || strings.Join(q.unreachable, ",") != strings.Join(last.unreachable, ",") {
			daemon.SdNotify(false, "STATUS="+q.status())
			hint := "start the other nodes of --initial-cluster, or open their etcd peer port (TCP) in the firewall"
			if q.reachable >= q.need() {
				hint = "enough peers answer on their etcd peer port; if this lasts, read their logs (--initial-cluster, --cluster-name and the peer certificates must match)"
			}
			log.WithFields(logrus.Fields{"reachable": q.reachable, "members": q.members, "needed": q.need(),
				"unreachable": strings.Join(q.unreachable, ", ")}).
				Warn("WAITING_FOR_QUORUM: " + q.status() + ": " + hint)
			last = &q
		}
		t.Reset(quorumWaitProbe)
	}
}

// probePeers dials every peer's etcd peer port at once.
func probePeers(ctx context.Context, peers map[string]string) quorumWait {
	type res struct {
		name, addr string
		ok         bool
	}
	ch := make(chan res, len(peers))
	for name, addr := range peers {
		go func() {
			d := net.Dialer{Timeout: quorumWaitDial}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
			}
			ch <- res{name, addr, err == nil}
		}()
	}
	q := quorumWait{members: len(peers) + 1, reachable: 1}
	for range peers {
		r := <-ch
		if r.ok {
			q.reachable++
		} else {
			q.unreachable = append(q.unreachable, fmt.Sprintf("%s (%s)", r.name, r.addr))
		}
	}
	sort.Strings(q.unreachable)
	return q
}
