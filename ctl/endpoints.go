package ctl

import (
	"fmt"
	"strings"

	"github.com/autonomyops/orchestrator/api/client"
)

// Environment variables autonomyctl reads. Public interface (runbook §4).
const (
	EnvOrchestratorURL = "AUTONOMY_ORCHESTRATOR_URL"
	EnvToken           = "AUTONOMY_TOKEN"
	EnvCACert          = "AUTONOMY_CACERT"
)

// DefaultListenURL is where a node listens by default (0.0.0.0:8888), as
// seen from the node itself; used in hints, never as an implicit endpoint.
const DefaultListenURL = "http://localhost:8888"

// endpointSet is the resolved list of node URLs and where it came from.
type endpointSet struct {
	URLs   []string
	Source string // "--endpoints", "AUTONOMY_ORCHESTRATOR_URL" or "config file <path>"
}

// noEndpointError: no endpoint anywhere. Its text says how to set one.
type noEndpointError struct{ configPath string }

func (e *noEndpointError) Error() string {
	return fmt.Sprintf("no orchestrator endpoint configured (default: none, it must be set explicitly). Set one of:\n"+
		"  export %s=%s        (a comma-separated list is allowed)\n"+
		"  autonomyctl config set orchestrator.url %s   (persisted in %s)\n"+
		"  --endpoints %s,http://node-b:8888",
		EnvOrchestratorURL, DefaultListenURL, DefaultListenURL, e.configPath, DefaultListenURL)
}

// resolveEndpoints applies DESIGN §8's precedence: --endpoints, then
// AUTONOMY_ORCHESTRATOR_URL, then the CLI config file, then an error that
// says how to set one.
func (in *invocation) resolveEndpoints() (endpointSet, error) {
	if in.flags.endpoints != "" {
		urls, err := parseEndpointList(in.flags.endpoints)
		if err != nil {
			return endpointSet{}, usagef("--endpoints: %v", err)
		}
		return endpointSet{URLs: urls, Source: "--endpoints"}, nil
	}
	if v := strings.TrimSpace(in.cli.getenv(EnvOrchestratorURL)); v != "" {
		urls, err := parseEndpointList(v)
		if err != nil {
			return endpointSet{}, usagef("%s=%q: %v", EnvOrchestratorURL, v, err)
		}
		return endpointSet{URLs: urls, Source: EnvOrchestratorURL}, nil
	}
	path := in.cli.configPath()
	cfg, err := loadConfig(path)
	if err != nil {
		return endpointSet{}, err
	}
	if v, ok := cfg.get("orchestrator.url"); ok && strings.TrimSpace(v) != "" {
		urls, err := parseEndpointList(v)
		if err != nil {
			return endpointSet{}, fmt.Errorf("%s: orchestrator.url=%q: %v", path, v, err)
		}
		return endpointSet{URLs: urls, Source: "config file " + path}, nil
	}
	return endpointSet{}, &noEndpointError{configPath: path}
}

// parseEndpointList splits a comma-separated list of URLs and normalises
// each ("host:8888" means http://host:8888). Duplicates are dropped.
func parseEndpointList(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		u, err := client.NormalizeEndpoint(part)
		if err != nil {
			return nil, err
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no URL in %q", s)
	}
	return out, nil
}
