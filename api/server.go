package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/settings"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"
)

// The API's seams: one small interface per role it needs from the node,
// declared here, where they are used. node/ implements them; tests use
// fakes. Backends carries one of each to NewHandler.

// NodeState is this node as a router of requests sees it.
type NodeState interface {
	// NodeName is this node's name.
	NodeName() string
	// Serving is a cheap Health().ok for the hot path.
	Serving() bool
	// Health reports this node's health; ok is true only on the leader that
	// can commit (leader token held, epoch started, quorum heard).
	Health() (h Health, ok bool)
	// Leader returns the current leader's name and API URL, if one is known.
	Leader() (name, apiURL string, ok bool)
}

// ClusterView is this node's view of the cluster and of itself as a read
// replica.
type ClusterView interface {
	// HAStatus is this node's view of the cluster.
	HAStatus(ctx context.Context) HAStatus
	// ReplicaHealth judges this node as a read replica.
	ReplicaHealth(maxLag uint64) (ReplicaHealth, bool)
}

// Ingester appends events to the replicated WAL.
type Ingester interface {
	// Ingest appends payloads and returns once all are committed. ids[i] is
	// the client event id of payloads[i] as EventID reads it ("" for none),
	// found by ParseEvents so that the events are not parsed again; nil ids
	// means the Ingester reads them itself.
	Ingest(ctx context.Context, payloads [][]byte, ids []string) (seqs []uint64, safeSeq uint64, err error)
}

// Log is the read side of this node's WAL that the API serves: committed
// frames and their positions. *walrepl.WAL implements it.
type Log interface {
	// SafeSeq is the highest committed Seq; only frames at or below it are
	// served (DESIGN §6 rule 11).
	SafeSeq() uint64
	Status() walrepl.Status
	ReadFrames(from, limit uint64, maxFrames, maxBytes int) ([]walrepl.Frame, error)
	// Changed is closed at the next change of the WAL's positions.
	Changed() <-chan struct{}
}

// FailoverRunner runs (or with DryRun, plans) a planned leader handoff.
type FailoverRunner interface {
	Failover(ctx context.Context, req FailoverRequest, who string) (FailoverResponse, error)
}

// AuditLog records operator actions (Audit) and reads them, newest first
// (AuditList).
type AuditLog interface {
	Audit(ctx context.Context, rec AuditRecord) error
	AuditList(ctx context.Context, limit int) ([]AuditRecord, error)
}

// Membership lists the cluster's members; AddMember and RemoveMember change
// etcd's membership (node replacement).
type Membership interface {
	Members(ctx context.Context) ([]ClusterMember, error)
	AddMember(ctx context.Context, req AddMemberRequest, who string) (AddMemberResponse, error)
	RemoveMember(ctx context.Context, name, who string) error
}

// Snapshotter streams a snapshot of the cluster (GET /v1/snapshot). It
// prepares the snapshot, then calls start, which sends the answer's status
// and headers and returns the body's writer, and streams into it. An error
// before start is answered through the error table; one after it cuts the
// stream short: the body then lacks its trailer and the client refuses it.
type Snapshotter interface {
	Snapshot(ctx context.Context, who string, start func() io.Writer) error
}

// Backends are the node's parts the API uses, one per role. Every field is
// required (NewHandler checks).
type Backends struct {
	Node     NodeState
	Cluster  ClusterView
	Ingest   Ingester
	Log      Log
	Fleet    *Fleet // the fleet aggregator (checkpointed across retention)
	Settings SettingsStore
	Audit    AuditLog
	Members  Membership
	Failover FailoverRunner
	Snapshot Snapshotter
}

// check names the first missing role.
func (b *Backends) check() error {
	for name, missing := range map[string]bool{"Node": b.Node == nil, "Cluster": b.Cluster == nil, "Ingest": b.Ingest == nil,
		"Log": b.Log == nil, "Fleet": b.Fleet == nil, "Settings": b.Settings == nil, "Audit": b.Audit == nil,
		"Members": b.Members == nil, "Failover": b.Failover == nil, "Snapshot": b.Snapshot == nil} {
		if missing {
			return fmt.Errorf("api: Backends.%s is nil", name)
		}
	}
	return nil
}

