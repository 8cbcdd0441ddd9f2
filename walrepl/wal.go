package walrepl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Options configure Open.
type Options struct {
	// Dir is the telemetry directory (<data-dir>/telemetry).
	Dir string
	// Initialized is true when the node was initialised before (node.json
	// exists): a missing WAL is then a steady-state violation, not a first start.
	Initialized bool
	// LegacyUpgrade accepts a WAL without telemetry.safe_seq, treating every
	// frame as committed (AUTONOMYOPS_WAL_LEGACY_UPGRADE=1).
	LegacyUpgrade bool
	// OperatorReset accepts starting with an empty WAL when telemetry.wal is
	// absent (AUTONOMYOPS_WAL_OPERATOR_RESET=1). It never deletes anything.
	OperatorReset bool
	// NewAsLearner: a WAL created at this start (a node joining a cluster
	// that has history) is a learner from its first byte. A reset WAL always is.
	NewAsLearner bool
	// MaxPayload bounds one frame's payload, in bytes.
	MaxPayload int
	// SegmentBytes bounds a segment file: the active segment is sealed
	// and a new one begun before a frame would start at or past this
	// offset, so no file grows past SegmentBytes plus one frame. Retention
	// deletes whole sealed segments, so it is also retention's granularity:
	// smaller means more files and more frequent rolls (two directory
	// fsyncs each), larger means coarser trims. Default DefaultSegmentBytes
	// (64 MiB, like etcd); at least MinSegmentBytes.
	SegmentBytes int64
	// SafeSeqPersistInterval is how often a grown safe_seq is written to
	// telemetry.safe_seq. The file is a lower bound, so lazy is safe; each
	// write costs two fsyncs on the WAL's disk.
	SafeSeqPersistInterval time.Duration
	// Logger receives structured events. Defaults to logrus' standard logger.
	Logger logrus.FieldLogger
	// OnFsync, if set, is called with the duration of every WAL fdatasync.
	OnFsync func(time.Duration)
	// Clock is read by age retention; tests inject one to step the wall
	// clock. Defaults to the system clock.
	Clock Clock
	// Inject is a test seam: when set, it is called at the named points of
	// the write path (wal-before-write, wal-before-fsync, wal-after-fsync,
	// safeseq-before-persist; a segment roll's roll-after-next,
	// roll-after-link, roll-after-rename; truncate-before-fsync,
	// truncate-after-rename, truncate-before-cut; trim-before-base,
	// trim-before-delete; rebase-after-rename) and an error it returns is
	// treated exactly like an I/O error there. Nil in production.
	Inject func(point string) error

	fs fileSystem // the segment layer's file system; osFS when nil
}

// DefaultOptions returns the options a node uses for the WAL in dir.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:                    dir,
		MaxPayload:             DefaultMaxPayload,
		SegmentBytes:           DefaultSegmentBytes,
		SafeSeqPersistInterval: 250 * time.Millisecond,
		Logger:                 logrus.StandardLogger(),
	}
}

// Validate reports the first option that is out of range.
func (o *Options) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("walrepl: Options.Dir is empty")
	case o.MaxPayload <= 0 || o.MaxPayload > DefaultMaxPayload:
		return fmt.Errorf("walrepl: Options.MaxPayload=%d must be in (0, %d] (the format's bound)", o.MaxPayload, DefaultMaxPayload)
	case o.SegmentBytes < MinSegmentBytes:
		return fmt.Errorf("walrepl: Options.SegmentBytes=%d must be at least %d", o.SegmentBytes, MinSegmentBytes)
	case o.SafeSeqPersistInterval <= 0:
		return fmt.Errorf("walrepl: Options.SafeSeqPersistInterval=%s must be positive", o.SafeSeqPersistInterval)
	}
	return nil
}

// FsyncStats summarises the WAL's fdatasync latency since Open.
type FsyncStats struct {
	Count int64         `json:"count"`
	Last  time.Duration `json:"last_ns"`
	Max   time.Duration `json:"max_ns"`
	Total time.Duration `json:"total_ns"`
}

// Status is a snapshot of the WAL's positions.
type Status struct {
	Dir              string     `json:"dir"`
	WALID            string     `json:"wal_id"`
	Base             uint64     `json:"base"`
	FirstSeq         uint64     `json:"first_seq"`
	LastSeq          uint64     `json:"last_seq"` // last frame written or queued
	LastEpoch        uint64     `json:"last_epoch"`
	DurableSeq       uint64     `json:"fsynced_seq"`
	SafeSeq          uint64     `json:"safe_seq"`
	PersistedSafeSeq uint64     `json:"persisted_safe_seq"`
	Bytes            int64      `json:"bytes"`         // the retained segments' bytes, queued frames included
	BytesOnDisk      int64      `json:"bytes_on_disk"` // the sizes of the segment files: what retention bounds
	Segments         int        `json:"segments"`      // segment files, telemetry.wal included
	Trimmed          uint64     `json:"trimmed_frames"`
	Failed           string     `json:"failed,omitempty"`
	Fsync            FsyncStats `json:"fsync"`
}

