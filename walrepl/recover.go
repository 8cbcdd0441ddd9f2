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
	EndOffset  int64  `json:"end_offset"` // where the last whole frame ends
	FileSize   int64  `json:"file_size"`
	TornTail   bool   `json:"torn_tail"`
	TornOffset int64  `json:"torn_offset,omitempty"`
	TornBytes  int64  `json:"torn_bytes,omitempty"`

	Created        bool   `json:"created,omitempty"`         // a fresh WAL was created
	Reset          bool   `json:"reset,omitempty"`           // an operator reset happened at this start
	ResetVia       string `json:"reset_via,omitempty"`       // "env" or "marker"
	LegacyUpgraded bool   `json:"legacy_upgraded,omitempty"` // safe_seq was written from an old WAL
	ResetVarIgnore bool   `json:"-"`

	scan *scanResult
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
	f, err := os.Open(walPath)
	if err != nil {
		return nil, fmt.Errorf("walrepl: %w", err)
	}
	defer f.Close()
	return checkOpened(dir, f, safe, maxPayload, nil)
}

// ScanFrames verifies the WAL in dir like Verify and calls visit with every
// whole frame, in Seq order, with its byte offset. It never writes. The
// frame's Payload is only valid during the call. Returning an error from
// visit stops the scan with that error.
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
	f, err := os.Open(filepath.Join(dir, WALFile))
	if err != nil {
		return nil, fmt.Errorf("walrepl: %w", err)
	}
	defer f.Close()
	return checkOpened(dir, f, safe, maxPayload, visit)
}

// checkOpened scans an open WAL and applies R3.
func checkOpened(dir string, f *os.File, safe uint64, maxPayload int, visit func(*Frame, int64) error) (*Report, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("walrepl: %w", err)
	}
	bs, _, err := loadBase(dir)
	if err != nil {
		return nil, err
	}
	// Frames are checked against the format's bound, not a configured one:
	// lowering a setting must never turn written frames into "damage".
	res, err := scanWAL(dir, f, st.Size(), safe, bs, DefaultMaxPayload, visit)
	if err != nil {
		return nil, err
	}
	res.base = bs
	if safe > res.lastSeq {
		return nil, errSafeSeqGTMaxSeq(dir, safe, res.lastSeq)
	}
	rep := &Report{
		Dir:       dir,
		WALID:     IDString(res.header.ID),
		Base:      bs.Base,
		FirstSeq:  res.firstSeq,
		LastSeq:   res.lastSeq,
		LastEpoch: res.lastEpoch,
		SafeSeq:   safe,
		Frames:    res.frames,
		EndOffset: res.endOffset,
		FileSize:  res.fileSize,
		scan:      res,
	}
	if res.tornAt >= 0 {
		rep.TornTail = true
		rep.TornOffset = res.tornAt
		rep.TornBytes = res.tornBytes()
	}
	return rep, nil
}

// recoverDir brings the telemetry directory to a state Open can run from,
// applying the operator's overrides, and returns the open WAL file and its
// report. Every refusal is a *RecoveryError.
func recoverDir(o *Options) (*os.File, *Report, error) {
	dir, log := o.Dir, o.Logger
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("walrepl: creating %s: %w", dir, err)
	}
	walPath := filepath.Join(dir, WALFile)
	markerPath := filepath.Join(dir, ResetMarkerFile)
	walExists, err := exists(walPath)
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
		// safety: safe_seq=0 first, then the WAL appears atomically, then the
		// marker goes. A crash in between repeats the reset or finds an
		// intact empty WAL.
		rep.Reset, rep.ResetVia = true, "env"
		fields := logrus.Fields{"dir": dir, "via": "env", "env": EnvOperatorReset}
		if marker != nil {
			rep.ResetVia = "marker"
			fields = logrus.Fields{"dir": dir, "via": "marker", "marker_at": marker.At, "marker_by": marker.By, "backup": marker.Backup}
		}
		if err := createWAL(dir, true); err != nil {
			return nil, nil, err
		}
		log.WithFields(fields).Warn("WAL_RESET_BY_OPERATOR")
		fresh = true
	case !walExists && (o.Initialized || safeExists):
		return nil, nil, errWALMissing(dir, "node.json or telemetry.safe_seq shows the node was initialised")
	case !walExists:
		if err := createWAL(dir, o.NewAsLearner); err != nil {
			return nil, nil, err
		}
		rep.Created = true
		fresh = true
	case !safeExists && o.LegacyUpgrade:
		// A pre-Phase-1 WAL: every whole frame is treated as committed. A
		// torn tail is still repaired first (it was never acknowledged).
		f, r, err := openAndCheck(dir, 0, o)
		if err != nil {
			return nil, nil, err
		}
		if err := writeSafeSeq(dir, r.LastSeq); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("walrepl: writing %s: %w", SafeSeqFile, err)
		}
		r.SafeSeq, r.LegacyUpgraded = r.LastSeq, true
		log.WithFields(logrus.Fields{"dir": dir, "safe_seq": r.SafeSeq, "env": EnvLegacyUpgrade}).
			Warn("WAL_LEGACY_UPGRADE: all existing frames treated as committed; unset the variable after this start")
		if err := removeMarker(markerPath, marker); err != nil {
			f.Close()
			return nil, nil, err
		}
		return f, r, nil
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
	f, r, err := openAndCheck(dir, safe, o)
	if err != nil {
		return nil, nil, err
	}
	r.Created, r.Reset, r.ResetVia, r.ResetVarIgnore = rep.Created, rep.Reset, rep.ResetVia, rep.ResetVarIgnore
	if err := removeMarker(markerPath, marker); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, r, nil
}

// openAndCheck opens the WAL for writing, scans it against safe and repairs
// a torn tail.
func openAndCheck(dir string, safe uint64, o *Options) (*os.File, *Report, error) {
	f, err := os.OpenFile(filepath.Join(dir, WALFile), os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("walrepl: %w", err)
	}
	rep, err := checkOpened(dir, f, safe, o.MaxPayload, nil)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	// What was read may sit only in the page cache (a process killed between
	// write and fdatasync): make it durable before reporting it as such.
	if err := fdatasync(f); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("walrepl: fsync of %s at open: %w", WALFile, err)
	}
	if rep.TornTail {
		// Safe to drop: the torn frame starts above safe_seq, and no whole
		// frame follows it, so it is the unfinished end of the last write.
		// This node fsyncs before it acknowledges, so nothing in it was
		// acknowledged by this node.
		if err := f.Truncate(rep.TornOffset); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("walrepl: truncating torn tail: %w", err)
		}
		if err := fdatasync(f); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("walrepl: fsync after truncating torn tail: %w", err)
		}
		o.Logger.WithFields(logrus.Fields{
			"dir": dir, "offset": rep.TornOffset, "bytes_dropped": rep.TornBytes, "last_seq": rep.LastSeq,
		}).Warn("WAL_TORN_TAIL_TRUNCATED")
		rep.FileSize = rep.TornOffset
	}
	return f, rep, nil
}

// createWAL writes safe_seq=0 and then an empty WAL (header only), each
// atomically. The promised epoch survives (a reset node must still refuse
// older leaders); with learner set, telemetry.state marks the node a
// learner before the WAL exists, so no crash can bring an empty WAL back as
// a voter (DESIGN §6 rule 7).
func createWAL(dir string, learner bool) error {
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
	if err := writeFileAtomic(filepath.Join(dir, WALFile), h.encode(), 0o600); err != nil {
		return fmt.Errorf("walrepl: creating %s: %w", WALFile, err)
	}
	return syncDir(dir)
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
