package cluster

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapState is shared by every core derived from one member's logger.
type zapState struct {
	// debug passes etcd's debug and info entries; otherwise only warnings
	// and errors reach the node's log. It follows the log level live.
	debug atomic.Bool
	// closing is set when the member is being closed on purpose: the errors
	// etcd then reports about its own listeners closing are expected.
	closing atomic.Bool

	// repeats: when each repeating warning (repeatingWarnings) was last
	// passed at its level, by message and peer.
	mu      sync.Mutex
	repeats map[string]time.Time
	now     func() time.Time // time.Now; tests replace it
}

// notActionable are etcd warnings about choices this appliance makes on
// purpose; an operator can do nothing about them, so they are logged at
// debug (with etcd_level). The client URL serves gRPC and HTTP on one port
// because its only client is the node itself, on the loopback; etcd's auth
// (and its simple token) is off, the API has its own tokens.
var notActionable = map[string]bool{
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
}

// repeatingWarnings are etcd warnings repeated every few seconds for as
// long as a peer is unreachable: the first one for a peer is logged at its
// level, then at most one per repeatInterval; the others at debug.
var repeatingWarnings = map[string]bool{
	"prober detected unhealthy status": true,
	"prober found high clock drift":    true,
}

const repeatInterval = 5 * time.Minute

// quieted reports whether a warning or error should be logged at debug.
func (st *zapState) quieted(msg string, fields map[string]any) bool {
	if notActionable[msg] {
		return true
	}
	if !repeatingWarnings[msg] {
		return false
	}
	peer, _ := fields["remote-peer-id"].(string)
	rt, _ := fields["round-tripper-name"].(string)
	key := msg + "\x00" + peer + "\x00" + rt
	now := time.Now
	if st.now != nil {
		now = st.now
	}
	t := now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if last, ok := st.repeats[key]; ok && t.Sub(last) < repeatInterval {
		return true
	}
	if st.repeats == nil {
		st.repeats = map[string]time.Time{}
	}
	st.repeats[key] = t
	return false
}

// zapToLogrus routes etcd's zap logs into the node's logrus stream, so that
// an operator reads one JSON log.
type zapToLogrus struct {
	log    logrus.FieldLogger
	st     *zapState
	fields []zapcore.Field
}

func newZapLogger(log logrus.FieldLogger, st *zapState) *zap.Logger {
	return zap.New(&zapToLogrus{log: log.WithField("component", "etcd"), st: st})
}

func (c *zapToLogrus) Enabled(l zapcore.Level) bool {
	return l >= zapcore.WarnLevel || c.st.debug.Load()
}

func (c *zapToLogrus) With(fs []zapcore.Field) zapcore.Core {
	return &zapToLogrus{log: c.log, st: c.st, fields: append(append([]zapcore.Field{}, c.fields...), fs...)}
}

func (c *zapToLogrus) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// closeNoise reports an error that etcd logs when its own listeners and
// servers are closed under it: "setting up serving from embedded etcd
// failed." with "http: Server closed", "mux: server closed" or "use of
// closed network connection".
func closeNoise(fields map[string]any) bool {
	s, _ := fields["error"].(string)
	for _, m := range []string{"use of closed network connection", "server closed", "Server closed"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func (c *zapToLogrus) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	level := e.Level
	if level >= zapcore.WarnLevel && (c.st.closing.Load() && closeNoise(enc.Fields) || c.st.quieted(e.Message, enc.Fields)) {
		// A clean stop is not an error, and some warnings ask nothing of
		// the operator: keep the line, at debug, with etcd's own level
		// beside it.
		enc.Fields["etcd_level"] = level.String()
		level = zapcore.DebugLevel
	}
	l := c.log.WithFields(logrus.Fields(enc.Fields))
	if e.LoggerName != "" {
		l = l.WithField("logger", e.LoggerName)
	}
	switch {
	case level >= zapcore.ErrorLevel:
		l.Error(e.Message)
	case level == zapcore.WarnLevel:
		l.Warn(e.Message)
	case level == zapcore.InfoLevel:
		l.Info(e.Message)
	default:
		l.Debug(e.Message)
	}
	return nil
}

func (c *zapToLogrus) Sync() error { return nil }
