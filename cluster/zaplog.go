package cluster

import (
	"strings"
	"sync/atomic"

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
	if level >= zapcore.WarnLevel && c.st.closing.Load() && closeNoise(enc.Fields) {
		// A clean stop is not an error: keep the line, at debug, with
		// etcd's own level beside it.
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
