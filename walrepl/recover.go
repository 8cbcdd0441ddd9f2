package walrepl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
)

// Report describes a WAL as recovery found it.
type Report struct {
	Dir        string `json:"dir"`
	WALID      string `json:"wal_id,omitempty"`
	Base       uint64 `json:"base"`
	FirstSeq   uint64 `json:"first_seq"`
	LastSeq    uint64 `json:"last_seq"`
	LastEpoch  uint64 `json:"last_epoch"`
	SafeSeq    uint64 `json:"safe_seq"`
	Frames     int    `json:"frames"`
	EndOffset  int64  `json:"end_offset"` // where the last whole frame ends, in telemetry.wal
	FileSize   int64  `json:"file_size"`  // telemetry.wal's size
	TornTail   bool   `json:"torn_tail"`
	TornOffset int64  `json:"torn_offset,omitempty"`
	TornBytes  int64  `json:"torn_bytes,omitempty"`

	Created        bool   `json:"created,omitempty"`         // a fresh WAL was created
	Reset          bool   `json:"reset,omitempty"`           // an operator reset happened at this start
	ResetVia       string `json:"reset_via,omitempty"`       // "env" or "marker"
	LegacyUpgraded bool   `json:"legacy_upgraded,omitempty"` // safe_seq was written from an old WAL
	ResetVarIgnore bool   `json:"-"`

	// Segments is the chain from the base: sealed segments, then
	// telemetry.wal.
	Segments []SegmentInfo `json:"segments"`
	// FormatV1 is set when telemetry.wal is a format-version-1 file: the
	// next start seals it as the first segment (upgrade in place).
	FormatV1 bool `json:"format_v1,omitempty"`
	// Repairs lists what the start makes of a crash inside a roll, a trim or
	// a truncation (Verify reports them; Open has made them).
	Repairs  []string `json:"repairs,omitempty"`
	Upgraded bool     `json:"upgraded,omitempty"` // this start sealed a version-1 telemetry.wal

	scan *scanResult
}

// SegmentInfo describes one segment file.
type SegmentInfo struct {
	Name     string `json:"name"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"` // FirstSeq-1 when it holds no frame
	Bytes    int64  `json:"bytes"`    // where its last whole frame ends
	Version  int    `json:"version"`  // 1: a sealed format-version-1 file; 2: a segment
}

// ResetMarker is the content of the one-shot reset marker.
type ResetMarker struct {
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Backup string    `json:"backup"`
}

// Verify runs the recovery checks read-only, exactly as a start would, and
// changes nothing on disk. initialized says whether the node was initialised
// (node.json exists), which makes a missing WAL a violation. A repairable torn
// tail is reported in the Report, not as an error.
func Verify(dir string, initialized bool, maxPayload int) (*Report, error) {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	walPath := filepath.Join(dir, WALFile)
	walExists, err := exists(walPath)
	if err != nil {
		return nil, err
	}
	marker, err := exists(filepath.Join(dir, ResetMarkerFile))
	if err != nil {
		return nil, err
	}
	if !walExists {
		if marker {
			return &Report{Dir: dir, Base: 1}, nil // the next start performs the reset
		}
		safeExists, err := exists(filepath.Join(dir, SafeSeqFile))
		if err != nil {
			return nil, err
		}
		if initialized || safeExists {
			return nil, errWALMissing(dir, "node.json or telemetry.safe_seq shows the node was initialised")
		}
		return &Report{Dir: dir, Base: 1}, nil
	}
	safe, err := readSafeSeq(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errSafeSeqMissing(dir)
	}
	if err != nil {
		return nil, err
	}
	return checkDir(osFS{}, dir, safe, nil)
}

// ScanFrames verifies the WAL in dir like Verify and calls visit with every
// whole frame, in Seq order, with its byte offset. It never writes. The
// Frame and its Payload are only valid during the call (both are reused).
// Returning an error from visit stops the scan with that error.
func ScanFrames(dir string, maxPayload int, visit func(f *Frame, offset int64) error) (*Report, error) {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	safe, err := readSafeSeq(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errSafeSeqMissing(dir)
	}
	if err != nil {
		return nil, err
	}
	if ok, err := exists(filepath.Join(dir, WALFile)); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("walrepl: %s: %w", filepath.Join(dir, WALFile), fs.ErrNotExist)
	}
	return checkDir(osFS{}, dir, safe, visit)
}

