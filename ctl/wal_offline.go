package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/node/datadir"
	"github.com/autonomyops/orchestrator/walrepl"
)

// walCheck is what the offline recovery checks found: `wal verify -o json`
// and `wal status --data-dir -o json`. Every field is always present.
type walCheck struct {
	OK           bool     `json:"ok"`
	Cause        string   `json:"cause"` // a walrepl.Cause code, "" when ok or on an I/O error
	Error        string   `json:"error"` // the exact recovery message, "" when ok
	DataDir      string   `json:"data_dir"`
	Dir          string   `json:"dir"`  // the telemetry directory
	Node         string   `json:"node"` // the node's name from node.json, if readable
	Initialized  bool     `json:"initialized"`
	WALExists    bool     `json:"wal_exists"`
	ResetPending bool     `json:"reset_pending"` // the one-shot reset marker is present
	WALID        string   `json:"wal_id"`
	Base         uint64   `json:"base"`
	FirstSeq     uint64   `json:"first_seq"`
	LastSeq      uint64   `json:"last_seq"`
	LastEpoch    uint64   `json:"last_epoch"`
	SafeSeq      uint64   `json:"safe_seq"`
	Frames       int      `json:"frames"`
	EndOffset    int64    `json:"end_offset"` // where the last whole frame ends
	FileSize     int64    `json:"file_size"`
	TornTail     bool     `json:"torn_tail"`
	TornOffset   int64    `json:"torn_offset"`
	TornBytes    int64    `json:"torn_bytes"`
	Seq          uint64   `json:"seq"`    // the frame a violation concerns, 0 if none
	Offset       int64    `json:"offset"` // its byte offset, -1 if none
	Files        []fileEn `json:"files"`
	Backups      []string `json:"backups"` // telemetry.corrupt-* directories in the data dir
	// Segments is the WAL's chain, sealed segments then telemetry.wal;
	// Repairs what the next start finishes after a crash in a roll, trim or
	// truncation; FormatV1 that telemetry.wal is a single-file WAL the next
	// start upgrades in place.
	Segments []walrepl.SegmentInfo `json:"segments"`
	Repairs  []string              `json:"repairs"`
	FormatV1 bool                  `json:"format_v1"`

	err error // the violation or I/O error, for the exit status
}

type fileEn struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Mode string `json:"mode"`
}

// telemetryDirOf checks --data-dir and returns its telemetry directory.
func telemetryDirOf(dataDir string) (string, error) {
	if dataDir == "" {
		return "", usagef("--data-dir is required: the data directory of the stopped node (e.g. /var/lib/autonomy)")
	}
	st, err := os.Stat(dataDir)
	if err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("data dir %s is not a directory", dataDir)
	}
	tdir := filepath.Join(dataDir, datadir.TelemetryDir)
	if fileExists(filepath.Join(dataDir, walrepl.WALFile)) && !fileExists(tdir) {
		return "", usagef("%s holds %s: it is the telemetry directory itself; pass the node's data directory, its parent: --data-dir %s",
			dataDir, walrepl.WALFile, filepath.Dir(filepath.Clean(dataDir)))
	}
	return tdir, nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// checkWAL runs walrepl.Verify on dataDir's telemetry directory, read-only.
// The returned error is about the arguments; the WAL's own state, sound or
// not, is in the walCheck.
func checkWAL(dataDir string) (*walCheck, error) {
	tdir, err := telemetryDirOf(dataDir)
	if err != nil {
		return nil, err
	}
	c := &walCheck{
		DataDir:      dataDir,
		Dir:          tdir,
		Initialized:  fileExists(filepath.Join(dataDir, datadir.IdentityFile)),
		WALExists:    fileExists(filepath.Join(tdir, walrepl.WALFile)),
		ResetPending: fileExists(filepath.Join(tdir, walrepl.ResetMarkerFile)),
		Offset:       -1,
		Files:        []fileEn{},
		Backups:      []string{},
		Segments:     []walrepl.SegmentInfo{},
		Repairs:      []string{},
	}
	c.Node = nodeName(dataDir)
	c.Files = listFiles(tdir)
	c.Backups = listBackups(dataDir)
	rep, err := walrepl.Verify(tdir, c.Initialized, 0)
	if err != nil {
		c.err, c.Error = err, err.Error()
		var re *walrepl.RecoveryError
		if errors.As(err, &re) {
			c.Cause, c.Seq, c.Offset = string(re.Cause), re.Seq, re.Offset
		}
		return c, nil
	}
	c.OK = true
	c.WALID, c.Base, c.FirstSeq, c.LastSeq, c.LastEpoch = rep.WALID, rep.Base, rep.FirstSeq, rep.LastSeq, rep.LastEpoch
	c.SafeSeq, c.Frames, c.EndOffset, c.FileSize = rep.SafeSeq, rep.Frames, rep.EndOffset, rep.FileSize
	c.TornTail, c.TornOffset, c.TornBytes = rep.TornTail, rep.TornOffset, rep.TornBytes
	if rep.Segments != nil {
		c.Segments = rep.Segments
	}
	if rep.Repairs != nil {
		c.Repairs = rep.Repairs
	}
	c.FormatV1 = rep.FormatV1
	return c, nil
}

