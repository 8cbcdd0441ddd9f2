package ctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

// `demo --local` (alias `demo gazebo --local`, the runbook's section 4
// promise): an in-process three-node cluster in a temporary directory,
// needing no service and no etcd, that narrates ingest, a leader crash and
// the failover, zero loss, a planned failover, and one node's WAL reset and
// re-replication. It exits 0 only if every acknowledged event is found on
// every node at its Seq.

// DefaultDemoEvents is how many events the demo's first ingest sends.
const DefaultDemoEvents = 1000

// demoTimeout bounds the whole demo; it takes a few seconds.
const demoTimeout = 3 * time.Minute

// demoStepTimeout bounds one election or one wait for replication.
const demoStepTimeout = 20 * time.Second

type demoOptions struct {
	local   bool
	events  int
	keep    bool
	verbose bool
}

func (in *invocation) demoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo [gazebo] --local",
		Short: "Run an in-process three-node cluster and narrate a crash failover, zero loss, a planned failover and a WAL reset",
		Long: "demo --local builds a three-node cluster inside this process, in a temporary directory: three real fsynced\n" +
			"WALs replicating over an in-memory network, with the demo standing in for etcd (it elects leaders and hands\n" +
			"out increasing epochs). No orchestrator service, no etcd, no containers. In under a minute it ingests events,\n" +
			"kills the leader under load and elects another (printing the failover time), proves that every acknowledged\n" +
			"event survived, hands leadership over in a planned failover, and resets one node's WAL and watches it\n" +
			"re-replicate with nothing lost. Exit 0 only if nothing acknowledged was lost.\n\n" +
			"`demo gazebo --local` is the same demo (the runbook's in-process mode).",
		Args: usageArgs(func(_ *cobra.Command, args []string) error {
			if len(args) > 1 || (len(args) == 1 && args[0] != "gazebo") {
				return fmt.Errorf("unknown demo %q: the demo is `demo --local` (or `demo gazebo --local`)", strings.Join(args, " "))
			}
			return nil
		}),
		RunE: func(*cobra.Command, []string) error {
			if !o.local {
				fmt.Fprintln(in.cli.Stderr, "demo: autonomyctl has no container mode; the demo runs in-process")
				printHints(in.cli.Stderr, hintDemoLocal)
				return &errSilent{code: ExitUsage}
			}
			if o.events < 10 || o.events > 1_000_000 {
				return usagef("--events must be from 10 to 1000000, not %d", o.events)
			}
			return in.runDemo(o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.local, "local", false, "run the cluster in this process (the only mode)")
	f.IntVar(&o.events, "events", DefaultDemoEvents, "events of the first ingest (the later steps send fractions of it)")
	f.BoolVar(&o.keep, "keep-data", false, "keep the demo's data directory (three nodes' WALs) and print where it is")
	f.BoolVar(&o.verbose, "verbose", false, "also print the replicas' own log lines on stderr")
	return cmd
}

// narrator prints the demo's steps with the time since it began.
type narrator struct {
	w  io.Writer
	t0 time.Time

	mu   sync.Mutex
	logs []string // noteworthy log lines not printed yet
}

func (n *narrator) say(step, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	lines := strings.Split(msg, "\n")
	fmt.Fprintf(n.w, "[%5.2fs] %-17s %s\n", time.Since(n.t0).Seconds(), step, lines[0])
	for _, l := range lines[1:] {
		fmt.Fprintf(n.w, "%27s%s\n", "", l)
	}
	n.flushLogs()
}

func (n *narrator) flushLogs() {
	n.mu.Lock()
	logs := n.logs
	n.logs = nil
	n.mu.Unlock()
	for _, l := range logs {
		fmt.Fprintf(n.w, "%27slog: %s\n", "", l)
	}
}

// narrateHook collects the replicas' noteworthy log lines for the narrator.
type narrateHook struct {
	n    *narrator
	root string // trimmed from the directories log lines name
}

func (h narrateHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h narrateHook) Fire(e *logrus.Entry) error {
	code, _, _ := strings.Cut(e.Message, ":")
	switch code {
	case "WAL_RESET_BY_OPERATOR", "WAL_LEARNER", "WAL_LEARNER_CAUGHT_UP", "WAL_TORN_TAIL_TRUNCATED", "WAL_FAILED":
	default:
		return nil
	}
	who := fmt.Sprint(e.Data["node"])
	if e.Data["node"] == nil {
		who = strings.TrimPrefix(fmt.Sprint(e.Data["dir"]), h.root+string(os.PathSeparator))
	}
	h.n.mu.Lock()
	h.n.logs = append(h.n.logs, fmt.Sprintf("%s %s %s", strings.ToUpper(e.Level.String()), code, who))
	h.n.mu.Unlock()
	return nil
}