// checkDir scans the WAL in dir read-only and applies R3. Frames are
// checked against the format's bound, not a configured one: lowering a
// setting must never turn written frames into "damage".
func checkDir(fsys fileSystem, dir string, safe uint64, visit func(*Frame, int64) error) (*Report, error) {
	res, err := scanDir(fsys, dir, safe, DefaultMaxPayload, visit)
	if err != nil {
		return nil, err
	}
	if safe > res.lastSeq {
		return nil, errSafeSeqGTMaxSeq(dir, safe, res.lastSeq)
	}
	return reportOf(dir, res, safe), nil
}

func reportOf(dir string, res *scanResult, safe uint64) *Report {
	rep := &Report{
		Dir:       dir,
		WALID:     IDString(res.id),
		Base:      res.base.Base,
		FirstSeq:  res.firstSeq,
		LastSeq:   res.lastSeq,
		LastEpoch: res.lastEpoch,
		SafeSeq:   safe,
		Frames:    res.frames,
		EndOffset: res.endOffset,
		FileSize:  res.fileSize,
		FormatV1:  res.legacy,
		Repairs:   res.notes,
		Segments:  []SegmentInfo{},
		scan:      res,
	}
	for _, s := range res.segs {
		v := 2
		if s.v1 {
			v = 1
		}
		rep.Segments = append(rep.Segments, SegmentInfo{Name: s.name, FirstSeq: s.first, LastSeq: s.last, Bytes: s.end, Version: v})
	}
	if res.tornAt >= 0 {
		rep.TornTail = true
		rep.TornOffset = res.tornAt
		rep.TornBytes = res.tornBytes()
	}
	return rep
}

// recoverDir brings the telemetry directory to a state Open can run from,
// applying the operator's overrides, and returns the chain with every
// segment file open, and its report. Every refusal is a *RecoveryError.
func recoverDir(o *Options) (*scanResult, *Report, error) {
	dir, log, fsys := o.Dir, o.Logger, o.fs
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, nil, fmt.Errorf("walrepl: creating %s: %w", dir, err)
	}
	walPath := filepath.Join(dir, WALFile)
	markerPath := filepath.Join(dir, ResetMarkerFile)
	walExists, err := fsys.Exists(walPath)
	if err != nil {
		return nil, nil, err
	}
	marker, err := readResetMarker(markerPath)
	if err != nil {
		return nil, nil, err
	}
	safeExists, err := exists(filepath.Join(dir, SafeSeqFile))
	if err != nil {
		return nil, nil, err
	}

	fresh := false
	var rep Report
	switch {
	case !walExists && (marker != nil || o.OperatorReset):
		// The operator accepted telemetry loss. Order matters for crash
		// safety: other segments are moved aside first (never read), then
		// safe_seq=0, then the WAL appears atomically, then the marker
		// goes. A crash in between repeats the reset or finds an intact
		// empty WAL.
		rep.Reset, rep.ResetVia = true, "env"
		fields := logrus.Fields{"dir": dir, "via": "env", "env": EnvOperatorReset}
		if marker != nil {
			rep.ResetVia = "marker"
			fields = logrus.Fields{"dir": dir, "via": "marker", "marker_at": marker.At, "marker_by": marker.By, "backup": marker.Backup}
		}
		moved, err := moveAsideSegments(fsys, dir)
		if err != nil {
			return nil, nil, err
		}
		if moved != "" {
			fields["segments_moved_to"] = moved
		}
		if err := createWAL(fsys, dir, true); err != nil {
			return nil, nil, err
		}
		log.WithFields(fields).Warn("WAL_RESET_BY_OPERATOR")
		fresh = true
	case !walExists && (o.Initialized || safeExists):
		return nil, nil, errWALMissing(dir, "node.json or telemetry.safe_seq shows the node was initialised")
	case !walExists:
		moved, err := moveAsideSegments(fsys, dir)
		if err != nil {
			return nil, nil, err
		}
		if moved != "" {
			log.WithFields(logrus.Fields{"dir": dir, "moved_to": moved}).
				Warn("WAL_SEGMENTS_MOVED_ASIDE: segment files without telemetry.wal were moved aside, not read")
		}
		if err := createWAL(fsys, dir, o.NewAsLearner); err != nil {
			return nil, nil, err
		}
		rep.Created = true
		fresh = true
	case !safeExists && o.LegacyUpgrade:
		// A pre-Phase-1 WAL: every whole frame is treated as committed. A
		// torn tail is still repaired first (it was never acknowledged).
		res, r, err := openAndCheck(dir, 0, o)
		if err != nil {
			return nil, nil, err
		}
		if err := writeSafeSeq(dir, r.LastSeq); err != nil {
			closeSegs(res.segs)
			return nil, nil, fmt.Errorf("walrepl: writing %s: %w", SafeSeqFile, err)
		}
		r.SafeSeq, r.LegacyUpgraded = r.LastSeq, true
		log.WithFields(logrus.Fields{"dir": dir, "safe_seq": r.SafeSeq, "env": EnvLegacyUpgrade}).
			Warn("WAL_LEGACY_UPGRADE: all existing frames treated as committed; unset the variable after this start")
		if err := removeMarker(markerPath, marker); err != nil {
			closeSegs(res.segs)
			return nil, nil, err
		}
		return res, r, nil
	case !safeExists:
		return nil, nil, errSafeSeqMissing(dir)
	}

	if !fresh {
		if o.OperatorReset {
			rep.ResetVarIgnore = true
			log.WithFields(logrus.Fields{"dir": dir, "env": EnvOperatorReset}).
				Warn("AUTONOMYOPS_WAL_OPERATOR_RESET is set but telemetry.wal is present; the variable is ignored (unset it)")
		}
		if o.LegacyUpgrade {
			log.WithFields(logrus.Fields{"dir": dir, "env": EnvLegacyUpgrade}).
				Warn("AUTONOMYOPS_WAL_LEGACY_UPGRADE is set but telemetry.safe_seq exists; the variable is ignored (unset it)")
		}
	}
	safe, err := readSafeSeq(dir)
	if err != nil {
		return nil, nil, err
	}
	res, r, err := openAndCheck(dir, safe, o)
	if err != nil {
		return nil, nil, err
	}
	r.Created, r.Reset, r.ResetVia, r.ResetVarIgnore = rep.Created, rep.Reset, rep.ResetVia, rep.ResetVarIgnore
	if err := removeMarker(markerPath, marker); err != nil {
		closeSegs(res.segs)
		return nil, nil, err
	}
	return res, r, nil
}