// nodeName reads the node's name from DIR/node.json, best effort.
func nodeName(dataDir string) string {
	id, _, _ := datadir.ReadIdentity(dataDir)
	return id.Name
}

func listFiles(dir string) []fileEn {
	out := []fileEn{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, fileEn{Name: e.Name(), Size: info.Size(), Mode: info.Mode().String()})
	}
	return out
}

func listBackups(dataDir string) []string {
	out := []string{}
	m, _ := filepath.Glob(filepath.Join(dataDir, datadir.BackupPrefix+"*"))
	for _, p := range m {
		out = append(out, filepath.Base(p))
	}
	sort.Strings(out)
	return out
}

// state is a one-word summary for tables.
func (c *walCheck) state() string {
	switch {
	case !c.OK && c.Cause != "":
		return "VIOLATION " + c.Cause
	case !c.OK:
		return "ERROR"
	case !c.WALExists && c.ResetPending:
		return "reset pending: the next start begins with an empty WAL (WAL_RESET_BY_OPERATOR)"
	case !c.WALExists:
		return "no WAL yet: the next start creates one"
	case c.TornTail:
		return "ok, with a repairable torn tail"
	}
	return "ok"
}

func (in *invocation) walStatusOffline(dataDir string) error {
	c, err := checkWAL(dataDir)
	if err != nil {
		return err
	}
	if err := in.emit(c, func(w *tabw) {
		fmt.Fprintf(w, "NODE\t%s\n", dash(c.Node))
		fmt.Fprintf(w, "DATA_DIR\t%s\n", c.DataDir)
		fmt.Fprintf(w, "TELEMETRY_DIR\t%s\n", c.Dir)
		fmt.Fprintf(w, "STATE\t%s\n", c.state())
		fmt.Fprintf(w, "INITIALIZED\t%t\t(%s %s)\n", c.Initialized, datadir.IdentityFile, map[bool]string{true: "exists", false: "absent"}[c.Initialized])
		if c.OK && c.WALExists {
			fmt.Fprintf(w, "WAL_ID\t%s\n", c.WALID)
			fmt.Fprintf(w, "FIRST_SEQ\t%d\n", c.FirstSeq)
			fmt.Fprintf(w, "LAST_SEQ\t%d\t(epoch %d)\n", c.LastSeq, c.LastEpoch)
			fmt.Fprintf(w, "SAFE_SEQ\t%d\n", c.SafeSeq)
			fmt.Fprintf(w, "FRAMES\t%d\n", c.Frames)
			fmt.Fprintf(w, "END_OFFSET\t%d\tof %d bytes (%s)\n", c.EndOffset, c.FileSize, walrepl.WALFile)
			if c.TornTail {
				fmt.Fprintf(w, "TORN_TAIL\t%d bytes at offset %d\t(the next start truncates them)\n", c.TornBytes, c.TornOffset)
			}
			if c.FormatV1 {
				fmt.Fprintf(w, "FORMAT\tversion 1 (one file)\t(the next start upgrades it in place: it becomes the first sealed segment)\n")
			}
			fmt.Fprintf(w, "SEGMENTS\t%d\n", len(c.Segments))
			for _, s := range c.Segments {
				fmt.Fprintf(w, "  %s\tSeq %d..%d\t%d bytes\n", s.Name, s.FirstSeq, s.LastSeq, s.Bytes)
			}
			for _, r := range c.Repairs {
				fmt.Fprintf(w, "REPAIR\t%s\t(the next start does it)\n", r)
			}
		}
		fmt.Fprintln(w, "FILES")
		for _, f := range c.Files {
			fmt.Fprintf(w, "  %s\t%d bytes\t%s\n", f.Name, f.Size, f.Mode)
		}
		if len(c.Backups) > 0 {
			fmt.Fprintf(w, "BACKUPS\t%s\n", strings.Join(c.Backups, " "))
		}
	}); err != nil {
		return err
	}
	return in.walCheckFailure(c)
}

