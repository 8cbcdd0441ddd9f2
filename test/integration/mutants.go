//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// A Mutant is a planted bug: exact-text edits to the product's source that
// break one safety rule or behaviour, and the scenarios expected to catch
// it. `make test-mutants` builds an image from a mutated copy of the tree
// for each mutant and runs its scenarios against it: a scenario that still
// passes has missed the bug. The edits live here, not behind switches in the
// product: the shipped code has no bug to turn on.
type Mutant struct {
	Name      string
	Breaks    string // the rule or behaviour it breaks
	Scenarios []int
	Edits     []Edit
}

// Edit replaces Old, which must occur exactly once in File, by New.
type Edit struct {
	File, Old, New string
}

// Mutants is the catalogue. Every scenario of the suite is named by at
// least one mutant (TestMutantsCoverEveryScenario).
func Mutants() []*Mutant {
	return []*Mutant{
		{
			Name:      "quorum-of-one",
			Breaks:    "DESIGN §6 rule 1: the leader commits (and acknowledges) on its own fsync, without a majority",
			Scenarios: []int{4, 6, 7, 24},
			Edits: []Edit{{"walrepl/core_lead.go",
				"\tq := vals[len(vals)-(len(vals)/2+1)]\n",
				"\tq := vals[len(vals)-1]\n"}},
		},
		{
			Name:      "quorum-of-all",
			Breaks:    "availability: commits wait for every voter instead of a majority, so one slow or lost node stops writes",
			Scenarios: []int{5, 9, 12},
			Edits: []Edit{{"walrepl/core_lead.go",
				"\tq := vals[len(vals)-(len(vals)/2+1)]\n",
				"\tq := vals[0]\n"}},
		},
		{
			// Each fencing layer alone is masked by the others (FINDINGS): a
			// deposed leader steps down when its session ends, when it
			// promises a newer epoch itself, when a follower answers with a
			// newer epoch, and without a majority; followers refuse an older
			// epoch.
			Name:      "unfenced-leader",
			Breaks:    "fencing (DESIGN §6 rule 2): the leader ignores the end of its etcd session, newer epochs (its own promise and its followers') and the loss of its majority; followers accept an older epoch",
			Scenarios: []int{8, 11},
			Edits: []Edit{
				{"node/node.go",
					"\t\t\t\tcase <-l.Done():\n",
					"\t\t\t\tcase <-make(chan struct{}):\n"},
				{"walrepl/core.go",
					"\tif epoch < c.st.PromisedEpoch {\n\t\treturn false\n\t}\n",
					""},
				{"walrepl/core_lead.go",
					"\tld.quorumOK = since < c.cfg.QuorumTimeout\n",
					"\tld.quorumOK = true || since < c.cfg.QuorumTimeout\n"},
				{"walrepl/core.go",
					"\tif ld := c.ld; ld != nil && ld.epoch < epoch {\n",
					"\tif ld := c.ld; false && ld != nil && ld.epoch < epoch {\n"},
				{"walrepl/core_lead.go",
					"\tif resp.Promised > ld.epoch || resp.Epoch > ld.epoch {\n",
					"\tif false && (resp.Promised > ld.epoch || resp.Epoch > ld.epoch) {\n"},
			},
		},
		{
			Name:      "step-down-acks",
			Breaks:    "DESIGN §6 rule 1: writes pending when the leader steps down are acknowledged although they were never committed",
			Scenarios: []int{4},
			Edits: []Edit{{"walrepl/driver.go",
				"\tlr.waiters.release(^uint64(0), err)\n",
				"\tlr.waiters.release(^uint64(0), nil)\n"}},
		},
		{
			Name:      "tail-not-adopted",
			Breaks:    "DESIGN §6 rule 3: a new leader keeps its own tail instead of adopting the most advanced one promised",
			Scenarios: []int{3},
			Edits: []Edit{{"walrepl/core_lead.go",
				"\t\tif ld.best == ld.self {\n",
				"\t\tif true || ld.best == ld.self {\n"}},
		},
		{
			Name:      "divergent-suffix-kept",
			Breaks:    "DESIGN §6 rule 4: a follower keeps frames of another epoch where the leader's log differs",
			Scenarios: []int{4, 10},
			Edits: []Edit{{"walrepl/core.go",
				"; e == frames[0].Epoch {\n",
				"; e == frames[0].Epoch || true {\n"}},
		},
		{
			Name:      "no-catch-up",
			Breaks:    "DESIGN §6 rule 6: a follower that holds part of the log is sent frames from above the leader's safe_seq only: it never gets the committed frames it lacks (an empty one still gets everything)",
			Scenarios: []int{1, 2, 12, 13, 21, 23},
			Edits: []Edit{{"walrepl/core_lead.go",
				"\t\t\tp.next, p.acked = m+1, m\n",
				"\t\t\tp.next, p.acked = m+1, m\n\t\t\tif m > 0 {\n\t\t\t\tp.next = max(m+1, c.lv.safe+1)\n\t\t\t}\n"}},
		},
		{
			Name:      "learner-counted",
			Breaks:    "DESIGN §6 rule 7: a learner's promises and acks count toward the majority",
			Scenarios: []int{22},
			Edits: []Edit{
				{"walrepl/core_lead.go",
					"\tcase resp.Learner:\n\t\tld.learners++\n",
					""},
				{"walrepl/core_lead.go",
					"\tif !resp.Learner && ld.voters[p.peer.Name] {\n",
					"\tif ld.voters[p.peer.Name] {\n"},
			},
		},
		{
			Name:      "unconfirmed-counted",
			Breaks:    "DESIGN §6 rule 13: a restarted node no leader has confirmed (perhaps on an old copy of its disk) counts toward a promise majority",
			Scenarios: []int{25},
			Edits: []Edit{{"walrepl/core_lead.go",
				"\treturn ld.count >= need && (ld.confirmed >= need || ld.count+ld.learners == len(ld.voters))\n",
				"\treturn ld.count >= need && (true || ld.confirmed >= need || ld.count+ld.learners == len(ld.voters))\n"}},
		},
		{
			Name:      "rollback-not-detected",
			Breaks:    "DESIGN §6 rule 7: a WAL that ends below the Seq etcd recorded for it (an old copy restored) votes at once",
			Scenarios: []int{22},
			Edits: []Edit{{"node/node.go",
				"\t\t\t\tWarn(\"WAL_ROLLED_BACK: this WAL ends below what this node was seen to hold; it rejoins as a learner\")\n\t\t\trcfg.JoinAsLearner = true\n",
				"\t\t\t\tWarn(\"WAL_ROLLED_BACK: this WAL ends below what this node was seen to hold; it rejoins as a learner\")\n"}},
		},
		{
			Name:      "empty-disk-votes",
			Breaks:    "DESIGN §6 rule 7: a node that joins an existing cluster with an empty WAL is a voter at once, not a learner",
			Scenarios: []int{14},
			Edits: []Edit{
				{"node/node.go",
					"\twopts.NewAsLearner = cfg.InitialClusterState == \"existing\"\n",
					"\twopts.NewAsLearner = false\n"},
				{"node/node.go",
					"\trcfg.JoinAsLearner = rep.Reset || (rep.Created && cfg.InitialClusterState == \"existing\")\n",
					"\trcfg.JoinAsLearner = rep.Reset\n"},
			},
		},
		{
			Name:      "disk-errors-ignored",
			Breaks:    "DESIGN §6 rule 8: write, fsync and safe_seq-persist errors do not fail the WAL; the node carries on as if they succeeded",
			Scenarios: []int{15, 16},
			Edits: []Edit{{"walrepl/wal.go",
				"func (w *WAL) failLocked(err error) {\n\tif w.failed != nil {\n",
				"func (w *WAL) failLocked(err error) {\n\tif w.failed != nil || errors.Is(err, ErrFailed) {\n"}},
		},
		{
			Name:      "slow-fsync-fatal",
			Breaks:    "liveness: a write that takes over 100 ms to reach the disk is treated as a disk failure",
			Scenarios: []int{18},
			Edits: []Edit{
				{"walrepl/wal.go",
					"\t\terr = w.fault(\"wal-before-fsync\")\n",
					"\t\tt0 := time.Now()\n\t\terr = w.fault(\"wal-before-fsync\")\n"},
				{"walrepl/wal.go",
					"\t\t\tw.observeFsync(time.Since(start))\n\t\t}\n",
					"\t\t\tw.observeFsync(time.Since(start))\n\t\t\tif time.Since(t0) > 100*time.Millisecond {\n\t\t\t\terr = errors.New(\"fsync slower than 100ms\")\n\t\t\t}\n\t\t}\n"},
			},
		},
		{
			Name:      "quorum-timeout-too-tight",
			Breaks:    "liveness: a leader steps down when a majority is not heard within 100 ms, less than a slow link's round trip",
			Scenarios: []int{17},
			Edits: []Edit{{"walrepl/replica.go",
				"\t\tQuorumTimeout:     1500 * time.Millisecond,",
				"\t\tQuorumTimeout:     100 * time.Millisecond,"}},
		},
		{
			Name:      "torn-tail-fatal",
			Breaks:    "recovery: a torn tail (a write cut by a crash) is treated as corruption, so the node never restarts",
			Scenarios: []int{19, 21},
			Edits: []Edit{{"walrepl/recover.go",
				"\tif res.tornAt >= 0 {\n\t\t// Safe to drop",
				"\tif res.tornAt >= 0 {\n\t\treturn nil, nil, fmt.Errorf(\"walrepl: torn tail at offset %d\", res.tornAt)\n\t}\n\tif false {\n\t\t// Safe to drop"}},
		},
		{
			Name:      "checksum-ignored",
			Breaks:    "recovery and reads: a frame whose CRC-32C does not match is trusted",
			Scenarios: []int{20},
			Edits: []Edit{{"walrepl/frame.go",
				"\tif crc != binary.LittleEndian.Uint32(b[4:]) {\n\t\treturn Frame{}, 0, errBadChecksum",
				"\tif crc != binary.LittleEndian.Uint32(b[4:]) && false {\n\t\treturn Frame{}, 0, errBadChecksum"}},
		},
	}
}

