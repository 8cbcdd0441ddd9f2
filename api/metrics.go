package api

import (
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the API's Prometheus series (docs/metrics.md). The caller
// registers them (node/ uses the default registry) and passes them in
// Config.Metrics; a nil *Metrics records nothing.
type Metrics struct {
	httpRequests   *prometheus.CounterVec
	ingestRequests *prometheus.CounterVec
	ingestEvents   *prometheus.CounterVec
	commitLatency  prometheus.Histogram
}

// NewMetrics returns unregistered API metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autonomy_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		ingestRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autonomy_ingest_requests_total",
			Help: "Ingest requests handled on the leader, by outcome: ok or the error code answered.",
		}, []string{"outcome"}),
		ingestEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autonomy_ingest_events_total",
			Help: "Events in ingest requests handled on the leader, by the request's outcome: ok (acknowledged) or the error code answered.",
		}, []string{"outcome"}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "autonomy_ingest_commit_latency_seconds",
			Help:    "Time from an ingest request's arrival to its acknowledgement (every event committed on a majority).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15), // 0.5ms .. ~8.2s
		}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.httpRequests.Describe(ch)
	m.ingestRequests.Describe(ch)
	m.ingestEvents.Describe(ch)
	m.commitLatency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.httpRequests.Collect(ch)
	m.ingestRequests.Collect(ch)
	m.ingestEvents.Collect(ch)
	m.commitLatency.Collect(ch)
}

// countRequests is the gin middleware behind autonomy_http_requests_total.
// The route is gin's template (/v1/members/:name), never the raw path, so
// the label set stays bounded; unmatched paths share "unmatched".
func (m *Metrics) countRequests(c *gin.Context) {
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	m.httpRequests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
}

// ingestDone records one ingest request of events events that arrived at
// start and ended with outcome ("ok" or the error code answered).
func (m *Metrics) ingestDone(start time.Time, events int, outcome string) {
	if m == nil {
		return
	}
	m.ingestRequests.WithLabelValues(outcome).Inc()
	if events > 0 {
		m.ingestEvents.WithLabelValues(outcome).Add(float64(events))
	}
	if outcome == "ok" {
		m.commitLatency.Observe(time.Since(start).Seconds())
	}
}
