package api

import (
	"time"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"
)

// debugEnabled reports whether log writes debug entries now (the level can
// change while the node runs: setting log/level).
func debugEnabled(log logrus.FieldLogger) bool {
	switch l := log.(type) {
	case *logrus.Logger:
		return l.IsLevelEnabled(logrus.DebugLevel)
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(logrus.DebugLevel)
	}
	return false
}

// accessLog logs every request at debug level (HTTP_REQUEST), after it is
// answered. At info and above it costs one level check.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	if !debugEnabled(s.log) {
		return
	}
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	s.log.WithFields(logrus.Fields{"method": c.Request.Method, "path": c.Request.URL.Path, "route": route,
		"status": c.Writer.Status(), "took_ms": float64(time.Since(start).Microseconds()) / 1000,
		"who": who(c), "remote": c.ClientIP()}).Debug("HTTP_REQUEST")
}