// WAL is an open, append-only, fsynced telemetry log. All methods are safe for
// concurrent use. Appends share fdatasyncs: a single flusher goroutine writes
// everything queued since its last round and syncs once (group commit).
//
// Invariants, kept under mu:
//   - base ≤ firstSeq; frames are contiguous from firstSeq to lastSeq;
//   - durableSeq ≤ writtenSeq ≤ lastSeq;
//   - persistedSafe ≤ min(safeSeq, durableSeq) at the time it was written;
//     safeSeq never decreases.
type WAL struct {
	dir  string
	opts Options
	log  logrus.FieldLogger
	fs   fileSystem
	id   [16]byte

	// fileMu: readers hold it shared; whatever closes, cuts or removes a
	// segment file (truncation, trim, rebase) holds it exclusively, so no
	// read sees a file shorter than the offsets it computed.
	fileMu sync.RWMutex
	// flushMu serialises the files' writers: the flusher, TruncateAfter,
	// TrimTo and Rebase. disk is guarded by it.
	flushMu sync.Mutex
	// disk is the segment that is telemetry.wal on disk (a queued roll's
	// new segment is not, until the flusher performs the roll).
	disk *segment

	mu        sync.Mutex
	closed    bool
	failed    error
	base      uint64 // Seq of the first retained frame (1 unless trimmed)
	baseEpoch uint64 // epoch of frame base-1 (gone), for log matching
	trimmed   uint64 // frames trimmed since Open
	firstSeq  uint64
	lastSeq   uint64
	lastEpoch uint64
	// segs is the chain: sealed segments in Seq order, then the active one
	// (the last; its file may not exist yet while a roll is queued).
	segs    []*segment
	pending []chunk // queued frames, not yet written, in order
	// rollBytes is the segment bound in effect: Options.SegmentBytes, or
	// less while a retention size bound is under four segments (retention
	// deletes whole segments; see setRetentionBytes).
	rollBytes     int64
	writtenSeq    uint64
	durableSeq    uint64
	safeSeq       uint64
	persistedSafe uint64
	frames        uint64
	// anchor is a reading of the clock at Open: anchor plus the monotonic
	// time since is the wall clock as it would be without steps.
	anchor     time.Time
	jumpWarned bool
	epochs     []epochStart
	changed    chan struct{} // closed and replaced whenever a position moves
	truncs     []uint64      // every TruncateAfter point since Open, in order
	fsync      FsyncStats

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// chunk is queued frames bound for one segment, starting at offset from.
type chunk struct {
	seg  *segment
	from int64
	buf  []byte
}

// Open recovers the WAL in opts.Dir (DESIGN §4) and returns it ready for
// appends, with the recovery report. A *RecoveryError means the node must not
// start: the caller logs WAL_RECOVERY_FAIL_HARD and exits with ExitFailHard.
func Open(opts Options) (*WAL, *Report, error) {
	if opts.Logger == nil {
		opts.Logger = logrus.StandardLogger()
	}
	if err := opts.Validate(); err != nil {
		return nil, nil, err
	}
	if opts.fs == nil {
		opts.fs = osFS{}
	}
	res, rep, err := recoverDir(&opts)
	if err != nil {
		return nil, nil, err
	}
	w := &WAL{
		dir:           opts.Dir,
		opts:          opts,
		log:           opts.Logger,
		fs:            opts.fs,
		id:            res.id,
		base:          res.base.Base,
		baseEpoch:     res.base.PrevEpoch,
		firstSeq:      res.firstSeq,
		lastSeq:       res.lastSeq,
		lastEpoch:     res.lastEpoch,
		segs:          res.segs,
		disk:          res.segs[len(res.segs)-1],
		writtenSeq:    res.lastSeq,
		durableSeq:    res.lastSeq,
		safeSeq:       rep.SafeSeq,
		persistedSafe: rep.SafeSeq,
		frames:        uint64(res.frames),
		epochs:        res.epochs,
		rollBytes:     opts.SegmentBytes,
		changed:       make(chan struct{}),
		kick:          make(chan struct{}, 1),
		stop:          make(chan struct{}),
	}
	for _, sg := range w.segs {
		if res.tornAt >= 0 && sg == w.disk {
			sg.end = res.tornAt
		}
		sg.written = sg.end
		sg.seen = make([]time.Time, len(sg.index))
	}
	if w.firstSeq == 0 {
		w.firstSeq = w.base
	}
	if w.opts.Clock == nil {
		w.opts.Clock = SystemClock{}
	}
	w.anchor = w.opts.Clock.Now()
	w.wg.Add(2)
	go w.flushLoop()
	go w.persistLoop()
	return w, rep, nil
}

// Dir returns the telemetry directory.
func (w *WAL) Dir() string { return w.dir }

// ID returns the random id written when this WAL was created. A reset or a
// new disk gives a new id.
func (w *WAL) ID() [16]byte { return w.id }

// Append queues payloads as frames of the given type in epoch, with Seqs
// following the last frame, and returns their Seq range. The frames are not
// durable until WaitDurable(ctx, last) returns nil. Payloads must be JSON.
func (w *WAL) Append(epoch uint64, typ FrameType, ts int64, payloads [][]byte) (first, last uint64, err error) {
	for _, p := range payloads {
		if len(p) > w.opts.MaxPayload {
			return 0, 0, fmt.Errorf("%w: %d bytes (bound %d)", ErrTooLarge, len(p), w.opts.MaxPayload)
		}
		if !validJSON(p) { // json.Valid's verdict, faster (jsonvalid.go)
			return 0, 0, ErrInvalidPayload
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return 0, 0, err
	}
	if epoch < w.lastEpoch {
		return 0, 0, fmt.Errorf("walrepl: append in epoch %d below the log's epoch %d", epoch, w.lastEpoch)
	}
	first = w.lastSeq + 1
	for _, p := range payloads {
		w.queueLocked(&Frame{Seq: w.lastSeq + 1, Epoch: epoch, Time: ts, Type: typ, Payload: p})
	}
	w.kickFlusher()
	return first, w.lastSeq, nil
}

// AppendFrames queues replicated frames, which must continue the log exactly
// (the first Seq is lastSeq+1, epochs do not go down). Followers use it.
func (w *WAL) AppendFrames(frames []Frame) error {
	for i := range frames {
		f := &frames[i]
		if len(f.Payload) > w.opts.MaxPayload {
			return fmt.Errorf("%w: frame Seq=%d has %d bytes", ErrTooLarge, f.Seq, len(f.Payload))
		}
		if !f.Type.valid() || !validJSON(f.Payload) {
			return fmt.Errorf("%w: frame Seq=%d", ErrInvalidPayload, f.Seq)
		}
	}
	return w.appendChecked(frames)
}

// appendChecked is AppendFrames for event frames whose payloads already
// passed CheckPayloads (a leader's proposals: the replica checks them before
// the core sees them), so the JSON is not validated twice on the hot path.
func (w *WAL) appendChecked(frames []Frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	seq, epoch := w.lastSeq, w.lastEpoch
	for i := range frames {
		if frames[i].Seq != seq+1 || frames[i].Epoch < epoch {
			return fmt.Errorf("%w: frame Seq=%d epoch %d after Seq=%d epoch %d", ErrNotContiguous, frames[i].Seq, frames[i].Epoch, seq, epoch)
		}
		seq, epoch = frames[i].Seq, frames[i].Epoch
	}
	for i := range frames {
		w.queueLocked(&frames[i])
	}
	w.kickFlusher()
	return nil
}

func (w *WAL) usableLocked() error {
	if w.closed {
		return ErrClosed
	}
	return w.failed
}

func (w *WAL) queueLocked(f *Frame) {
	act := w.segs[len(w.segs)-1]
	if act.frames() > 0 && act.end >= w.rollBytes {
		// The active segment is full: this frame begins the next one. The
		// flusher performs the roll before it writes the frame.
		act = newActiveSeg(segHeader{ID: w.id, First: f.Seq, PrevEpoch: act.lastEpoch, PrevCRC: act.lastCRC}, nil)
		w.segs = append(w.segs, act)
	}
	if act.frames()%indexStride == 0 {
		act.index = append(act.index, act.end)
		act.seen = append(act.seen, w.opts.Clock.Now())
	}
	if w.frames == 0 {
		w.firstSeq = f.Seq
	}
	if len(w.epochs) == 0 || w.epochs[len(w.epochs)-1].Epoch != f.Epoch {
		w.epochs = append(w.epochs, epochStart{Epoch: f.Epoch, FirstSeq: f.Seq})
	}
	if n := len(w.pending); n == 0 || w.pending[n-1].seg != act {
		w.pending = append(w.pending, chunk{seg: act, from: act.end})
	}
	c := &w.pending[len(w.pending)-1]
	at := len(c.buf)
	c.buf = AppendEncoded(c.buf, f)
	act.end += int64(f.Size())
	act.last, act.lastEpoch, act.lastCRC = f.Seq, f.Epoch, binary.LittleEndian.Uint32(c.buf[at+4:])
	w.frames++
	w.lastSeq, w.lastEpoch = f.Seq, f.Epoch
}

func (w *WAL) kickFlusher() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// notifyLocked wakes everyone waiting for a position to move.
func (w *WAL) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// flushLoop is the group commit: it owns the files' write offsets.
func (w *WAL) flushLoop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.kick:
		case <-w.stop:
			w.flushOnce()
			return
		}
		w.flushOnce()
	}
}

