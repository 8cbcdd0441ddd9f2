package cluster

import (
	"github.com/sirupsen/logrus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToLogrus routes etcd's zap logs into the node's logrus stream, so that
// an operator reads one JSON log. Entries below min are dropped.
type zapToLogrus struct {
	log    logrus.FieldLogger
	min    zapcore.Level
	fields []zapcore.Field
}

func newZapLogger(log logrus.FieldLogger, min zapcore.Level) *zap.Logger {
	return zap.New(&zapToLogrus{log: log.WithField("component", "etcd"), min: min})
}

func (c *zapToLogrus) Enabled(l zapcore.Level) bool { return l >= c.min }

func (c *zapToLogrus) With(fs []zapcore.Field) zapcore.Core {
	return &zapToLogrus{log: c.log, min: c.min, fields: append(append([]zapcore.Field{}, c.fields...), fs...)}
}

func (c *zapToLogrus) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapToLogrus) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	l := c.log.WithFields(logrus.Fields(enc.Fields))
	if e.LoggerName != "" {
		l = l.WithField("logger", e.LoggerName)
	}
	switch {
	case e.Level >= zapcore.ErrorLevel:
		l.Error(e.Message)
	case e.Level == zapcore.WarnLevel:
		l.Warn(e.Message)
	case e.Level == zapcore.InfoLevel:
		l.Info(e.Message)
	default:
		l.Debug(e.Message)
	}
	return nil
}

func (c *zapToLogrus) Sync() error { return nil }