// SettingsStore is the cluster config KV. ifRev, when not nil, makes a write
// conditional: it applies only if the key's revision is *ifRev (0: absent).
type SettingsStore interface {
	List(ctx context.Context) ([]Setting, int64, error)
	Get(ctx context.Context, key string) (Setting, error)
	Put(ctx context.Context, key string, value json.RawMessage, ifRev *int64) (Setting, error)
	Delete(ctx context.Context, key string, ifRev *int64) (Setting, error)
}

// Errors the Backends return for the API to map.
var (
	ErrNotFound         = errors.New("api: not found")
	ErrRevisionMismatch = errors.New("api: revision mismatch")
	ErrFailoverRefused  = errors.New("api: failover refused")
)

// Config configures the HTTP API.
type Config struct {
	// MaxBodyBytes bounds an ingest body; larger bodies get 413. It is the
	// default of Settings when Settings is nil.
	MaxBodyBytes int64
	// IngestTimeout bounds how long an ingest waits for commit before 503.
	IngestTimeout time.Duration
	// MaxEventsPerRequest bounds a batch; the default of Settings when
	// Settings is nil.
	MaxEventsPerRequest int
	// Settings are the node's live settings (ingest limits, and the
	// defaults that GET /v1/config/ reports). Nil: fixed at MaxBodyBytes
	// and MaxEventsPerRequest.
	Settings *settings.Live
	// Tokens enables RBAC; nil means auth is off.
	Tokens *Tokens
	// Metrics serves GET /metrics (Prometheus); nil: no route.
	Metrics http.Handler
	// Instruments records the API's own series (requests by route and code,
	// ingest counts and commit latency); nil: none. The caller registers it.
	Instruments *Metrics
	// Logger receives the access log and the API's own events; required.
	Logger logrus.FieldLogger
}

// DefaultConfig returns the API defaults.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 1 << 20, IngestTimeout: 10 * time.Second, MaxEventsPerRequest: 10000, Logger: logrus.StandardLogger()}
}

// Validate names the first bad field and its value. It has no side
// effects; NewHandler calls it.
func (c *Config) Validate() error {
	switch {
	case c.MaxBodyBytes <= 0:
		return fmt.Errorf("api: MaxBodyBytes=%d must be positive (--max-body-bytes)", c.MaxBodyBytes)
	case c.IngestTimeout <= 0:
		return fmt.Errorf("api: IngestTimeout=%s must be positive", c.IngestTimeout)
	case c.MaxEventsPerRequest <= 0:
		return fmt.Errorf("api: MaxEventsPerRequest=%d must be positive", c.MaxEventsPerRequest)
	case c.Logger == nil:
		return errors.New("api: Logger is nil")
	}
	return nil
}

// Server is the gin REST API of one node.
type Server struct {
	cfg Config
	b   Backends
	log logrus.FieldLogger
}