// openAndCheck scans the WAL against safe, makes what it read durable,
// finishes what a crash interrupted (a roll, a trim, a truncation, a rebase),
// repairs a torn tail, upgrades a format-version-1 file, and opens every
// segment of the chain: telemetry.wal for writing, the sealed ones for
// reading.
func openAndCheck(dir string, safe uint64, o *Options) (_ *scanResult, _ *Report, err error) {
	fsys := o.fs
	res, err := scanDir(fsys, dir, safe, DefaultMaxPayload, nil)
	if err != nil {
		return nil, nil, err
	}
	if safe > res.lastSeq {
		return nil, nil, errSafeSeqGTMaxSeq(dir, safe, res.lastSeq)
	}
	defer func() {
		if err != nil {
			closeSegs(res.segs)
		}
	}()
	for _, s := range res.segs {
		path := filepath.Join(dir, s.name)
		if s.name == WALFile || (res.cutName == s.name) {
			s.f, err = fsys.OpenRW(path)
		} else {
			s.f, err = fsys.OpenRead(path)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("walrepl: %w", err)
		}
		// What was read may sit only in the page cache (a process killed
		// between write and fdatasync): make it durable before reporting
		// it as such.
		if err := s.f.Datasync(); err != nil {
			return nil, nil, fmt.Errorf("walrepl: fsync of %s at open: %w", s.name, err)
		}
	}
	// Finish what a crash interrupted. Each step is safe on its own: the
	// base first (files below it are never read again), then the files
	// recovery already ignores.
	if res.baseRaised {
		if err := saveBase(dir, res.base); err != nil {
			return nil, nil, fmt.Errorf("walrepl: writing %s: %w", BaseFile, err)
		}
	}
	if res.cutName != "" {
		// Safe: the frames cut are above safe_seq (scanDir checked), and a
		// newer telemetry.wal that continues the log below them exists.
		for _, s := range res.segs {
			if s.name == res.cutName {
				if err := s.f.Truncate(res.cutAt); err != nil {
					return nil, nil, fmt.Errorf("walrepl: cutting %s: %w", s.name, err)
				}
				if err := s.f.Datasync(); err != nil {
					return nil, nil, fmt.Errorf("walrepl: fsync of %s: %w", s.name, err)
				}
			}
		}
	}
	for _, name := range res.stale {
		if err := fsys.Remove(filepath.Join(dir, name)); err != nil && !isNotExist(err) {
			return nil, nil, fmt.Errorf("walrepl: %w", err)
		}
	}
	if len(res.stale) > 0 || res.cutName != "" {
		if err := fsys.SyncDir(dir); err != nil {
			return nil, nil, fmt.Errorf("walrepl: %w", err)
		}
	}
	for _, note := range res.notes {
		o.Logger.WithFields(logrus.Fields{"dir": dir, "repair": note}).Warn("WAL_INTERRUPTED_OPERATION_FINISHED")
	}
	active := res.segs[len(res.segs)-1]
	if res.tornAt >= 0 {
		// Safe to drop: the torn frame starts above safe_seq, and no whole
		// frame follows it, so it is the unfinished end of the last write.
		// This node fsyncs before it acknowledges, so nothing in it was
		// acknowledged by this node.
		if err := active.f.Truncate(res.tornAt); err != nil {
			return nil, nil, fmt.Errorf("walrepl: truncating torn tail: %w", err)
		}
		if err := active.f.Datasync(); err != nil {
			return nil, nil, fmt.Errorf("walrepl: fsync after truncating torn tail: %w", err)
		}
		o.Logger.WithFields(logrus.Fields{
			"dir": dir, "offset": res.tornAt, "bytes_dropped": res.tornBytes(), "last_seq": res.lastSeq,
		}).Warn("WAL_TORN_TAIL_TRUNCATED")
	}
	rep := reportOf(dir, res, safe)
	if res.tornAt >= 0 {
		rep.FileSize = res.tornAt
	}
	if res.legacy {
		if err := upgradeV1(fsys, dir, res, o); err != nil {
			return nil, nil, err
		}
		rep.Upgraded = true
		o.Logger.WithFields(logrus.Fields{"dir": dir, "first_seq": res.firstSeq, "last_seq": res.lastSeq, "segments": len(res.segs)}).
			Info("WAL_FORMAT_UPGRADED: the format-version-1 telemetry.wal is now the first sealed segment")
	}
	return res, rep, nil
}