// flushOnce writes and fsyncs everything queued, rolling to a new segment
// where one was queued. Any error fails the WAL for good: the same fsync is
// never retried (after a failed fsync the kernel may have dropped the dirty
// pages, so a retry that succeeds proves nothing).
func (w *WAL) flushOnce() {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	if len(w.pending) == 0 || w.failed != nil {
		w.mu.Unlock()
		return
	}
	chunks, last := w.pending, w.lastSeq
	w.pending = nil
	w.mu.Unlock()

	err := w.fault("wal-before-write")
	if err == nil {
		err = w.writeChunks(chunks, false)
	}
	if err == nil {
		w.mu.Lock()
		w.writtenSeq = last
		w.notifyLocked()
		w.mu.Unlock()
		err = w.fault("wal-before-fsync")
		if errors.Is(err, errPowerLoss) {
			c := chunks[len(chunks)-1]
			powerLoss(c.seg.f, c.from, int64(len(c.buf)))
		}
		if err == nil {
			start := time.Now()
			err = w.disk.f.Datasync()
			w.observeFsync(time.Since(start))
		}
	}
	if err == nil {
		err = w.fault("wal-after-fsync")
	}
	w.mu.Lock()
	if err != nil {
		w.failLocked(fmt.Errorf("%w: %v", ErrFailed, err))
	} else {
		w.durableSeq = last
	}
	w.notifyLocked()
	w.mu.Unlock()
}