// apply returns the file contents after the mutant's edits, reading the
// originals from root. Each Old must occur exactly once: a mutant that no
// longer applies says so instead of testing nothing.
func (m *Mutant) apply(root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, e := range m.Edits {
		b, ok := out[e.File]
		if !ok {
			var err error
			if b, err = os.ReadFile(filepath.Join(root, e.File)); err != nil {
				return nil, fmt.Errorf("mutant %s: %w", m.Name, err)
			}
		}
		if n := bytes.Count(b, []byte(e.Old)); n != 1 {
			return nil, fmt.Errorf("mutant %s: the text to replace occurs %d times in %s (want once); update the mutant to the current code:\n%s",
				m.Name, n, e.File, e.Old)
		}
		out[e.File] = bytes.Replace(b, []byte(e.Old), []byte(e.New), 1)
	}
	return out, nil
}

// repoRoot is the checkout this package lives in.
func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("finding the repository root with git: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// buildMutantImage copies the working tree (tracked and untracked files, as
// they are now) to a temporary directory, applies the mutant and builds
// image from it with build-image.sh.
func buildMutantImage(root string, m *Mutant, image string) (string, error) {
	files, err := m.apply(root)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "autonomy-mutant-"+m.Name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	list, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return "", fmt.Errorf("listing the tree: %w", err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		if rel == "" {
			continue
		}
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the working tree, or a link
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return "", err
		}
		if nb, ok := files[rel]; ok {
			b = nb
		}
		dst := filepath.Join(tmp, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, b, fi.Mode().Perm()); err != nil {
			return "", err
		}
	}
	cmd := exec.Command("bash", "test/integration/build-image.sh")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "IMAGE="+image, "VERSION=mutant-"+m.Name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("building %s: %w\n%s", image, err, out)
	}
	return string(out), nil
}
