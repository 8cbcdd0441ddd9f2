package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/node/datadir"
	"github.com/autonomyops/orchestrator/settings"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
)

// Node is one running autonomy-orchestrator: the composition of the WAL,
// its replica, the etcd member and the API.
type Node struct {
	cfg     Config
	log     *logrus.Logger
	wal     *walrepl.WAL
	replica *walrepl.Replica
	// transport remembers peers that spoke a replication protocol version
	// this node does not (the peer_protocol_unsupported warning).
	transport *walrepl.TCPTransport
	member    *cluster.Member
	gossip    *cluster.Gossip
	ids       *idIndex
	fleet     *api.Fleet
	metrics   *metrics
	quorum    quorumView
	live      *settings.Live // the cluster settings this node applies (settings.go)
	tokens    *api.Tokens    // nil: auth off; replaced in place on reload
	tls       *tlsConfigs
	trims     trimGate // a snapshot holds retention (snapshot.go)
	// memWarned is the (memory limit, idempotency bytes) pair last warned
	// about (memlimit.go); only applySettings touches it.
	memWarned [2]int64

	mu         sync.Mutex
	leader     *cluster.LeaderInfo
	stepDownFn context.CancelFunc // ends the current Lead, if leading
}

// stepDown ends this node's leadership now (planned failover).
func (n *Node) stepDown() {
	n.mu.Lock()
	f := n.stepDownFn
	n.mu.Unlock()
	if f != nil {
		f()
	}
}

// Run starts the node and blocks until ctx ends (graceful stop, nil) or a
// fatal error. A *walrepl.RecoveryError means the WAL failed its recovery
// checks: the caller must exit with walrepl.ExitFailHard.
func Run(ctx context.Context, cfg Config, log *logrus.Logger) error {
	return run(ctx, cfg, log, nil)
}