// writeChunks writes queued frames to their segments, performing the rolls
// queued between them, without fsyncing the last segment. The caller holds
// flushMu, and mu when locked is set.
func (w *WAL) writeChunks(chunks []chunk, locked bool) error {
	for _, c := range chunks {
		if c.seg != w.disk {
			if err := w.rollTo(c.seg, locked); err != nil {
				return err
			}
		}
		if _, err := c.seg.f.WriteAt(c.buf, c.from); err != nil {
			return err
		}
		if !locked {
			w.mu.Lock()
		}
		c.seg.written = c.from + int64(len(c.buf))
		if !locked {
			w.mu.Unlock()
		}
	}
	return nil
}

// rollTo seals the segment on disk as telemetry.wal and makes ns the new
// telemetry.wal (rollFiles). The frames of the old one are fdatasynced
// first: a sealed segment is whole on disk before it has its sealed name.
// The caller holds flushMu, and mu when locked is set.
func (w *WAL) rollTo(ns *segment, locked bool) error {
	old := w.disk
	if err := old.f.Datasync(); err != nil {
		return err
	}
	name := SealedName(old.first)
	f, err := rollFiles(w.fs, w.dir, name, ns.hdr, w.fault)
	if err != nil {
		return fmt.Errorf("rolling to a new segment at Seq=%d: %w", ns.first, err)
	}
	if !locked {
		w.mu.Lock()
	}
	old.name, ns.f = name, f
	if !locked {
		w.mu.Unlock()
	}
	w.disk = ns
	w.log.WithFields(logrus.Fields{"dir": w.dir, "sealed": name, "first_seq": old.first, "last_seq": old.last, "bytes": old.end}).
		Info("WAL_SEGMENT_SEALED")
	return nil
}

func (w *WAL) observeFsync(d time.Duration) {
	w.mu.Lock()
	w.fsync.Count++
	w.fsync.Last = d
	w.fsync.Total += d
	if d > w.fsync.Max {
		w.fsync.Max = d
	}
	w.mu.Unlock()
	if w.opts.OnFsync != nil {
		w.opts.OnFsync(d)
	}
}

func (w *WAL) failLocked(err error) {
	if w.failed != nil {
		return
	}
	w.failed = err
	w.log.WithFields(logrus.Fields{"dir": w.dir, "error": err.Error()}).Error("WAL_FAILED")
}