// upgradeV1 turns a checked format-version-1 telemetry.wal into the chain's
// first sealed segment, by a roll, and telemetry.wal into a version-2
// segment continuing it. A v1 file without frames is replaced by an empty
// version-2 segment that begins the log at the base.
func upgradeV1(fsys fileSystem, dir string, res *scanResult, o *Options) error {
	old := res.segs[0]
	fault := func(p string) error { return faultOpts(o, p) }
	if old.frames() == 0 {
		h := segHeader{ID: res.id, First: res.base.Base, PrevEpoch: res.base.PrevEpoch, Flags: segFlagBase}
		nf, err := replaceActive(fsys, dir, h, fault, "upgrade")
		if err != nil {
			return fmt.Errorf("walrepl: upgrading %s: %w", WALFile, err)
		}
		old.f.Close()
		ns := newActiveSeg(h, nf)
		res.segs = []*segment{ns}
		res.endOffset, res.fileSize, res.legacy = ns.end, ns.end, false
		return nil
	}
	h := segHeader{ID: res.id, First: old.last + 1, PrevEpoch: old.lastEpoch, PrevCRC: old.lastCRC}
	nf, err := rollFiles(fsys, dir, SealedName(old.first), h, fault)
	if err != nil {
		return fmt.Errorf("walrepl: upgrading %s: %w", WALFile, err)
	}
	old.name = SealedName(old.first)
	ns := newActiveSeg(h, nf)
	res.segs = append(res.segs, ns)
	res.endOffset, res.fileSize, res.legacy = ns.end, ns.end, false
	return nil
}

