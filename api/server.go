package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"
)

// Backend is what the API needs from the node. node/ implements it; tests
// use a real single-node WAL behind a small fake.
type Backend interface {
	// NodeName is this node's name.
	NodeName() string
	// Health reports this node's health; ok is true only on the leader that
	// can commit (leader token held, epoch started, quorum heard).
	Health() (h Health, ok bool)
	// Leader returns the current leader's name and API URL, if one is known.
	Leader() (name, apiURL string, ok bool)
	// Ingest appends payloads and returns once all are committed.
	Ingest(ctx context.Context, payloads [][]byte) (seqs []uint64, safeSeq uint64, err error)
	// WAL is this node's own WAL.
	WAL() *walrepl.WAL
	// HAStatus is this node's view of the cluster.
	HAStatus(ctx context.Context) HAStatus
}

// Config configures the HTTP API.
type Config struct {
	// MaxBodyBytes bounds a request body; larger bodies get 413.
	MaxBodyBytes int64
	// IngestTimeout bounds how long an ingest waits for commit before 503.
	IngestTimeout time.Duration
	// MaxEventsPerRequest bounds a batch.
	MaxEventsPerRequest int
	Logger              logrus.FieldLogger
}

// DefaultConfig returns the API defaults.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 1 << 20, IngestTimeout: 10 * time.Second, MaxEventsPerRequest: 10000, Logger: logrus.StandardLogger()}
}

// Server is the gin REST API of one node.
type Server struct {
	cfg Config
	b   Backend
	log logrus.FieldLogger
}

// NewHandler returns the API's http.Handler.
func NewHandler(cfg Config, b Backend) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{cfg: cfg, b: b, log: cfg.Logger}
	e := gin.New()
	e.Use(gin.Recovery())
	e.HandleMethodNotAllowed = true
	e.NoRoute(func(c *gin.Context) {
		writeError(c, http.StatusNotFound, "not_found", "no such route: "+c.Request.Method+" "+c.Request.URL.Path)
	})
	e.NoMethod(func(c *gin.Context) {
		writeError(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	// Every node answers these.
	e.GET("/v1/health", s.health)
	e.GET("/v1/health/live", s.live)
	e.GET("/v1/ha/status", s.haStatus)
	e.GET("/v1/wal/status", s.walStatus)
	e.GET("/v1/wal/inspect", s.walInspect)

	// The leader answers these; followers redirect.
	lead := e.Group("/", s.leaderOnly)
	lead.POST("/v1/telemetry/events", s.ingest)
	lead.GET("/v1/telemetry/events", s.events)
	return e
}

func writeError(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, ErrorResponse{Error: code, Message: msg})
}

// leaderOnly answers 307 to the leader, or 503 no_leader, on a node that is
// not the serving leader.
func (s *Server) leaderOnly(c *gin.Context) {
	h, ok := s.b.Health()
	if ok || h.Role == walrepl.RoleLeader {
		c.Next()
		return
	}
	name, leaderURL, known := s.b.Leader()
	if !known || leaderURL == "" || name == s.b.NodeName() {
		c.Header("Retry-After", "1")
		writeError(c, http.StatusServiceUnavailable, "no_leader", "no leader is known right now; retry shortly")
		return
	}
	u, err := url.Parse(leaderURL)
	if err != nil {
		writeError(c, http.StatusServiceUnavailable, "no_leader", "the leader's URL "+leaderURL+" is invalid")
		return
	}
	u.Path, u.RawQuery = c.Request.URL.Path, c.Request.URL.RawQuery
	c.Header("X-Autonomy-Leader", name)
	c.Redirect(http.StatusTemporaryRedirect, u.String())
	c.Abort()
}

func (s *Server) health(c *gin.Context) {
	h, ok := s.b.Health()
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, h)
}

func (s *Server) live(c *gin.Context) {
	h, _ := s.b.Health()
	if h.WAL != "ok" {
		c.JSON(http.StatusServiceUnavailable, h)
		return
	}
	c.JSON(http.StatusOK, h)
}

func (s *Server) haStatus(c *gin.Context) {
	c.JSON(http.StatusOK, s.b.HAStatus(c.Request.Context()))
}

// errStatus maps replication and WAL errors to an HTTP status and a stable code.
func errStatus(err error) (int, string, string) {
	switch {
	case errors.Is(err, walrepl.ErrNotLeader), errors.Is(err, walrepl.ErrDeposed):
		return http.StatusServiceUnavailable, "not_leader", "this node stopped being the leader; retry on the current leader"
	case errors.Is(err, walrepl.ErrEpochNotStarted):
		return http.StatusServiceUnavailable, "epoch_not_started", "the leader is still taking over; retry shortly"
	case errors.Is(err, walrepl.ErrUnknownOutcome):
		return http.StatusServiceUnavailable, "outcome_unknown", "leadership changed before the events were committed; retry with the same event ids"
	case errors.Is(err, walrepl.ErrNoQuorum):
		return http.StatusServiceUnavailable, "no_quorum", "no majority of nodes is reachable; nothing was acknowledged"
	case errors.Is(err, walrepl.ErrFailed):
		return http.StatusServiceUnavailable, "wal_failed", err.Error()
	case errors.Is(err, walrepl.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large", err.Error()
	case errors.Is(err, walrepl.ErrInvalidPayload):
		return http.StatusBadRequest, "bad_json", err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "commit_timeout", "the events were not committed in time (is a majority of nodes up?); retry with the same event ids"
	}
	return http.StatusInternalServerError, "internal", err.Error()
}