// WaitDurable blocks until the frame at seq is fsynced, the WAL fails, or ctx
// ends.
func (w *WAL) WaitDurable(ctx context.Context, seq uint64) error {
	for {
		w.mu.Lock()
		if w.failed != nil {
			w.mu.Unlock()
			return w.failed
		}
		if w.durableSeq >= seq {
			w.mu.Unlock()
			return nil
		}
		if w.closed {
			w.mu.Unlock()
			return ErrClosed
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Changed returns a channel closed at the next change of any position.
func (w *WAL) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// SetSafeSeq raises the in-memory watermark. It never lowers it. The
// persisted file follows lazily and never exceeds this node's fsynced Seq
// (DESIGN §6 rule 5).
func (w *WAL) SetSafeSeq(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq > w.safeSeq {
		w.safeSeq = seq
		w.notifyLocked()
	}
}

// SafeSeq returns the in-memory watermark.
func (w *WAL) SafeSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.safeSeq
}

// Positions returns lastSeq, lastEpoch, durableSeq and safeSeq atomically.
func (w *WAL) Positions() (last, lastEpoch, durable, safe uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastSeq, w.lastEpoch, w.durableSeq, w.safeSeq
}

// Err returns the error that failed the WAL, if any.
func (w *WAL) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// persistLoop writes safe_seq when it has grown.
func (w *WAL) persistLoop() {
	defer w.wg.Done()
	t := time.NewTicker(w.opts.SafeSeqPersistInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.persistSafeSeq()
		case <-w.stop:
			return
		}
	}
}

// persistSafeSeq writes min(safeSeq, durableSeq) if it is above what the file
// holds. It is the only writer of telemetry.safe_seq while the WAL is open.
func (w *WAL) persistSafeSeq() {
	w.mu.Lock()
	v := min(w.safeSeq, w.durableSeq)
	if v <= w.persistedSafe || w.failed != nil {
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	err := w.fault("safeseq-before-persist")
	if err == nil {
		err = writeSafeSeq(w.dir, v)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failLocked(fmt.Errorf("%w: persisting %s: %v", ErrFailed, SafeSeqFile, err))
		w.notifyLocked()
		return
	}
	if v > w.persistedSafe {
		w.persistedSafe = v
	}
}

// EpochAt returns the epoch of the frame at seq, if the WAL holds it.
func (w *WAL) EpochAt(seq uint64) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epochAtLocked(seq)
}

func (w *WAL) epochAtLocked(seq uint64) (uint64, bool) {
	if seq > 0 && seq == w.base-1 {
		return w.baseEpoch, true // trimmed, but its epoch is kept for matching
	}
	if w.frames == 0 || seq < w.firstSeq || seq > w.lastSeq {
		return 0, false
	}
	i := sort.Search(len(w.epochs), func(i int) bool { return w.epochs[i].FirstSeq > seq })
	return w.epochs[i-1].Epoch, true
}

// TruncateAfter removes every frame above seq: a follower dropping the
// divergent, uncommitted suffix of its log (DESIGN §6 rule 4). Removing a
// frame at or below safe_seq is refused with ErrTruncateCommitted, and the
// WAL is failed: it means the protocol was broken.
//
// Within telemetry.wal the file is cut. Below it (the suffix reaches into
// sealed segments), telemetry.wal is replaced by an empty segment that begins
// at seq+1 and names frame seq as its predecessor; then the sealed segments
// above seq are removed and the one holding seq is cut after it. A crash
// after the replacement leaves a chain that recovery finishes the same way.
func (w *WAL) TruncateAfter(seq uint64) error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	if seq >= w.lastSeq {
		return nil
	}
	if seq < w.safeSeq {
		return w.failNowLocked(fmt.Errorf("%w: asked to keep Seq≤%d but safe_seq=%d", ErrTruncateCommitted, seq, w.safeSeq))
	}
	if seq+1 < w.base {
		// Everything below the base is committed (trimmed, or skipped by a
		// rebase), even when telemetry.safe_seq lags it after a crash.
		return w.failNowLocked(fmt.Errorf("%w: asked to keep Seq≤%d but the log begins at its base %d", ErrTruncateCommitted, seq, w.base))
	}
	if err := w.writePendingLocked(); err != nil {
		return err
	}
	removed := w.lastSeq - seq
	var err error
	if act := w.disk; seq+1 >= act.first {
		err = w.cutSegmentLocked(act, seq, "truncate-before-fsync")
	} else {
		err = w.truncateIntoSealedLocked(seq)
	}
	if err != nil {
		w.failLocked(fmt.Errorf("%w: truncating: %v", ErrFailed, err))
		w.notifyLocked()
		return w.failed
	}
	w.frames -= removed
	w.lastSeq = seq
	w.lastEpoch = 0
	if e, ok := w.epochAtLocked(seq); ok {
		w.lastEpoch = e
	}
	if seq < w.base {
		w.lastEpoch = w.baseEpoch
	}
	i := sort.Search(len(w.epochs), func(i int) bool { return w.epochs[i].FirstSeq > seq })
	w.epochs = w.epochs[:i]
	if w.frames == 0 {
		w.firstSeq = w.base
	}
	w.writtenSeq, w.durableSeq = seq, seq
	w.truncs = append(w.truncs, seq)
	w.notifyLocked()
	w.log.WithFields(logrus.Fields{"dir": w.dir, "kept_last_seq": seq, "frames_removed": removed}).
		Warn("WAL_DIVERGENT_SUFFIX_TRUNCATED")
	return nil
}