// run is Run; every receive on reload re-reads the tokens file and the TLS
// files (SIGHUP).
func run(ctx context.Context, cfg Config, log *logrus.Logger, reload <-chan os.Signal) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// Before anything is written to the data directory.
	if err := checkServeUser(cfg.DataDir, os.Geteuid(), nil); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("node: creating --data-dir %s: %w", cfg.DataDir, err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Unlock()

	initialized, err := checkIdentity(cfg.DataDir, cfg.Name, cfg.ClusterName)
	if err != nil {
		return err
	}
	wopts := walrepl.DefaultOptions(filepath.Join(cfg.DataDir, datadir.TelemetryDir))
	wopts.Initialized = initialized
	wopts.SegmentBytes = cfg.SegmentBytes()
	wopts.NewAsLearner = cfg.InitialClusterState == "existing"
	wopts.Logger = log
	met := newMetrics()
	wopts.OnFsync = func(d time.Duration) { met.fsync.Observe(d.Seconds()) }
	if wopts.LegacyUpgrade, err = walrepl.ParseEnvBool(walrepl.EnvLegacyUpgrade, os.Getenv(walrepl.EnvLegacyUpgrade)); err != nil {
		return err
	}
	if wopts.OperatorReset, err = walrepl.ParseEnvBool(walrepl.EnvOperatorReset, os.Getenv(walrepl.EnvOperatorReset)); err != nil {
		return err
	}
	wal, rep, err := walrepl.Open(wopts)
	if err != nil {
		return err
	}
	defer wal.Close()
	log.WithFields(logrus.Fields{"dir": rep.Dir, "first_seq": rep.FirstSeq, "last_seq": rep.LastSeq, "safe_seq": rep.SafeSeq,
		"bytes": rep.FileSize, "segments": len(rep.Segments), "segment_bytes": wopts.SegmentBytes, "created": rep.Created,
		"upgraded": rep.Upgraded}).Info("WAL_RECOVERED")
	if !initialized {
		if err := writeIdentity(cfg.DataDir, cfg.Name, cfg.ClusterName); err != nil {
			return fmt.Errorf("node: writing %s: %w", datadir.IdentityFile, err)
		}
	}

	n := &Node{cfg: cfg, log: log, wal: wal, fleet: api.NewFleet(), metrics: met, live: settings.NewLive(settingsDefaults(cfg))}
	v := n.live.Values()
	n.ids = newIDIndex(v.IdempotencyWindow, v.IdempotencyBytes)
	if rep.Reset || rep.Created {
		// A new log: a checkpoint left in the directory describes another one.
		os.Remove(filepath.Join(wal.Dir(), CheckpointFile))
	}
	if err := n.loadCheckpoint(); err != nil {
		return err
	}
	met.n = n
	if err := prometheus.Register(met); err != nil {
		return fmt.Errorf("node: registering metrics: %w", err)
	}
	defer prometheus.Unregister(met)
	if cfg.TokensFile != "" {
		if n.tokens, err = api.LoadTokens(cfg.TokensFile); err != nil {
			return err
		}
	} else {
		log.Warn("AUTH_DISABLED: no --tokens-file; every client has the admin role (set --tokens-file for production)")
	}
	tlsc, err := buildTLS(&cfg)
	if err != nil {
		return err
	}
	n.tls = tlsc
	replLn, err := net.Listen("tcp", cfg.ReplAddr)
	if err != nil {
		return fmt.Errorf("node: --repl-addr %s: %w", cfg.ReplAddr, err)
	}
	if tlsc.peerServer != nil {
		replLn = tls.NewListener(replLn, tlsc.peerServer)
	}
	defer replLn.Close()
	transport := walrepl.NewTCPTransport(tlsc.peerClient)
	n.transport = transport
	ccfg := cluster.DefaultConfig()
	ccfg.Name, ccfg.ClusterName = cfg.Name, cfg.ClusterName
	ccfg.DataDir = filepath.Join(cfg.DataDir, datadir.EtcdDir)
	ccfg.ClientURL, ccfg.PeerURL = cfg.EtcdClientURL, cfg.EtcdPeerURL
	ccfg.InitialCluster, ccfg.InitialClusterState = cfg.InitialCluster, cfg.InitialClusterState
	ccfg.LeaderTTL, ccfg.HeartbeatInterval, ccfg.ElectionTimeout = cfg.LeaderTTL, cfg.EtcdHeartbeat, cfg.EtcdElectionTimeout
	ccfg.Logger, ccfg.Debug = log, cfg.LogLevel == "debug"
	if tlsc.peerServer != nil {
		ccfg.PeerTLS = &cluster.TLSFiles{Cert: cfg.PeerTLSCert, Key: cfg.PeerTLSKey, CA: cfg.PeerTLSCA}
	}
	if err := ccfg.Validate(); err != nil {
		return err
	}
	startCtx, cancelStart := context.WithTimeout(ctx, 2*time.Minute)
	waitCtx, endWait := context.WithCancel(startCtx)
	waited := make(chan bool, 1)
	go func() { waited <- waitForQuorumReport(waitCtx, cfg, log) }()
	n.member, err = cluster.StartMember(startCtx, ccfg)
	endWait()
	reportedWait := <-waited
	cancelStart()
	if err != nil {
		return err
	}
	if reportedWait {
		log.WithField("node", cfg.Name).Info("QUORUM_REACHED: the etcd member joined a quorum of --initial-cluster")
	}
	defer n.member.Close()
	// Before anything reads an epoch: a restored node loads the snapshot's
	// etcd state and every node the cluster's epoch base.
	if err := n.applyRestoreSeed(ctx); err != nil {
		return err
	}

	rcfg := walrepl.DefaultReplicaConfig(cfg.Name, wal, transport)
	rcfg.Logger = log
	// A reset WAL, or a new one joining a cluster that already has history,
	// holds none of the committed frames: it starts as a learner.
	rcfg.JoinAsLearner = rep.Reset || (rep.Created && cfg.InitialClusterState == "existing")
	rcfg.NewLog = rep.Created
	// A rolled-back disk (an old copy restored) keeps its WAL id but lacks
	// frames it acknowledged: etcd remembers the highest Seq the leader saw it
	// hold. Such a node must not count until it holds them again (rule 7).
	{
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		pos, ok, err := n.member.WALPosOf(pctx, cfg.Name)
		pcancel()
		if err != nil {
			return fmt.Errorf("node: reading this node's recorded WAL position from etcd: %w", err)
		}
		if ok && pos.WALID == walrepl.IDString(wal.ID()) && rep.LastSeq < pos.Durable {
			log.WithFields(logrus.Fields{"last_seq": rep.LastSeq, "recorded_durable": pos.Durable, "wal_id": pos.WALID}).
				Warn("WAL_ROLLED_BACK: this WAL ends below what this node was seen to hold; it rejoins as a learner")
			rcfg.JoinAsLearner = true
		}
	}
	me := cluster.NodeInfo{Name: cfg.Name, APIURL: cfg.APIURL(), ReplAddr: cfg.ReplAddr, GossipAddr: cfg.GossipAddr}
	if rep.Created && !rcfg.JoinAsLearner {
		// An empty WAL may be starting beside nodes restored from a
		// snapshot, which seed the restore marker before they register:
		// give them a moment to, so that the check below sees it. This
		// node registers first, so that empty peers do not wait for it.
		if err := n.member.PutNodeInfo(ctx, me); err != nil {
			return fmt.Errorf("node: registering in etcd: %w", err)
		}
		n.waitPeersRegistered(ctx, peersRegisteredWait)
	}
	{
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		lacks, safe, err := n.lacksRestoredFrames(pctx)
		pcancel()
		if err != nil {
			return fmt.Errorf("node: reading the cluster's restore marker from etcd: %w", err)
		}
		if lacks && !rcfg.JoinAsLearner {
			log.WithFields(logrus.Fields{"last_seq": rep.LastSeq, "restored_safe_seq": safe}).
				Warn("WAL_BELOW_RESTORED_SNAPSHOT: this cluster was restored from a snapshot this WAL does not hold; it joins as a learner")
			rcfg.JoinAsLearner = true
		}
	}
	// Promise at least the current leader's epoch before serving anything: a
	// node whose promise was lost (new disk, reset) must not be recruited by a
	// deposed leader of an older epoch. Always safe: it would refuse older
	// epochs once it heard the current leader anyway.
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	rcfg.MinEpoch, err = n.member.EpochFloor(fctx)
	fcancel()
	if err != nil {
		return fmt.Errorf("node: reading the current epoch from etcd: %w", err)
	}
	if n.replica, err = walrepl.NewReplica(rcfg); err != nil {
		return err
	}
	defer n.replica.Close() // before the WAL closes (deferred earlier)

	if err := n.member.PutNodeInfo(ctx, me); err != nil {
		return fmt.Errorf("node: registering in etcd: %w", err)
	}
	n.gossip, err = cluster.StartGossip(cluster.GossipConfig{Name: cfg.Name, BindAddr: cfg.GossipAddr, Key: cfg.GossipKey,
		Logger: log, Self: n.selfHealth})
	if err != nil {
		return err
	}
	defer n.gossip.Close()
	if rep.Reset {
		n.audit(ctx, "wal_reset", "operator", map[string]any{"via": rep.ResetVia, "dir": rep.Dir})
	}

	stored, storedRev := n.loadSettings(ctx)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("node: --listen %s: %w", cfg.Listen, err)
	}
	if tlsc.api != nil {
		ln = tls.NewListener(ln, tlsc.api)
	}
	acfg := api.DefaultConfig()
	acfg.MaxBodyBytes, acfg.Logger, acfg.Tokens, acfg.Settings = cfg.MaxBodyBytes, log, n.tokens, n.live
	acfg.Metrics = promhttp.Handler()
	acfg.Instruments = api.NewMetrics()
	if err := prometheus.Register(acfg.Instruments); err != nil {
		return fmt.Errorf("node: registering API metrics: %w", err)
	}
	defer prometheus.Unregister(acfg.Instruments)
	handler, err := api.NewHandler(acfg, api.Backends{Node: n, Cluster: n, Ingest: n, Log: wal, Fleet: n.fleet,
		Settings: etcdSettings{n}, Audit: n, Members: n, Failover: n, Snapshot: n})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Every goroutine below is owned by g: they end when runCtx does, and
	// Run returns only after g.wait().
	var g group
	g.goFunc(func() {
		// A failed WAL is fatal on every role (DESIGN §6 rule 8): exit so the
		// supervisor restarts the node and recovery repairs or refuses it.
		for {
			ch := wal.Changed()
			if err := wal.Err(); err != nil {
				cancel(fmt.Errorf("node: %w", err))
				return
			}
			select {
			case <-ch:
			case <-runCtx.Done():
				return
			}
		}
	})
	g.goFunc(func() { n.recordWALPositions(runCtx) })
	g.goFunc(func() {
		wal.RunRetention(runCtx, walrepl.Retention{BeforeTrim: n.beforeTrim,
			Bounds: func() (int64, time.Duration) { v := n.live.Values(); return v.RetentionBytes, v.RetentionAge }})
	})
	g.goFunc(func() { n.ids.follow(runCtx, wal, n.replica) })
	g.goFunc(func() { n.joinGossip(runCtx) })
	g.goFunc(func() { n.detectLeaderDeath(runCtx) })
	g.goFunc(func() {
		if err := transport.Serve(runCtx, replLn, n.replica, log); err != nil {
			cancel(fmt.Errorf("node: replication listener: %w", err))
		}
	})
	g.goFunc(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("node: API server: %w", err))
		}
	})
	g.goFunc(func() { n.watchLeader(runCtx) })
	g.goFunc(func() { n.probeQuorum(runCtx) })
	g.goFunc(func() { n.countServedEpochs(runCtx) })
	g.goFunc(func() { n.campaignLoop(runCtx, me, cancel) })
	g.goFunc(func() { n.watchSettings(runCtx, stored, storedRev) })
	g.goFunc(func() { n.serveReloads(runCtx, reload) })

	daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS=ready: quorum reached, API on "+cfg.APIURL())
	log.WithFields(logrus.Fields{"node": cfg.Name, "api": cfg.APIURL(), "listen": cfg.Listen, "version": Version}).Info("NODE_READY")
	stopWatchdog := startWatchdog(runCtx)

	select {
	case <-runCtx.Done():
	case err := <-n.member.Err():
		cancel(fmt.Errorf("node: etcd member failed: %w", err))
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	stopWatchdog()
	cause := context.Cause(runCtx)
	if errors.Is(cause, context.Canceled) && ctx.Err() != nil {
		cause = nil // a requested stop
	}
	cancel(nil)
	shutCtx, cancelShut := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(shutCtx)
	cancelShut()
	g.wait()
	if cause == nil && n.wal.Err() == nil {
		// A clean stop leaves the id index in the checkpoint, so the next
		// start reads it instead of scanning the whole WAL for ids: that
		// scan held the first write after a restart of a 1 GiB WAL for
		// 16-66 s (make bench, startup).
		if err := n.writeStopCheckpoint(); err != nil {
			log.WithError(err).Warn("CHECKPOINT_NOT_WRITTEN: the next start rebuilds the id index from the WAL")
		}
	}
	log.WithField("node", cfg.Name).Info("NODE_STOPPED")
	return cause
}

