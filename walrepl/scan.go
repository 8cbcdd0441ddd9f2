package walrepl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// indexStride is the distance in frames between two entries of the sparse
// offset index. Memory is 8 bytes per stride frames; a lookup reads at most
// stride-1 frame headers.
const indexStride = 64

// epochStart records where an epoch's frames begin: the WAL's epoch history,
// derived from the frames themselves.
type epochStart struct {
	Epoch    uint64
	FirstSeq uint64
}

// scanResult is what a full read of the telemetry directory establishes:
// the chain of segments from the base, every frame checked.
type scanResult struct {
	id         [16]byte
	legacy     bool      // telemetry.wal is a format-version-1 file: Open upgrades it
	base       baseState // the base in effect (a BASE segment may raise telemetry.base's)
	baseRaised bool      // ... and then Open records it in telemetry.base
	segs       []*segment
	firstSeq   uint64 // 0 when the WAL holds no frame
	lastSeq    uint64
	lastEpoch  uint64
	lastCRC    uint32
	frames     int
	endOffset  int64 // in the active segment: just past the last whole frame
	fileSize   int64 // the active segment's size
	tornAt     int64 // start of a repairable torn tail in the active segment, or -1
	epochs     []epochStart

	// Repairs Open makes before it starts; Verify only reports them.
	stale   []string // files to remove: below the base, superseded, a roll's leftovers
	cutName string   // a sealed segment whose tail a truncation superseded
	cutAt   int64    // ... is cut at this offset
	notes   []string // one line per repair, for the report
}

func (s *scanResult) tornBytes() int64 {
	if s.tornAt < 0 {
		return 0
	}
	return s.fileSize - s.tornAt
}

// chunkReader serves frame-sized byte windows from an io.ReaderAt.
type chunkReader struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	off  int64 // file offset of buf[0]
}