// cutSegmentLocked cuts segment s after frame seq (s holds seq, or seq is
// s.first-1) and fdatasyncs it. The caller holds flushMu, fileMu and mu.
func (w *WAL) cutSegmentLocked(s *segment, seq uint64, point string) error {
	off, err := w.offsetInLocked(s, seq+1)
	if err != nil {
		return err
	}
	epoch, crc := s.hdr.PrevEpoch, s.hdr.PrevCRC
	if seq >= s.first {
		if epoch, crc, err = w.frameMetaLocked(s, seq); err != nil {
			return err
		}
	}
	f := s.f
	if s != w.disk {
		// Sealed segments are open read-only; cutting one is the only
		// write a sealed segment ever sees, and only frames above
		// safe_seq go.
		if f, err = w.fs.OpenRW(joinDir(w.dir, s.name)); err != nil {
			return err
		}
		defer f.Close()
	}
	err = f.Truncate(off)
	if err == nil {
		err = w.fault(point)
	}
	if err == nil {
		err = f.Datasync()
	}
	if err != nil {
		return err
	}
	s.last, s.lastEpoch, s.lastCRC = seq, epoch, crc
	s.end, s.written = off, off
	n := (s.frames() + indexStride - 1) / indexStride
	s.index, s.seen = s.index[:n], s.seen[:n]
	return nil
}

// truncateIntoSealedLocked removes the frames above seq when seq is below
// telemetry.wal's first frame. The caller holds flushMu, fileMu and mu, and
// has written what was queued.
func (w *WAL) truncateIntoSealedLocked(seq uint64) error {
	j := w.segIndexLocked(seq) // -1: seq is base-1, every frame goes
	h := segHeader{ID: w.id, First: seq + 1}
	if j >= 0 {
		e, crc, err := w.frameMetaLocked(w.segs[j], seq)
		if err != nil {
			return err
		}
		h.PrevEpoch, h.PrevCRC = e, crc
	} else {
		h.PrevEpoch, h.PrevCRC, h.Flags = w.baseEpoch, w.segs[0].hdr.PrevCRC, segFlagBase
	}
	nf, err := replaceActive(w.fs, w.dir, h, w.fault, "truncate")
	if err != nil {
		return err
	}
	w.disk.f.Close() // its name now is the new segment's
	// Newest first, so that a crash leaves a chain recovery reads.
	for k := len(w.segs) - 2; k > j; k-- {
		s := w.segs[k]
		s.f.Close()
		if err := w.fs.Remove(joinDir(w.dir, s.name)); err != nil && !isNotExist(err) {
			nf.Close()
			return err
		}
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		nf.Close()
		return err
	}
	ns := newActiveSeg(h, nf)
	if j >= 0 && w.segs[j].last > seq {
		if err := w.cutSegmentLocked(w.segs[j], seq, "truncate-before-cut"); err != nil {
			nf.Close()
			return err
		}
	}
	w.segs = append(w.segs[:j+1:j+1], ns)
	w.disk = ns
	return nil
}

// segIndexLocked returns the index in segs of the segment holding seq, or
// -1 when no segment does.
func (w *WAL) segIndexLocked(seq uint64) int {
	i := sort.Search(len(w.segs), func(i int) bool { return w.segs[i].first > seq }) - 1
	if i < 0 || !w.segs[i].holds(seq) {
		return -1
	}
	return i
}

// frameMetaLocked reads the epoch and the CRC field of the written frame
// seq in segment s.
func (w *WAL) frameMetaLocked(s *segment, seq uint64) (uint64, uint32, error) {
	off, err := w.offsetInLocked(s, seq)
	if err != nil {
		return 0, 0, err
	}
	var hdr [FrameHeaderSize]byte
	if _, err := s.f.ReadAt(hdr[:], off); err != nil {
		return 0, 0, fmt.Errorf("walrepl: reading frame header at offset %d of %s: %w", off, s.name, err)
	}
	return binary.LittleEndian.Uint64(hdr[16:]), binary.LittleEndian.Uint32(hdr[4:]), nil
}

