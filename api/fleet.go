package api

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
)

// Fleet aggregates committed events per agent. It catches up lazily from the
// WAL, only up to safe_seq (committed frames never change, so it never has to
// forget anything). Its state can be checkpointed (State/Restore) so that
// retention trimming the frames that told it does not make it forget.
type Fleet struct {
	mu     sync.Mutex
	upTo   uint64
	agents map[string]*FleetAgent
	byKind map[string]uint64
	events uint64
	errors uint64
}

// NewFleet returns an empty aggregator.
func NewFleet() *Fleet {
	return &Fleet{agents: map[string]*FleetAgent{}, byKind: map[string]uint64{}}
}

// FleetState is a checkpoint of a Fleet.
type FleetState struct {
	UpTo   uint64            `json:"up_to"`
	Agents []FleetAgent      `json:"agents"`
	ByKind map[string]uint64 `json:"by_kind"`
	Events uint64            `json:"events"`
	Errors uint64            `json:"errors"`
}

// CatchUp aggregates committed frames not seen yet and returns the state.
func (f *Fleet) CatchUp(w Log) (FleetState, error) {
	sum, err := f.Summary(w)
	if err != nil {
		return FleetState{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return FleetState{UpTo: f.upTo, Agents: sum.Agents, ByKind: sum.ByKind, Events: sum.Events, Errors: sum.Errors}, nil
}

// Restore loads a checkpoint into an empty Fleet.
func (f *Fleet) Restore(st FleetState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upTo, f.events, f.errors = st.UpTo, st.Events, st.Errors
	for k, v := range st.ByKind {
		f.byKind[k] = v
	}
	for _, a := range st.Agents {
		c := a
		c.ByKind = map[string]uint64{}
		for k, v := range a.ByKind {
			c.ByKind[k] = v
		}
		f.agents[a.Agent] = &c
	}
}

func (f *Fleet) add(fr *walrepl.Frame) {
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

// Summary catches up and returns the fleet summary.
func (f *Fleet) Summary(w Log) (FleetSummary, error) {
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
	return f.summaryLocked(safe), nil
}

// State is the aggregate as it stands, without catching up: what a
// checkpoint written at a stop keeps (the next start catches up from UpTo).
func (f *Fleet) State() FleetState {
	f.mu.Lock()
	defer f.mu.Unlock()
	sum := f.summaryLocked(0)
	return FleetState{UpTo: f.upTo, Agents: sum.Agents, ByKind: sum.ByKind, Events: sum.Events, Errors: sum.Errors}
}

func (f *Fleet) summaryLocked(safe uint64) FleetSummary {
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
	return out
}
