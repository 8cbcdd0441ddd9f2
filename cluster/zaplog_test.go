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