// offsetInLocked finds the offset of the frame at seq in segment s (or
// s.end for s.last+1) from the sparse index, reading at most indexStride-1
// frame headers. The frame must be written (not only queued).
func (w *WAL) offsetInLocked(s *segment, seq uint64) (int64, error) {
	if seq == s.last+1 {
		return s.end, nil
	}
	if !s.holds(seq) {
		return 0, fmt.Errorf("%w: Seq=%d not in [%d,%d] of %s", ErrOutOfRange, seq, s.first, s.last, s.name)
	}
	k := (seq - s.first) / indexStride
	off := s.index[k]
	var hdr [FrameHeaderSize]byte
	for q := s.first + k*indexStride; q < seq; q++ {
		if _, err := s.f.ReadAt(hdr[:], off); err != nil {
			return 0, fmt.Errorf("walrepl: reading frame header at offset %d of %s: %w", off, s.name, err)
		}
		n, err := frameLen(hdr[:], DefaultMaxPayload)
		if err != nil {
			return 0, fmt.Errorf("walrepl: frame header at offset %d of %s: %w", off, s.name, err)
		}
		off += int64(n)
	}
	return off, nil
}

// readPlan is one segment's share of a ReadFrames call.
type readPlan struct {
	f           segFile
	name        string
	off, end    int64 // from the first frame wanted to the end of the written frames
	first, last uint64
}

// ReadFrames returns up to maxFrames frames starting at from, stopping before
// maxBytes of encoding is exceeded (at least one frame is returned if any is
// readable), and never past limit or past the last written frame. Callers
// pass the safe_seq as limit when serving readers (DESIGN §6 rule 11). A
// read continues across segment files.
func (w *WAL) ReadFrames(from, limit uint64, maxFrames, maxBytes int) ([]Frame, error) {
	w.fileMu.RLock()
	defer w.fileMu.RUnlock()
	w.mu.Lock()
	if from < w.firstSeq {
		w.mu.Unlock()
		return nil, fmt.Errorf("%w: Seq=%d is below the first retained Seq %d", ErrBelowBase, from, w.firstSeq)
	}
	last := min(limit, w.writtenSeq)
	if from > last || maxFrames <= 0 || w.frames == 0 {
		w.mu.Unlock()
		return nil, nil
	}
	var plans []readPlan
	for i := w.segIndexLocked(from); i >= 0 && i < len(w.segs) && w.segs[i].first <= last; i++ {
		s := w.segs[i]
		if s.f == nil { // not possible for written frames; be safe
			w.mu.Unlock()
			return nil, fmt.Errorf("%w: segment %s is not open", ErrClosed, s.name)
		}
		off := s.start
		if i == w.segIndexLocked(from) {
			var err error
			if off, err = w.offsetInLocked(s, from); err != nil {
				w.mu.Unlock()
				return nil, err
			}
		}
		first := max(from, s.first)
		plans = append(plans, readPlan{f: s.f, name: s.name, off: off, end: s.written, first: first, last: min(s.last, last)})
	}
	w.mu.Unlock()
	var out []Frame
	budget := maxBytes
	for _, p := range plans {
		fs, used, more, err := readSegment(p, maxFrames-len(out), budget, len(out) == 0)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
		budget -= used
		if !more || len(out) >= maxFrames || budget <= 0 {
			break
		}
	}
	return out, nil
}

// readSegment reads the frames p names, at most maxFrames and maxBytes of
// them; with first set a frame larger than maxBytes is read whole. more is
// false when the byte budget stopped it.
func readSegment(p readPlan, maxFrames, maxBytes int, first bool) (out []Frame, used int, more bool, err error) {
	const mp = DefaultMaxPayload // the format's bound: what was written is readable
	off := p.off
	want := min(int64(maxBytes), p.end-off)
	want = max(want, FrameHeaderSize)
	buf := make([]byte, want)
	n, err := p.f.ReadAt(buf, off)
	if err != nil && n < len(buf) {
		return nil, 0, false, fmt.Errorf("walrepl: reading frames at offset %d of %s: %w", off, p.name, err)
	}
	for seq := p.first; seq <= p.last && len(out) < maxFrames; seq++ {
		f, size, err := DecodeFrame(buf, mp)
		if errors.Is(err, errShortFrame) && len(out) == 0 && first {
			// The first frame is larger than maxBytes: read it whole.
			flen, lerr := frameLen(buf, mp)
			if lerr != nil {
				return nil, 0, false, fmt.Errorf("walrepl: frame at offset %d of %s: %w", off, p.name, lerr)
			}
			buf = make([]byte, flen)
			if _, err := p.f.ReadAt(buf, off); err != nil {
				return nil, 0, false, fmt.Errorf("walrepl: reading frame at offset %d of %s: %w", off, p.name, err)
			}
			f, size, err = DecodeFrame(buf, mp)
		}
		if errors.Is(err, errShortFrame) {
			return out, used, false, nil
		}
		if err != nil {
			return nil, 0, false, fmt.Errorf("walrepl: frame Seq=%d at offset %d of %s: %w", seq, off, p.name, err)
		}
		if f.Seq != seq {
			return nil, 0, false, fmt.Errorf("walrepl: frame at offset %d of %s has Seq=%d, expected %d", off, p.name, f.Seq, seq)
		}
		out = append(out, f)
		buf, off, used = buf[size:], off+int64(size), used+size
	}
	return out, used, true, nil
}

