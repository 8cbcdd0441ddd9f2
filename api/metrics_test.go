package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// ingestBackend is what ingest needs: a serving leader that commits
// everything at once. The other roles are there, nil inside, and not called.
type ingestBackend struct {
	ClusterView
	Log
	SettingsStore
	AuditLog
	Membership
	FailoverRunner
	Snapshotter
}

func (f ingestBackend) backends() Backends {
	return Backends{Node: f, Cluster: f, Ingest: f, Log: f, Fleet: NewFleet(), Settings: f, Audit: f, Members: f, Failover: f, Snapshot: f}
}

func (ingestBackend) Serving() bool                  { return true }
func (ingestBackend) Leader() (string, string, bool) { return "n1", "", true }
func (ingestBackend) NodeName() string               { return "n1" }
func (ingestBackend) Health() (Health, bool) {
	return Health{Status: "ok", Role: "leader", Node: "n1", WAL: "ok"}, true
}
func (ingestBackend) Ingest(_ context.Context, p [][]byte, _ []string) ([]uint64, uint64, error) {
	seqs := make([]uint64, len(p))
	for i := range seqs {
		seqs[i] = uint64(i + 1)
	}
	return seqs, uint64(len(p)), nil
}

// value finds one sample by family name and label values (in label order).
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return sampleValue(mf.GetType(), m), true
		}
	}
	return 0, false
}

func sampleValue(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetGauge().GetValue()
}

// TestMetrics_countRoutesCodesAndIngest: requests are counted by route
// template and code, ingest by outcome, and acknowledged requests feed the
// commit latency histogram.
func TestMetrics_countRoutesCodesAndIngest(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	cfg := DefaultConfig()
	cfg.Instruments = m
	h, err := NewHandler(cfg, ingestBackend{}.backends())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	post := func(body string) int {
		resp, err := http.Post(srv.URL+"/v1/telemetry/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(`[{"kind":"a"},{"kind":"b"},{"kind":"c"}]`); c != 200 {
		t.Fatalf("ingest: %d", c)
	}
	if c := post(`{"kind":"a"}`); c != 200 {
		t.Fatalf("ingest: %d", c)
	}
	if c := post(`{"kind": oops}`); c != 400 {
		t.Fatalf("bad JSON: %d", c)
	}
	for _, p := range []string{"/v1/health", "/no/such/route"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"autonomy_http_requests_total", map[string]string{"route": "/v1/telemetry/events", "method": "POST", "code": "200"}, 2},
		{"autonomy_http_requests_total", map[string]string{"route": "/v1/telemetry/events", "method": "POST", "code": "400"}, 1},
		{"autonomy_http_requests_total", map[string]string{"route": "/v1/health", "method": "GET", "code": "200"}, 1},
		{"autonomy_http_requests_total", map[string]string{"route": "unmatched", "method": "GET", "code": "404"}, 1},
		{"autonomy_ingest_requests_total", map[string]string{"outcome": "ok"}, 2},
		{"autonomy_ingest_requests_total", map[string]string{"outcome": "bad_json"}, 1},
		{"autonomy_ingest_events_total", map[string]string{"outcome": "ok"}, 4},
		{"autonomy_ingest_commit_latency_seconds", nil, 2},
	} {
		if got, ok := value(t, reg, tc.name, tc.labels); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
}