// walCheckFailure prints a failed check's message and guidance on stderr
// (table output) and returns the error that carries the exit status.
func (in *invocation) walCheckFailure(c *walCheck) error {
	if c.OK {
		return nil
	}
	if !in.jsonOutput() {
		w := in.cli.Stderr
		fmt.Fprintln(w, c.Error)
		printHints(w, recoveryHints(c)...)
	}
	return &errSilent{code: exitCode(c.err)}
}

// recoveryHints follows the runbook's section 3 recovery paths.
func recoveryHints(c *walCheck) []string {
	if c.Cause == "" {
		return nil
	}
	h := []string{fmt.Sprintf(hintWALCause, c.Cause, walrepl.ExitFailHard)}
	switch walrepl.Cause(c.Cause) {
	case walrepl.CauseSafeSeqMissing, walrepl.CauseWALMissing:
		return h // the message names the variables to set
	}
	h = append(h, hintWALStorage, fmt.Sprintf(hintWALReset, c.DataDir), hintWALReplicates)
	return h
}

func (in *invocation) walInspectOffline(dataDir string, cutoff time.Time, kind string, limit int) error {
	tdir, err := telemetryDirOf(dataDir)
	if err != nil {
		return err
	}
	ir := &wire.InspectResponse{Node: nodeName(dataDir), Frames: []wire.Frame{}}
	var scanErr error
	if !fileExists(filepath.Join(tdir, walrepl.WALFile)) {
		// Nothing to read; Verify says whether that is fine.
		c, err := checkWAL(dataDir)
		if err != nil {
			return err
		}
		scanErr = c.err
	} else {
		cut := int64(0)
		if !cutoff.IsZero() {
			cut = cutoff.UnixNano()
		}
		ring := newFrameRing(limit)
		rep, err := walrepl.ScanFrames(tdir, 0, func(f *walrepl.Frame, _ int64) error {
			if f.Time < cut {
				return nil
			}
			if kind != "" && (f.Type != walrepl.FrameEvent || eventKind(f.Payload) != kind) {
				return nil
			}
			ring.push(wire.Frame{
				Seq:   f.Seq,
				Epoch: f.Epoch,
				TS:    time.Unix(0, f.Time).UTC(),
				Type:  f.Type.String(),
				Event: json.RawMessage(append([]byte(nil), f.Payload...)),
			})
			return nil
		})
		scanErr = err
		if rep != nil {
			ir.SafeSeq = rep.SafeSeq
		}
		ir.Frames = ring.frames()
	}
	if err := in.emit(ir, func(w *tabw) { inspectTable(w, ir, tdir, true) }); err != nil {
		return err
	}
	if scanErr != nil {
		c := &walCheck{DataDir: dataDir, Dir: tdir, Error: scanErr.Error(), err: scanErr}
		var re *walrepl.RecoveryError
		if errors.As(scanErr, &re) {
			c.Cause = string(re.Cause)
		}
		if in.jsonOutput() {
			fmt.Fprintln(in.cli.Stderr, c.Error) // stdout holds the frames read before the damage
		}
		return in.walCheckFailure(c)
	}
	return nil
}

// frameRing keeps the newest n frames (all of them when n is 0).
type frameRing struct {
	n     int
	buf   []wire.Frame
	start int
}

func newFrameRing(n int) *frameRing { return &frameRing{n: n} }

func (r *frameRing) push(f wire.Frame) {
	if r.n == 0 || len(r.buf) < r.n {
		r.buf = append(r.buf, f)
		return
	}
	r.buf[r.start] = f
	r.start = (r.start + 1) % r.n
}

func (r *frameRing) frames() []wire.Frame {
	out := make([]wire.Frame, 0, len(r.buf))
	out = append(out, r.buf[r.start:]...)
	return append(out, r.buf[:r.start]...)
}

// isNotExist is errors.Is(err, fs.ErrNotExist), spelled once.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
