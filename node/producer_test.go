package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/node/proctest"
)

// TestProducer_leaderKilledMidStream: the Go client's producer sends events
// in batches while the leader is kill -9'd; it retries each unanswered batch
// with the same ids on the new leader, so every event is acknowledged once,
// with the Seq at which the cluster holds it, and no event is written twice
// (DESIGN §6 rule 10).
func TestProducer_leaderKilledMidStream(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := c.WaitLeader(60 * time.Second)
	var eps []string
	for _, n := range c.Nodes {
		eps = append(eps, n.URL())
	}
	cl, err := client.New(eps, client.Options{HTTPClient: &http.Client{Timeout: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	p := cl.NewProducer(client.ProducerOptions{Linger: 5 * time.Millisecond, MaxBatch: 200, RetryFor: 60 * time.Second})
	ctx := context.Background()
	const total = 6000
	pend := make([]*client.Pending, 0, total)
	killed := false
	for i := 0; i < total; i++ {
		pe, err := p.Send(ctx, []byte(fmt.Sprintf(`{"kind":"producer","n":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, pe)
		if i == total/3 && !killed {
			killed = true
			leader.Kill()
		}
		if i == 2*total/3 {
			leader.Start()
		}
		if i%200 == 0 {
			time.Sleep(10 * time.Millisecond) // an agent's pace, so the kill lands mid-stream
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for i, pe := range pend {
		seq, err := pe.Wait(ctx)
		if err != nil {
			t.Fatalf("event %d (id %s) failed across the leader's kill: %v", i, pe.ID, err)
		}
		want[pe.ID] = seq
	}
	leader = c.WaitLeader(30 * time.Second)
	got := map[string][]uint64{}
	for _, e := range proctest.AllEvents(t, leader.URL()) {
		var ev struct {
			ID   string `json:"id"`
			Kind string `json:"kind"`
		}
		if json.Unmarshal(e.Event, &ev) == nil && ev.Kind == "producer" {
			got[ev.ID] = append(got[ev.ID], e.Seq)
		}
	}
	for id, seq := range want {
		if s := got[id]; len(s) != 1 || s[0] != seq {
			t.Fatalf("event %s was acknowledged at Seq %d; the cluster holds it at %v", id, seq, s)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("the cluster holds %d producer events, %d were sent", len(got), len(want))
	}
}
