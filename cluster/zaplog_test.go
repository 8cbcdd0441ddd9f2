package cluster

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/zap"
)

func TestZapToLogrus_levelsCloseNoiseAndDurations(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	st := &zapState{}
	z := newZapLogger(log, st)

	z.Info("chatty")
	if len(hook.AllEntries()) != 0 {
		t.Fatal("etcd's info passed while not at debug")
	}
	st.debug.Store(true)
	z.Info("chatty", zap.Duration("took", 1500*time.Microsecond))
	if e := hook.LastEntry(); e == nil || e.Level != logrus.InfoLevel || e.Data["took"] != 1500*time.Microsecond {
		t.Fatalf("info at debug: %+v (a duration must reach the formatter as a time.Duration)", e)
	}

	serveFailed := func() { z.Error("setting up serving from embedded etcd failed.", zap.Error(http.ErrServerClosed)) }
	serveFailed()
	if e := hook.LastEntry(); e.Level != logrus.ErrorLevel {
		t.Fatalf("outside a stop the error keeps its level: %v", e.Level)
	}
	st.closing.Store(true)
	serveFailed()
	if e := hook.LastEntry(); e.Level != logrus.DebugLevel || e.Data["etcd_level"] != "error" {
		t.Fatalf("while closing, a closed-server error is debug with etcd_level: %v %v", e.Level, e.Data)
	}
	z.Error("failed to save something", zap.Error(errors.New("disk full")))
	if e := hook.LastEntry(); e.Level != logrus.ErrorLevel {
		t.Fatalf("while closing, other errors keep their level: %v", e.Level)
	}
}

func TestLogrusWriter_closedSocketWhileLeavingIsDebug(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	w := &logrusWriter{log: log}
	line := "[ERR] memberlist: Failed to send gossip to 127.0.0.1:1: write udp 127.0.0.1:2->127.0.0.1:1: use of closed network connection\n"
	w.Write([]byte(line))
	if e := hook.LastEntry(); e.Level != logrus.ErrorLevel {
		t.Fatalf("before leaving: %v", e.Level)
	}
	w.closing.Store(true)
	w.Write([]byte(line))
	if e := hook.LastEntry(); e.Level != logrus.DebugLevel {
		t.Fatalf("while leaving: %v", e.Level)
	}
}

// TestZapToLogrus_quietsWhatTheOperatorCannotActOn: etcd's warnings about the
// appliance's deliberate choices (one client port, simple token) are debug;
// the prober's warning, repeated every few seconds while a peer is down, is
// a warning once per peer and then at most once per repeatInterval.
func TestZapToLogrus_quietsWhatTheOperatorCannotActOn(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	now := time.Unix(1000, 0)
	st := &zapState{now: func() time.Time { return now }}
	z := newZapLogger(log, st)
	last := func() *logrus.Entry { return hook.LastEntry() }

	for _, m := range []string{"Running http and grpc server on single port. This is not recommended for production.",
		"simple token is not cryptographically signed"} {
		z.Warn(m)
		if e := last(); e.Level != logrus.DebugLevel || e.Data["etcd_level"] != "warn" {
			t.Errorf("%q: %v %v, want debug with etcd_level warn", m, e.Level, e.Data)
		}
	}
	probe := func(peer string) *logrus.Entry {
		z.Warn("prober detected unhealthy status", zap.String("round-tripper-name", "ROUND_TRIPPER_RAFT_MESSAGE"),
			zap.String("remote-peer-id", peer), zap.Error(errors.New("connection refused")))
		return last()
	}
	if e := probe("a1"); e.Level != logrus.WarnLevel {
		t.Fatalf("first prober warning for a peer: %v", e.Level)
	}
	if e := probe("b2"); e.Level != logrus.WarnLevel {
		t.Fatalf("first prober warning for another peer: %v", e.Level)
	}
	warns := 0
	for i := 0; i < 60; i++ { // five minutes of a warning every 5 s
		now = now.Add(5 * time.Second)
		if probe("a1").Level == logrus.WarnLevel {
			warns++
		}
	}
	if warns != 1 {
		t.Fatalf("%d prober warnings at warn level in 5 minutes for one peer, want 1", warns)
	}
	z.Warn("peer became inactive (message send to peer failed)", zap.String("peer-id", "a1"))
	if e := last(); e.Level != logrus.WarnLevel {
		t.Fatalf("other warnings keep their level: %v", e.Level)
	}
}
