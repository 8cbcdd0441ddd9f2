package node_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/node/proctest"
)

func duBytes(t *testing.T, dir string) int64 {
	t.Helper()
	// du fails (exit 1) when retention deletes a segment while it walks the
	// directory: read it again.
	var out []byte
	var err error
	for try := 0; try < 20; try++ {
		if out, err = exec.Command("du", "-s", "-B1", dir).Output(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetention_BoundedDiskOnEveryNode writes three times the byte bound
// through a three-node cluster: every node's telemetry directory stays within
// the bound plus one segment, no segment file grows past its bound plus one
// frame, trims delete files, all nodes keep identical frames from their
// common base, and the fleet summary and idempotent retries still answer
// correctly for events whose frames were trimmed — also after a restart.
func TestRetention_BoundedDiskOnEveryNode(t *testing.T) {
	const bound, segBytes = 1 << 20, 128 << 10
	c := proctest.NewCluster(t, 3, "--wal-retention-bytes", strconv.Itoa(bound), "--wal-segment-bytes", strconv.Itoa(segBytes))
	c.Start()
	leader := c.WaitLeader(60 * time.Second)
	pad := strings.Repeat("x", 900)
	var firstSeq uint64
	for b := 0; b < 35; b++ { // 35 batches × 100 events × ~1 KiB ≈ 3.4 MiB
		var evs []string
		for i := 0; i < 100; i++ {
			evs = append(evs, fmt.Sprintf(`{"id":"ev-%d-%d","kind":"k%d","agent":"agent-%d","pad":%q}`, b, i, i%3, b%5, pad))
		}
		code, _, body := do(t, "POST", leader.URL()+"/v1/telemetry/events", "", "["+strings.Join(evs, ",")+"]", nil)
		if code != http.StatusOK {
			t.Fatalf("batch %d: %d %s", b, code, body)
		}
		if b == 0 {
			var ir wire.IngestResponse
			json.Unmarshal(body, &ir)
			firstSeq = ir.Seqs[0]
		}
	}
	waitConverged(t, c, 30*time.Second)
	// Retention runs every second; wait until every node has trimmed.
	const unit = segBytes + 1100 // one segment of these frames, plus one frame
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		dir := filepath.Join(n.DataDir, "telemetry")
		for {
			used := duBytes(t, dir)
			if used <= bound+unit+64<<10 { // + safe_seq, state, base and checkpoint files
				t.Logf("%s: telemetry dir uses %d bytes (bound %d)", n.Name, used, bound)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: telemetry dir uses %d bytes, bound %d + one trim unit %d", n.Name, used, bound, unit)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	ws, _ := walStatus(leader)
	if ws.Base <= firstSeq || ws.TrimmedFrames == 0 {
		t.Fatalf("nothing was trimmed: %+v", ws)
	}
	for _, n := range c.Nodes {
		dir := filepath.Join(n.DataDir, "telemetry")
		ents, _ := os.ReadDir(dir)
		var segs int
		for _, e := range ents {
			info, err := e.Info()
			if err != nil {
				continue
			}
			if strings.HasSuffix(e.Name(), ".seg") || e.Name() == "telemetry.wal" {
				segs++
				if info.Size() > segBytes+1100 {
					t.Fatalf("%s: %s has %d bytes, over the segment bound %d plus one frame", n.Name, e.Name(), info.Size(), segBytes)
				}
			}
			if e.Name() == "telemetry-00000000000000000001.seg" {
				t.Fatalf("%s: the first segment survived the trims", n.Name)
			}
		}
		if segs < 2 {
			t.Fatalf("%s: %d segment files", n.Name, segs)
		}
		// autonomy_wal_bytes_on_disk (bytes_on_disk) is the segment files'
		// sizes; retention may trim between the two readings, so retry.
		var sum int64
		for try := 0; ; try++ {
			ws, _ := walStatus(n)
			sum = 0
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if info, err := e.Info(); err == nil && (strings.HasSuffix(e.Name(), ".seg") || e.Name() == "telemetry.wal") {
					sum += info.Size()
				}
			}
			if ws.BytesOnDisk == sum {
				break
			}
			if try == 20 {
				t.Fatalf("%s: bytes_on_disk %d, the segment files' sizes sum to %d", n.Name, ws.BytesOnDisk, sum)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	c.CheckAllNodes(nil)

	check := func(when string) {
		t.Helper()
		l := c.WaitLeader(30 * time.Second)
		code, _, body := do(t, "GET", l.URL()+"/v1/fleet/summary", "", "", nil)
		var fs wire.FleetSummary
		json.Unmarshal(body, &fs)
		if code != 200 || len(fs.Agents) != 5 || fs.Events != 3500 || fs.ByKind["k0"] != 34*35 {
			t.Fatalf("%s: fleet summary forgot trimmed events: %d %s", when, code, body)
		}
		// A retry of the very first event, whose frame is long trimmed.
		code, _, body = do(t, "POST", l.URL()+"/v1/telemetry/events", "", fmt.Sprintf(`{"id":"ev-0-0","kind":"k0","agent":"agent-0","pad":%q}`, pad), nil)
		var ir wire.IngestResponse
		json.Unmarshal(body, &ir)
		if code != 200 || len(ir.Seqs) != 1 || ir.Seqs[0] != firstSeq {
			t.Fatalf("%s: retry of a trimmed event got %d %s, want Seq=%d", when, code, body, firstSeq)
		}
	}
	check("before restart")
	for _, n := range c.Nodes {
		if n.Stop() != 0 {
			t.Fatalf("%s did not stop cleanly", n.Name)
		}
	}
	c.Start()
	check("after restarting every node")
}