// campaignLoop campaigns for leadership and leads while elected. It stops
// leading the moment the etcd session ends (self-fencing).
func (n *Node) campaignLoop(ctx context.Context, me cluster.NodeInfo, fatal context.CancelCauseFunc) {
	for ctx.Err() == nil {
		if err := n.wal.Err(); err != nil {
			fatal(err)
			return
		}
		l, err := n.member.Campaign(ctx, me)
		if err != nil {
			if ctx.Err() == nil {
				n.log.WithError(err).Warn("CAMPAIGN_FAILED")
				walrepl.Sleep(ctx, 500*time.Millisecond)
			}
			continue
		}
		if to, ok := n.stepAside(ctx); ok {
			n.log.WithFields(logrus.Fields{"epoch": l.Epoch, "target": to}).Info("FAILOVER_STEP_ASIDE: a planned failover names another node")
			rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
			l.Resign(rctx)
			rcancel()
			walrepl.Sleep(ctx, 300*time.Millisecond)
			continue
		}
		n.clearFailoverHint(ctx)
		voters, peers, err := n.peerSet(ctx)
		if err == nil {
			lctx, lcancel := context.WithCancel(ctx)
			n.mu.Lock()
			n.stepDownFn = lcancel
			n.mu.Unlock()
			// This leadership's goroutines end with lctx and are joined
			// before the next campaign.
			var lg group
			lg.goFunc(func() {
				select {
				case <-l.Done():
					n.log.WithField("epoch", l.Epoch).Warn("LEADER_SESSION_LOST: stopping as leader")
				case <-lctx.Done():
				}
				lcancel()
			})
			peerAddrs := map[string]string{}
			for _, p := range peers {
				peerAddrs[p.Name] = p.Addr
			}
			lg.goFunc(func() { n.watchMembership(lctx, voters, peerAddrs, lcancel) })
			lg.goFunc(func() { n.recordEpochVoters(lctx, l.Epoch, voters) })
			n.log.WithFields(logrus.Fields{"epoch": l.Epoch, "voters": voters}).Info("ELECTED_LEADER")
			err = n.replica.Lead(lctx, l.Epoch, voters, peers)
			lcancel()
			lg.wait()
			n.mu.Lock()
			n.stepDownFn = nil
			n.mu.Unlock()
		}
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		l.Resign(rctx)
		rcancel()
		if werr := n.wal.Err(); werr != nil {
			fatal(werr)
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.log.WithError(err).Warn("LEADERSHIP_ENDED")
		backoff := 200 * time.Millisecond
		if errors.Is(err, walrepl.ErrIsLearner) {
			backoff = 2 * time.Second
		}
		walrepl.Sleep(ctx, backoff)
	}
}

// peerSet reads the voters (etcd's voting members) and every other node's
// replication address from etcd.
func (n *Node) peerSet(ctx context.Context) ([]string, []walrepl.Peer, error) {
	voters, err := n.member.Voters(ctx)
	if err != nil {
		return nil, nil, err
	}
	infos, err := n.member.NodeInfos(ctx)
	if err != nil {
		return nil, nil, err
	}
	var peers []walrepl.Peer
	seen := map[string]string{infos[n.cfg.Name].ReplAddr: n.cfg.Name}
	for _, name := range voters {
		if name == n.cfg.Name {
			continue
		}
		addr := infos[name].ReplAddr
		if other, dup := seen[addr]; dup && addr != "" {
			return nil, nil, fmt.Errorf("node: %s and %s register the same --repl-addr %s; each node needs its own", name, other, addr)
		}
		seen[addr] = name
		peers = append(peers, walrepl.Peer{Name: name, Addr: addr})
	}
	sort.Strings(voters)
	return voters, peers, nil
}

func (n *Node) watchLeader(ctx context.Context) {
	for li := range n.member.WatchLeader(ctx) {
		n.mu.Lock()
		n.leader = li
		n.mu.Unlock()
		if li != nil {
			n.log.WithFields(logrus.Fields{"leader": li.Name, "epoch": li.Epoch}).Info("LEADER_OBSERVED")
		} else {
			n.log.Info("NO_LEADER")
		}
	}
}

func startWatchdog(ctx context.Context) func() {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return func() {}
	}
	wctx, cancel := context.WithCancel(ctx)
	var g group
	g.goFunc(func() {
		t := time.NewTicker(interval / 3)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			case <-wctx.Done():
				return
			}
		}
	})
	return func() { cancel(); g.wait() }
}