// Status returns a snapshot of the WAL's positions and counters.
func (w *WAL) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{
		Dir:              w.dir,
		WALID:            IDString(w.id),
		Base:             w.base,
		LastSeq:          w.lastSeq,
		LastEpoch:        w.lastEpoch,
		DurableSeq:       w.durableSeq,
		SafeSeq:          w.safeSeq,
		PersistedSafeSeq: w.persistedSafe,
		Trimmed:          w.trimmed,
		Segments:         len(w.segs),
		Fsync:            w.fsync,
	}
	for _, sg := range w.segs {
		s.Bytes += sg.end
	}
	if w.frames > 0 {
		s.FirstSeq = w.firstSeq
	}
	if w.failed != nil {
		s.Failed = w.failed.Error()
	}
	w.mu.Unlock()
	s.BytesOnDisk = w.BytesOnDisk()
	w.mu.Lock()
	return s
}

// Base returns the first retained Seq and the epoch of the frame before it.
func (w *WAL) Base() (base, prevEpoch uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.base, w.baseEpoch
}

// Close flushes what is queued, persists safe_seq and closes the file. It is
// idempotent; appends after Close fail with ErrClosed.
func (w *WAL) Close() error {
	var err error
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.stop)
		w.wg.Wait() // the flusher writes what was queued before it exits
		w.persistSafeSeq()
		w.mu.Lock()
		w.notifyLocked()
		err = w.failed
		segs := w.segs
		w.mu.Unlock()
		w.fileMu.Lock()
		for _, sg := range segs {
			if sg.f != nil {
				if cerr := sg.f.Close(); err == nil {
					err = cerr
				}
			}
		}
		w.fileMu.Unlock()
	})
	return err
}

// Epochs returns a copy of the log's epoch history: where each epoch's frames
// begin.
func (w *WAL) Epochs() []EpochStart {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]EpochStart(nil), w.epochs...)
}

// WrittenSeq returns the last Seq written to the file (readable, perhaps not
// yet fsynced).
func (w *WAL) WrittenSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writtenSeq
}

// errPowerLoss is what the test-only failpoint "powerloss" returns.
var errPowerLoss = errors.New("walrepl: failpoint: power loss")

// fault runs the build-tagged failpoint and the test seam at a named point.
func (w *WAL) fault(point string) error { return faultOpts(&w.opts, point) }

// crash stops the WAL's goroutines and closes its file without flushing
// what is queued or persisting safe_seq: what a killed process leaves. Tests
// only.
func (w *WAL) crash() {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.failed = ErrClosed
		w.pending = nil
		w.notifyLocked()
		w.mu.Unlock()
		close(w.stop)
		w.wg.Wait()
		w.fileMu.Lock()
		w.mu.Lock()
		for _, sg := range w.segs {
			if sg.f != nil {
				sg.f.Close() // kept non-nil: a late reader gets "file already closed"
			}
		}
		w.mu.Unlock()
		w.fileMu.Unlock()
	})
}

// TruncationsSince returns the Seqs kept by every truncation after the first
// `seen` ones, and the new count. Indexes built over the log use it to drop
// what a truncation removed.
func (w *WAL) TruncationsSince(seen int) ([]uint64, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seen >= len(w.truncs) {
		return nil, len(w.truncs)
	}
	return append([]uint64(nil), w.truncs[seen:]...), len(w.truncs)
}

// failNowLocked fails the WAL with err, wakes every waiter and returns err.
func (w *WAL) failNowLocked(err error) error {
	w.failLocked(err)
	w.notifyLocked()
	return err
}

// writePendingLocked writes what is queued (rolling where a roll is queued,
// without a final fsync) so that the files and memory agree before a file is
// cut or replaced; the caller holds flushMu and mu.
func (w *WAL) writePendingLocked() error {
	if len(w.pending) == 0 {
		return nil
	}
	chunks := w.pending
	w.pending = nil
	if err := w.writeChunks(chunks, true); err != nil {
		w.failNowLocked(fmt.Errorf("%w: %v", ErrFailed, err))
		return w.failed
	}
	return nil
}

// WriteFileAtomic replaces path with data crash-safely: temporary file,
// fsync, rename, directory fsync. For the small state files beside the WAL.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomic(path, data, perm)
}