func (in *invocation) runDemo(o demoOptions) (err error) {
	ctx, cancel := context.WithTimeout(in.ctx, demoTimeout)
	defer cancel()
	root, err := os.MkdirTemp("", "autonomy-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if o.keep {
		defer fmt.Fprintf(in.cli.Stdout, "data kept in %s (three nodes' telemetry directories)\n", root)
	} else {
		defer os.RemoveAll(root)
	}
	n := &narrator{w: in.cli.Stdout, t0: time.Now()}
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	logger.SetLevel(logrus.WarnLevel)
	if o.verbose {
		logger.SetOutput(in.cli.Stderr)
		logger.SetLevel(logrus.InfoLevel)
	}
	logger.AddHook(narrateHook{n: n, root: root})

	names := []string{"node-a", "node-b", "node-c"}
	c := newDemoCluster(root, names, logger)
	defer c.close()
	d := &demo{in: in, c: c, n: n, o: o, acks: newAckLog(), ctx: ctx}
	if err := d.run(); err != nil {
		if ctx.Err() != nil && in.ctx.Err() != nil {
			return in.ctx.Err()
		}
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// demo is one run's state.
type demo struct {
	in   *invocation
	c    *demoCluster
	n    *narrator
	o    demoOptions
	acks *ackLog
	ctx  context.Context
}

func (d *demo) batch() int { return max(1, min(25, d.o.events/8)) }

const demoWriters = 4

// ingest sends k events to leader and fails unless all are acknowledged.
func (d *demo) ingest(leader, tag string, k int) (ingestResult, error) {
	r := d.c.ingest(d.ctx, leader, d.acks, tag, k, d.batch(), demoWriters, nil)
	if r.firstErr != nil {
		return r, fmt.Errorf("ingest on %s: %w", leader, r.firstErr)
	}
	return r, nil
}

func (d *demo) verifyAll(nodes ...string) error {
	for _, name := range nodes {
		if err := d.c.verify(d.ctx, d.acks, name, demoStepTimeout); err != nil {
			return err
		}
	}
	return nil
}

func rate(k int, t time.Duration) float64 {
	if t <= 0 {
		return 0
	}
	return float64(k) / t.Seconds()
}

func ms(t time.Duration) string { return t.Round(100 * time.Microsecond).String() }

func (d *demo) run() error {
	c, n, N := d.c, d.n, d.o.events
	fmt.Fprintln(n.w, "autonomyctl demo --local: a three-node cluster in this process — no service, no etcd, no containers.")
	fmt.Fprintln(n.w, "Three real WALs (fsynced, replicated) over an in-memory network; the demo stands in for etcd: it elects the")
	fmt.Fprintln(n.w, "leader and hands out strictly increasing epochs, as the leader key's revision would.")
	fmt.Fprintln(n.w)

	for _, name := range c.names {
		if _, err := c.start(name, false); err != nil {
			return err
		}
	}
	n.say("cluster", "%s: WALs created in %s", strings.Join(c.names, ", "), c.root)

	t := time.Now()
	epoch, err := c.elect(d.ctx, "node-a", demoStepTimeout)
	if err != nil {
		return err
	}
	n.say("elect", "node-a leads epoch %d: promises from a majority, epoch-start frame committed, in %s", epoch, ms(time.Since(t)))

	// 1. Ingest.
	r, err := d.ingest("node-a", "ingest", N)
	if err != nil {
		return err
	}
	n.say("ingest", "%d events acknowledged in %s (%.0f events/s, %d concurrent clients, batches of %d);\n"+
		"each was fsynced by a majority before its acknowledgement. safe_seq %d",
		r.acked, ms(r.took), rate(r.acked, r.took), demoWriters, d.batch(), c.node("node-a").wal.SafeSeq())

	// 2. Kill the leader while clients are writing.
	before := d.acks.count()
	stop := make(chan struct{})
	inflight := make(chan ingestResult, 1)
	go func() { inflight <- c.ingest(d.ctx, "node-a", d.acks, "under-load", 0, d.batch(), demoWriters, stop) }()
	_ = waitFor(d.ctx, 5*time.Second, "writes under load", func() bool { return d.acks.count() >= before+max(N/5, 1) })
	tKill := time.Now()
	c.crash("node-a")
	close(stop)
	ir := <-inflight
	n.say("crash", "node-a killed while %d clients were writing: links cut, leadership ended, WAL closed.\n"+
		"%d more events had been acknowledged before the kill; %d were in flight and got an error, never an ack\n"+
		"(their outcome is unknown to their clients: a retry with an event id would not duplicate them)",
		demoWriters, ir.acked, ir.failed)

	epoch, err = c.elect(d.ctx, "node-b", demoStepTimeout)
	if err != nil {
		return err
	}
	failover := time.Since(tKill)
	n.say("failover", "node-b leads epoch %d, %s after the kill: promise from node-c, the most up-to-date tail adopted,\n"+
		"epoch-start frame committed. (In a real cluster etcd must first notice the dead leader: add its session TTL.)",
		epoch, ms(failover))

	// 3. Zero loss.
	r, err = d.ingest("node-b", "after-failover", max(N/2, 1))
	if err != nil {
		return err
	}
	if err := d.verifyAll("node-b", "node-c"); err != nil {
		return err
	}
	n.say("zero loss", "%d more events acknowledged by node-b. All %d acknowledged events are on node-b and node-c,\n"+
		"each at the Seq its client was told", r.acked, d.acks.count())

	// The crashed node comes back and catches up.
	rep, err := c.start("node-a", false)
	if err != nil {
		return err
	}
	t = time.Now()
	if err := d.verifyAll("node-a"); err != nil {
		return err
	}
	dropped := ""
	if cuts, _ := c.node("node-a").wal.TruncationsSince(0); len(cuts) > 0 {
		dropped = fmt.Sprintf(";\nit dropped %d uncommitted frames above Seq %d that the new leader's log does not have", rep.LastSeq-cuts[0], cuts[0])
	}
	n.say("restart", "node-a restarts on its WAL (last Seq %d), follows node-b and catches up in %s%s",
		rep.LastSeq, ms(time.Since(t)), dropped)

	// 4. Planned failover node-b → node-c.
	t = time.Now()
	last, _, _, _ := c.node("node-b").wal.Positions()
	target := c.node("node-c")
	if err := waitFor(d.ctx, demoStepTimeout, "node-c to fsync the leader's log", func() bool {
		return target.wal.Status().DurableSeq >= last
	}); err != nil {
		return err
	}
	caughtUp := time.Since(t)
	c.endLead(c.node("node-b"))
	epoch, err = c.elect(d.ctx, "node-c", demoStepTimeout)
	if err != nil {
		return err
	}
	handoff := time.Since(t)
	r, err = d.ingest("node-c", "after-handoff", max(N/4, 1))
	if err != nil {
		return err
	}
	if err := d.verifyAll("node-a", "node-b", "node-c"); err != nil {
		return err
	}
	n.say("planned failover", "node-b stops taking writes; node-c has fsynced its whole log (Seq %d) after %s; node-b resigns;\n"+
		"node-c leads epoch %d: the handoff took %s. %d more events acknowledged by node-c; all %d on every node",
		last, ms(caughtUp), epoch, ms(handoff), r.acked, d.acks.count())

	// 5. One node's WAL is lost and reset.
	leaderSafe := c.node("node-c").wal.SafeSeq()
	t = time.Now()
	backup, _, err := c.resetNode("node-a", d.in.cli.now())
	if err != nil {
		return err
	}
	n.say("wal reset", "node-a's WAL is lost: node stopped, telemetry directory moved to %s,\n"+
		"restarted with an empty WAL (as after `autonomyctl wal reset`) as a learner: it counts toward no majority",
		strings.TrimPrefix(backup, c.root+string(os.PathSeparator)))
	r, err = d.ingest("node-c", "during-reset", max(N/4, 1))
	if err != nil {
		return err
	}
	a := c.node("node-a")
	if err := waitFor(d.ctx, demoStepTimeout, "node-a to catch up and vote again", func() bool {
		return !a.rep.Status().Learner && a.wal.SafeSeq() >= leaderSafe
	}); err != nil {
		return err
	}
	if err := d.verifyAll("node-a", "node-b", "node-c"); err != nil {
		return err
	}
	st := a.wal.Status()
	n.say("re-replicate", "node-a re-replicated %d frames from node-c in %s and votes again; meanwhile node-c and node-b\n"+
		"committed %d more events. All %d acknowledged events are on node-a, node-b and node-c",
		st.LastSeq, ms(time.Since(t)), r.acked, d.acks.count())

	fmt.Fprintln(n.w)
	fmt.Fprintf(n.w, "result: %d events acknowledged, 0 lost. Failover after a crash %s, planned failover %s, in %.1fs overall.\n",
		d.acks.count(), ms(failover), ms(handoff), time.Since(n.t0).Seconds())
	return nil
}
