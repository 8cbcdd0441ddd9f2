package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/node/proctest"
)

// TestStream_twentyThousandEventsOnOneStream: ~20 000 events go to a real
// three-node cluster as lines of one POST /v1/telemetry/stream, 64 lines in
// flight. Every line is acknowledged in order; every acknowledged event is
// in each node's WAL exactly once, at the Seq its ack gave; and a line sent
// again with the same ids is answered with the Seqs of the first, writing
// nothing (DESIGN §6 rule 10).
func TestStream_twentyThousandEventsOnOneStream(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	c.WaitLeader(60 * time.Second)
	time.Sleep(2 * time.Second) // past the start-up elections: one stream, one leader
	c.WaitLeader(60 * time.Second)
	start := time.Now()
	var eps []string
	for _, n := range c.Nodes {
		eps = append(eps, n.URL())
	}
	cl, err := client.New(eps, client.Options{HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := cl.OpenStream(ctx, client.StreamOptions{Window: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	const lines, perLine = 2000, 10
	ids := make([][]string, 0, lines+lines/100) // each line's ids, by line number - 1
	acks := make(chan []client.StreamAck, 1)
	go func() {
		var got []client.StreamAck
		for a := range s.Acks() {
			got = append(got, a)
		}
		acks <- got
	}()
	for i := 0; i < lines; i++ {
		var evs, lineIDs []string
		for k := 0; k < perLine; k++ {
			id := fmt.Sprintf("stream-%d-%d", i, k)
			lineIDs = append(lineIDs, id)
			evs = append(evs, fmt.Sprintf(`{"id":%q,"kind":"stream","n":%d}`, id, i*perLine+k))
		}
		send := func() {
			if _, err := s.Send(ctx, []byte("["+strings.Join(evs, ",")+"]")); err != nil {
				t.Fatalf("line %d: %v", len(ids)+1, err)
			}
			ids = append(ids, lineIDs)
		}
		send()
		if i%100 == 99 {
			send() // a retry of the same events, still in flight or committed
		}
	}
	s.CloseSend()
	got := <-acks
	if err := s.Err(); err != nil {
		t.Fatalf("the stream ended with %v after %d acks", err, len(got))
	}
	if len(got) != len(ids) {
		t.Fatalf("%d acks for %d lines", len(got), len(ids))
	}
	want := map[string]uint64{} // id → the Seq its ack gave
	var maxSeq uint64
	for i, a := range got {
		if a.Line != i+1 || a.Err != nil || len(a.Seqs) != perLine {
			t.Fatalf("ack %d: line %d, %d Seqs, %v", i, a.Line, len(a.Seqs), a.Err)
		}
		for k, id := range ids[i] {
			if prev, ok := want[id]; ok && prev != a.Seqs[k] {
				t.Fatalf("event %s acknowledged at Seq %d and, sent again, at %d", id, prev, a.Seqs[k])
			}
			want[id] = a.Seqs[k]
			maxSeq = max(maxSeq, a.Seqs[k])
		}
	}
	if len(want) != lines*perLine {
		t.Fatalf("%d distinct events acknowledged, want %d", len(want), lines*perLine)
	}
	t.Logf("%d lines (%d events) acknowledged in %s", len(got), len(got)*perLine, time.Since(start).Round(time.Millisecond))

	for _, n := range c.Nodes {
		var frames []struct {
			seq uint64
			id  string
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			frames = frames[:0]
			var last uint64
			for _, f := range proctest.AllFrames(t, n.URL()) {
				last = max(last, f.Seq)
				var ev struct {
					ID   string `json:"id"`
					Kind string `json:"kind"`
				}
				if f.Type == "event" && json.Unmarshal(f.Event, &ev) == nil && ev.Kind == "stream" {
					frames = append(frames, struct {
						seq uint64
						id  string
					}{f.Seq, ev.ID})
				}
			}
			if last >= maxSeq {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has committed up to Seq %d, the acks reach %d", n.Name, last, maxSeq)
			}
			time.Sleep(100 * time.Millisecond)
		}
		seen := map[string][]uint64{}
		for _, f := range frames {
			seen[f.id] = append(seen[f.id], f.seq)
		}
		for id, seq := range want {
			if at := seen[id]; !slices.Equal(at, []uint64{seq}) {
				t.Fatalf("%s: event %s was acknowledged at Seq %d; the WAL holds it at %v", n.Name, id, seq, at)
			}
		}
		if len(seen) != len(want) {
			t.Fatalf("%s holds %d stream events, %d were acknowledged", n.Name, len(seen), len(want))
		}
	}
}