// createWAL writes safe_seq=0 and then an empty WAL (a segment header that
// begins the log at Seq=1), each atomically. The promised epoch survives (a
// reset node must still refuse older leaders); with learner set,
// telemetry.state marks the node a learner before the WAL exists, so no
// crash can bring an empty WAL back as a voter (DESIGN §6 rule 7).
func createWAL(fsys fileSystem, dir string, learner bool) error {
	st, err := loadState(dir)
	if err != nil {
		st = promiseState{} // unreadable: the node's start reads the epoch floor from etcd
	}
	st.Learner, st.LearnerUntil = learner, 0
	if err := saveState(dir, st); err != nil {
		return fmt.Errorf("walrepl: writing %s: %w", StateFile, err)
	}
	if err := os.Remove(filepath.Join(dir, BaseFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("walrepl: %w", err)
	}
	if err := writeSafeSeq(dir, 0); err != nil {
		return fmt.Errorf("walrepl: writing %s: %w", SafeSeqFile, err)
	}
	h, err := newFileHeader()
	if err != nil {
		return err
	}
	sh := segHeader{ID: h.ID, First: 1, Flags: segFlagBase}
	f, err := replaceActive(fsys, dir, sh, func(string) error { return nil }, "create")
	if err != nil {
		return fmt.Errorf("walrepl: creating %s: %w", WALFile, err)
	}
	return f.Close()
}

// moveAsideSegments moves every segment file left in dir (sealed segments, a
// roll's telemetry.wal.next) into a new directory beside dir, the first free
// of <dir>.corrupt-YYYYMMDD, .2, .3, ..., and returns its path ("" when
// there was none). A WAL that is being created or reset never reads them.
func moveAsideSegments(fsys fileSystem, dir string) (string, error) {
	names, err := fsys.List(dir)
	if err != nil {
		return "", fmt.Errorf("walrepl: %w", err)
	}
	var left []string
	for _, n := range names {
		if _, ok := parseSealedName(n); ok || n == NextFile {
			left = append(left, n)
		}
	}
	if len(left) == 0 {
		return "", nil
	}
	// The runbook's backup name (step 2: telemetry.corrupt-$(date +%Y%m%d)),
	// then .2, .3, ... as `autonomyctl wal reset` does: the operator's own
	// backup of the day usually holds that name already.
	stem := filepath.Clean(dir) + ".corrupt-" + time.Now().Format("20060102")
	to := stem
	for i := 2; ; i++ {
		ok, err := fsys.Exists(to)
		if err != nil {
			return "", err
		}
		if !ok {
			break
		}
		to = fmt.Sprintf("%s.%d", stem, i)
	}
	if err := fsys.MkdirAll(to); err != nil {
		return "", fmt.Errorf("walrepl: %w", err)
	}
	for _, n := range left {
		if err := fsys.Rename(filepath.Join(dir, n), filepath.Join(to, n)); err != nil {
			return "", fmt.Errorf("walrepl: moving %s aside: %w", n, err)
		}
	}
	for _, d := range []string{to, dir, filepath.Dir(filepath.Clean(dir))} {
		if err := fsys.SyncDir(d); err != nil {
			return "", fmt.Errorf("walrepl: %w", err)
		}
	}
	return to, nil
}

func closeSegs(segs []*segment) {
	for _, s := range segs {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
}

func readResetMarker(path string) (*ResetMarker, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		// The marker's presence is the instruction; its content is only
		// audit. An unreadable one (say, written by root) still counts.
		return &ResetMarker{By: "unknown (unreadable marker: " + err.Error() + ")"}, nil
	}
	var m ResetMarker
	if err := json.Unmarshal(b, &m); err != nil {
		// The marker's presence is the instruction; its content is audit.
		m.By = "unknown (unreadable marker)"
	}
	return &m, nil
}

func removeMarker(path string, m *ResetMarker) error {
	if m == nil {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("walrepl: removing reset marker: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// WriteResetMarker records the operator's decision to reset the WAL at the
// next start. Used by `autonomyctl wal reset` after it moved the old
// telemetry away.
func WriteResetMarker(dir string, m ResetMarker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ResetMarkerFile), append(b, '\n'), 0o600)
}

// ParseEnvBool reads one of the operator variables: unset or empty is false;
// otherwise it must be a boolean such as 1 or 0.
func ParseEnvBool(name, val string) (bool, error) {
	if val == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(val)
	if err != nil {
		return false, fmt.Errorf("%s=%q is not a boolean: set it to 1 to enable or unset it", name, val)
	}
	return b, nil
}
