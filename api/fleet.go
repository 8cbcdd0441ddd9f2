package api

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
)

// fleet aggregates committed events per agent. It catches up lazily from the
// WAL, only up to safe_seq (committed frames never change, so it never has to
// forget anything).
type fleet struct {
	mu     sync.Mutex
	upTo   uint64
	agents map[string]*FleetAgent
	byKind map[string]uint64
	events uint64
	errors uint64
}

func newFleet() *fleet {
	return &fleet{agents: map[string]*FleetAgent{}, byKind: map[string]uint64{}}
}

func (f *fleet) add(fr *walrepl.Frame) {
	var ev struct {
		Kind  string `json:"kind"`
		Agent string `json:"agent"`
		Level string `json:"level"`
	}
	json.Unmarshal(fr.Payload, &ev)
	kind := ev.Kind
	if kind == "" {
		kind = "unknown"
	}
	isErr := ev.Kind == "error" || ev.Level == "error"
	f.events++
	f.byKind[kind]++
	if isErr {
		f.errors++
	}
	if ev.Agent == "" {
		return
	}
	a := f.agents[ev.Agent]
	if a == nil {
		a = &FleetAgent{Agent: ev.Agent, ByKind: map[string]uint64{}}
		f.agents[ev.Agent] = a
	}
	a.Events++
	a.ByKind[kind]++
	if isErr {
		a.Errors++
	}
	a.LastSeq = fr.Seq
	if ts := time.Unix(0, fr.Time).UTC(); ts.After(a.LastSeen) {
		a.LastSeen = ts
	}
}

func (f *fleet) summary(w *walrepl.WAL) (FleetSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := frameQuery{afterSeq: f.upTo}
	safe, err := scanCommitted(w, &q, func(fr *walrepl.Frame) bool {
		if fr.Type == walrepl.FrameEvent {
			f.add(fr)
		}
		f.upTo = fr.Seq
		return true
	})
	if err != nil {
		return FleetSummary{}, err
	}
	out := FleetSummary{ByKind: map[string]uint64{}, Events: f.events, Errors: f.errors, SafeSeq: safe, Agents: []FleetAgent{}}
	for k, v := range f.byKind {
		out.ByKind[k] = v
	}
	for _, a := range f.agents {
		c := *a
		c.ByKind = map[string]uint64{}
		for k, v := range a.ByKind {
			c.ByKind[k] = v
		}
		out.Agents = append(out.Agents, c)
	}
	sort.Slice(out.Agents, func(i, j int) bool { return out.Agents[i].Agent < out.Agents[j].Agent })
	return out, nil
}