// NewHandler returns the API's http.Handler, or the error of cfg.Validate
// or of a missing backend.
func NewHandler(cfg Config, b Backends) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	gin.SetMode(gin.ReleaseMode)
	if cfg.Settings == nil {
		cfg.Settings = settings.NewLive(settings.Values{IdempotencyWindow: settings.DefaultIdempotencyWindow,
			MaxBatch: cfg.MaxEventsPerRequest, MaxBodyBytes: cfg.MaxBodyBytes, LogLevel: "info"})
	}
	s := &Server{cfg: cfg, b: b, log: cfg.Logger}
	e := gin.New()
	e.Use(gin.Recovery(), s.accessLog)
	if cfg.Instruments != nil {
		e.Use(cfg.Instruments.countRequests)
	}
	e.HandleMethodNotAllowed = true
	e.NoRoute(func(c *gin.Context) {
		writeError(c, http.StatusNotFound, "not_found", "no such route: "+c.Request.Method+" "+c.Request.URL.Path)
	})
	e.NoMethod(func(c *gin.Context) {
		writeError(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	viewer, operator, admin := s.require(RoleViewer), s.require(RoleOperator), s.require(RoleAdmin)

	// Open to load balancers and scrapers, on every node.
	e.GET("/v1/health", s.health)
	e.GET("/v1/health/live", s.live)
	e.GET("/v1/health/replica", s.replicaHealth)
	if cfg.Metrics != nil {
		e.GET("/metrics", gin.WrapH(cfg.Metrics))
	}

	// Every node answers these, about itself.
	e.GET("/v1/ha/status", viewer, s.haStatus)
	e.GET("/v1/wal/status", viewer, s.walStatus)
	e.GET("/v1/wal/inspect", viewer, s.walInspect)
	e.GET("/v1/node/settings", viewer, s.nodeSettings)

	// The leader answers these; followers redirect.
	e.POST("/v1/telemetry/events", operator, s.leaderOnly, s.ingest)
	e.POST("/v1/telemetry/stream", fullDuplex, operator, s.leaderOnly, s.ingestStream)
	e.GET("/v1/telemetry/events", viewer, s.leaderOnly, s.events)
	e.GET("/v1/logs", operator, s.leaderOnly, s.logs)
	e.GET("/v1/fleet/summary", viewer, s.leaderOnly, s.fleetSummary)
	e.POST("/v1/ha/failover", admin, s.leaderOnly, s.failover)
	e.GET("/v1/config/*key", viewer, s.leaderOnly, s.getSetting)
	e.PUT("/v1/config/*key", admin, s.leaderOnly, s.putSetting)
	e.DELETE("/v1/config/*key", admin, s.leaderOnly, s.deleteSetting)
	e.GET("/v1/audit", viewer, s.leaderOnly, s.audit)
	e.GET("/v1/members", viewer, s.members)
	e.POST("/v1/members", admin, s.tokenHolder, s.addMember)
	e.DELETE("/v1/members/:name", admin, s.tokenHolder, s.removeMember)
	e.GET("/v1/snapshot", admin, s.leaderOnly, s.snapshot)
	return e, nil
}

func writeError(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, ErrorResponse{Error: code, Message: msg})
}

// tokenHolder routes a membership change as leaderOnly does, except that a
// candidate (it holds the leader token but cannot serve yet) takes it too.
// After a restart of the whole cluster a candidate waits for every voter
// (DESIGN §6 rule 13); `member remove` of a voter that will never return is
// the documented way out, so it must not wait for a leader that cannot exist
// until it is done. etcd itself orders the membership change.
func (s *Server) tokenHolder(c *gin.Context) {
	if h, _ := s.b.Node.Health(); h.Role == walrepl.RoleCandidate {
		c.Next()
		return
	}
	s.leaderOnly(c)
}

// leaderOnly answers 307 to the leader, or 503 no_leader, on a node that is
// not the serving leader.
func (s *Server) leaderOnly(c *gin.Context) {
	if s.b.Node.Serving() {
		c.Next()
		return
	}
	if h, _ := s.b.Node.Health(); h.Role == walrepl.RoleLeader {
		c.Next() // leading but not able to commit: the handler answers 503
		return
	}
	name, leaderURL, known := s.b.Node.Leader()
	if !known || leaderURL == "" || name == s.b.Node.NodeName() {
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
	c.Header(wire.HeaderLeader, name)
	c.Redirect(http.StatusTemporaryRedirect, u.String())
	c.Abort()
}

func (s *Server) health(c *gin.Context) {
	h, ok := s.b.Node.Health()
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, h)
}

func (s *Server) live(c *gin.Context) {
	h, _ := s.b.Node.Health()
	if h.WAL != "ok" {
		c.JSON(http.StatusServiceUnavailable, h)
		return
	}
	c.JSON(http.StatusOK, h)
}

func (s *Server) haStatus(c *gin.Context) {
	c.JSON(http.StatusOK, s.b.Cluster.HAStatus(c.Request.Context()))
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
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "not_found", detail(err, ErrNotFound)
	case errors.Is(err, ErrRevisionMismatch):
		return http.StatusConflict, "revision_mismatch", detail(err, ErrRevisionMismatch)
	case errors.Is(err, ErrFailoverRefused):
		return http.StatusConflict, "failover_refused", detail(err, ErrFailoverRefused)
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "commit_timeout", "the events were not committed in time (is a majority of nodes up?); retry with the same event ids"
	}
	return http.StatusInternalServerError, "internal", err.Error()
}

// fail writes err through the error table.
func fail(c *gin.Context, err error) {
	status, code, msg := errStatus(err)
	if status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "1")
	}
	writeError(c, status, code, msg)
}

// detail drops a sentinel's own text from a message that wraps it: the error
// code already says what the sentinel said.
func detail(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}