// window returns up to n bytes at file offset off (fewer only at EOF).
func (c *chunkReader) window(off int64, n int) ([]byte, error) {
	if off >= c.off && off+int64(n) <= c.off+int64(len(c.buf)) {
		return c.buf[off-c.off : off-c.off+int64(n)], nil
	}
	want := max(n, 4<<20)
	if rem := c.size - off; int64(want) > rem {
		want = int(rem)
	}
	if cap(c.buf) < want {
		c.buf = make([]byte, want)
	}
	c.buf = c.buf[:want]
	m, err := c.r.ReadAt(c.buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	c.buf = c.buf[:m]
	c.off = off
	if n > m {
		n = m
	}
	return c.buf[:n], nil
}

// scanFrames reads the frames of one segment file from seg.start and checks
// every invariant of DESIGN §4 against safeSeq, continuing res (the frames of
// the segments before it). It returns a *RecoveryError for a violation,
// another error for an I/O failure. In the active segment a torn tail above
// safe_seq is not an error: it is reported in res.tornAt for the caller to
// repair (or report). A sealed segment was fsynced whole before it was
// sealed, so any damage in it is damage to written data.
//
// stopAt, when not 0, is the first Seq a newer active segment supersedes (a
// truncation into this sealed segment that a crash interrupted): reading
// stops before it and the rest is recorded in res.cutName/cutAt.
//
// visit, when not nil, is called with every whole frame that passed its
// checks, in order; the Frame and its Payload (which aliases a read buffer)
// are reused, valid only during the call.
func scanFrames(dir string, r io.ReaderAt, size int64, seg *segment, res *scanResult, safeSeq uint64, sealed bool, stopAt uint64, maxPayload int, visit func(*Frame, int64) error) error {
	cr := &chunkReader{r: r, size: size}
	off := seg.start
	seg.end = off
	// One Frame for the whole scan: visit and checkFrame take its address,
	// which would otherwise move a Frame to the heap for every frame read
	// (a fifth of the CPU of opening a WAL).
	var f Frame
	for off < size {
		expected := res.lastSeq + 1
		if stopAt != 0 && expected >= stopAt {
			res.cutName, res.cutAt = seg.name, off
			res.notes = append(res.notes, fmt.Sprintf("cut %s at offset %d: its frames from Seq=%d on were truncated away (a newer %s begins there)", seg.name, off, stopAt, WALFile))
			break
		}
		hdr, err := cr.window(off, FrameHeaderSize)
		if err != nil {
			return err
		}
		flen, lerr := frameLen(hdr, maxPayload)
		var b []byte
		if lerr == nil {
			if b, err = cr.window(off, flen); err != nil {
				return err
			}
		}
		f = Frame{}
		derr := lerr
		if derr == nil {
			f, _, derr = DecodeFrame(b, maxPayload)
		}
		if errors.Is(derr, errBadFlags) {
			// Whole and checksum-valid, so not damage and not a torn tail:
			// a frame this build cannot interpret, like an unknown type.
			seq := binary.LittleEndian.Uint64(b[8:])
			return recErr(CauseBadFrameType, dir, seq, off,
				"frame at Seq=%d has flags %#04x (format version 1 writes 0)", seq, binary.LittleEndian.Uint16(b[34:]))
		}
		if derr != nil {
			// A frame we cannot read. At or below safe_seq it is committed
			// data: fail hard. Above it, it is a torn tail only when nothing
			// readable follows it; a whole frame after damage means the
			// damage hit fsynced data that may have been acknowledged.
			if expected <= safeSeq {
				return errCommittedCorrupt(dir, expected, off, errors.Is(derr, errShortFrame), size-off)
			}
			if sealed {
				return recErr(CauseFrameCorrupt, dir, expected, off,
					"frame at offset %d (expected Seq=%d) of sealed segment %s is unreadable (%v): "+
						"a segment is fsynced whole before it is sealed, so this is damage to written data, not a torn tail",
					off, expected, seg.name, derr)
			}
			at, found, err := findFrameAfter(r, off+1, size, res.lastSeq, maxPayload)
			if err != nil {
				return err
			}
			if found {
				return recErr(CauseFrameCorrupt, dir, expected, off,
					"frame at offset %d (expected Seq=%d) is unreadable (%v) but a whole frame follows at offset %d: "+
						"this is damage to written data, not a torn tail", off, expected, derr, at)
			}
			res.tornAt = off
			return nil
		}
		if err := checkFrame(dir, res, &f, off, expected); err != nil {
			return err
		}
		if visit != nil {
			if err := visit(&f, off); err != nil {
				return err
			}
		}
		if seg.frames()%indexStride == 0 {
			seg.index = append(seg.index, off)
		}
		if res.frames == 0 {
			res.firstSeq = f.Seq
		}
		if len(res.epochs) == 0 || res.epochs[len(res.epochs)-1].Epoch != f.Epoch {
			res.epochs = append(res.epochs, epochStart{Epoch: f.Epoch, FirstSeq: f.Seq})
		}
		res.frames++
		res.lastSeq, res.lastEpoch, res.lastCRC = f.Seq, f.Epoch, binary.LittleEndian.Uint32(b[4:])
		seg.last, seg.lastEpoch, seg.lastCRC = f.Seq, f.Epoch, res.lastCRC
		off += int64(f.Size())
		seg.end = off
	}
	return nil
}

// checkFrame applies the per-frame invariants to a whole, checksum-valid frame.
func checkFrame(dir string, res *scanResult, f *Frame, off int64, expected uint64) error {
	if res.frames == 0 && f.Seq != expected {
		return errBadFirstSeq(dir, off, f.Seq, expected)
	}
	if res.frames != 0 && f.Seq != expected {
		return errSeqGap(dir, off, f.Seq, res.lastSeq)
	}
	if f.Epoch < res.lastEpoch {
		return recErr(CauseEpochRegression, dir, f.Seq, off,
			"frame at Seq=%d has epoch %d, below the previous frame's epoch %d", f.Seq, f.Epoch, res.lastEpoch)
	}
	if !f.Type.valid() {
		return recErr(CauseBadFrameType, dir, f.Seq, off, "frame at Seq=%d has unknown type %d", f.Seq, uint16(f.Type))
	}
	if !validJSON(f.Payload) { // json.Valid's verdict, faster (jsonvalid.go)
		return errInvalidJSON(dir, f.Seq, off)
	}
	return nil
}

// findFrameAfter looks for a whole, checksum-valid frame starting anywhere in
// [from, size) whose Seq could follow lastSeq. Only positions whose Seq field
// is plausible are checksummed, which keeps the search linear.
func findFrameAfter(r io.ReaderAt, from, size int64, lastSeq uint64, maxPayload int) (int64, bool, error) {
	maxSeq := lastSeq + uint64((size-from)/FrameHeaderSize) + 1
	cr := &chunkReader{r: r, size: size}
	fr := &chunkReader{r: r, size: size}
	for off := from; off+FrameHeaderSize <= size; off++ {
		h, err := cr.window(off, FrameHeaderSize)
		if err != nil {
			return 0, false, err
		}
		if len(h) < FrameHeaderSize {
			break
		}
		seq := binary.LittleEndian.Uint64(h[8:])
		if seq <= lastSeq || seq > maxSeq {
			continue
		}
		flen, err := frameLen(h, maxPayload)
		if err != nil || off+int64(flen) > size {
			continue
		}
		b, err := fr.window(off, flen)
		if err != nil {
			return 0, false, err
		}
		if _, _, err := DecodeFrame(b, maxPayload); err == nil {
			return off, true, nil
		}
	}
	return 0, false, nil
}
