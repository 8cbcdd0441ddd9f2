package walrepl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"
)

// The WAL is a chain of segment files (docs/wal-format.md):
//
//	telemetry.wal                       the active segment: the only one written
//	telemetry-<first Seq, 20 digits>.seg  sealed segments: never appended to again
//	telemetry.wal.next                  the next active segment while a roll runs
//
// A roll (the active segment reached Options.SegmentBytes) is, in order:
// fdatasync the active file; create telemetry.wal.next holding only the new
// segment's header and fdatasync it; hard-link telemetry.wal to its sealed
// name and fsync the directory; rename telemetry.wal.next over telemetry.wal
// and fsync the directory. telemetry.wal exists at every instant, so no crash
// point looks like the runbook's "WAL missing"; recovery removes a leftover
// telemetry.wal.next (it never holds a frame) and a sealed name that is still
// a hard link of telemetry.wal (the roll had not replaced it yet).

const (
	// SegmentHeaderSize is the size of a version-2 segment header.
	SegmentHeaderSize = 64
	// segVersion is the format version of segment headers.
	segVersion = 2
	// DefaultSegmentBytes bounds a segment file (plus one frame), like etcd's
	// 64 MB WAL files.
	DefaultSegmentBytes = 64 << 20
	// MinSegmentBytes is the smallest segment bound Options accept.
	MinSegmentBytes = 4 << 10

	// NextFile is the next active segment while a roll (or a truncation into
	// a sealed segment, or a rebase) replaces telemetry.wal.
	NextFile = "telemetry.wal.next"

	sealedPrefix = "telemetry-"
	sealedSuffix = ".seg"
	sealedDigits = 20

	// segFlagBase marks a segment that begins the log: nothing before its
	// first Seq is part of it (a new WAL, a reset, a rebase).
	segFlagBase = 1
)

// SealedName is the file name of the sealed segment whose first frame has Seq
// first: telemetry-00000000000000000001.seg.
func SealedName(first uint64) string {
	return fmt.Sprintf("%s%0*d%s", sealedPrefix, sealedDigits, first, sealedSuffix)
}

// parseSealedName returns the first Seq a sealed segment's name carries.
func parseSealedName(name string) (uint64, bool) {
	if !strings.HasPrefix(name, sealedPrefix) || !strings.HasSuffix(name, sealedSuffix) {
		return 0, false
	}
	d := name[len(sealedPrefix) : len(name)-len(sealedSuffix)]
	if len(d) != sealedDigits {
		return 0, false
	}
	v, err := strconv.ParseUint(d, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// segHeader is the first SegmentHeaderSize bytes of a version-2 segment.
//
//	0  [8]  magic "AOTELWAL"
//	8  u32  version (2)
//	12 u32  CRC-32C over bytes [0,12) and [16,64)
//	16 [16] WAL id
//	32 u64  first Seq: the Seq of the segment's first frame
//	40 u64  prev epoch: the epoch of frame first-1 (0 when first is 1)
//	48 u32  prev CRC: the CRC field of frame first-1, 0 when not known
//	52 u32  flags: bit 0 BASE (the log begins here)
//	56 u64  reserved, 0
type segHeader struct {
	ID        [16]byte
	First     uint64
	PrevEpoch uint64
	PrevCRC   uint32
	Flags     uint32
}

func (h segHeader) base() bool { return h.Flags&segFlagBase != 0 }

func (h segHeader) encode() []byte {
	b := make([]byte, SegmentHeaderSize)
	copy(b, fileMagic)
	binary.LittleEndian.PutUint32(b[8:], segVersion)
	copy(b[16:], h.ID[:])
	binary.LittleEndian.PutUint64(b[32:], h.First)
	binary.LittleEndian.PutUint64(b[40:], h.PrevEpoch)
	binary.LittleEndian.PutUint32(b[48:], h.PrevCRC)
	binary.LittleEndian.PutUint32(b[52:], h.Flags)
	crc := crc32.Update(0, castagnoli, b[0:12])
	crc = crc32.Update(crc, castagnoli, b[16:])
	binary.LittleEndian.PutUint32(b[12:], crc)
	return b
}

// anyHeader is a segment's header, either version: v1 is the single-file
// telemetry.wal of format version 1 (a 32-byte header, no chain fields).
type anyHeader struct {
	V1  bool
	ID  [16]byte
	Seg segHeader // version 2 only
}

// size is where the header ends.
func (h anyHeader) size() int64 {
	if h.V1 {
		return FileHeaderSize
	}
	return SegmentHeaderSize
}

// decodeAnyHeader reads a version-1 file header or a version-2 segment
// header from the start of b.
func decodeAnyHeader(b []byte) (anyHeader, error) {
	if len(b) >= 12 && string(b[0:8]) == fileMagic && binary.LittleEndian.Uint32(b[8:]) == segVersion {
		if len(b) < SegmentHeaderSize {
			return anyHeader{}, fmt.Errorf("file is %d bytes, shorter than its %d-byte header", len(b), SegmentHeaderSize)
		}
		crc := crc32.Update(0, castagnoli, b[0:12])
		crc = crc32.Update(crc, castagnoli, b[16:SegmentHeaderSize])
		if crc != binary.LittleEndian.Uint32(b[12:]) {
			return anyHeader{}, errors.New("header fails its checksum")
		}
		var h anyHeader
		copy(h.ID[:], b[16:32])
		h.Seg = segHeader{ID: h.ID,
			First:     binary.LittleEndian.Uint64(b[32:]),
			PrevEpoch: binary.LittleEndian.Uint64(b[40:]),
			PrevCRC:   binary.LittleEndian.Uint32(b[48:]),
			Flags:     binary.LittleEndian.Uint32(b[52:]),
		}
		if h.Seg.Flags&^segFlagBase != 0 || binary.LittleEndian.Uint64(b[56:]) != 0 {
			return anyHeader{}, fmt.Errorf("unknown flags %#x or reserved bytes set (this build reads version %d)", h.Seg.Flags, segVersion)
		}
		if h.Seg.First == 0 {
			return anyHeader{}, errors.New("first Seq is 0")
		}
		return h, nil
	}
	fh, err := decodeFileHeader(b)
	if err != nil {
		return anyHeader{}, err
	}
	return anyHeader{V1: true, ID: fh.ID}, nil
}

// segment is one file of the chain, as the open WAL tracks it. Fields are
// guarded by WAL.mu; f is set once, when the file exists on disk.
type segment struct {
	name      string  // file name in the directory
	f         segFile // nil while a queued roll has not created the file
	v1        bool    // a version-1 file sealed by the upgrade
	hdr       segHeader
	first     uint64 // Seq of its first frame (of the next one while empty)
	last      uint64 // Seq of its last queued frame; first-1 while empty
	lastEpoch uint64 // epoch of frame last (hdr.PrevEpoch while empty)
	lastCRC   uint32 // CRC field of frame last (hdr.PrevCRC while empty)
	start     int64  // offset of its first frame
	end       int64  // offset after its last queued frame
	written   int64  // offset after its last written frame
	index     []int64
	// seen[k] is when this process queued the frame index[k] points at
	// (zero for frames found on disk at Open): age retention also waits
	// MaxAge of monotonic time since then (DESIGN §6 rule 13).
	seen []time.Time
}

func (s *segment) frames() uint64 { return s.last + 1 - s.first }

// holds reports whether the frame at seq is in this segment.
func (s *segment) holds(seq uint64) bool { return seq >= s.first && seq <= s.last }

// newActiveSeg is the in-memory segment of a new, empty telemetry.wal with
// header h, open as f (nil while a queued roll has not created it).
func newActiveSeg(h segHeader, f segFile) *segment {
	return &segment{name: WALFile, f: f, hdr: h, first: h.First, last: h.First - 1, lastEpoch: h.PrevEpoch,
		lastCRC: h.PrevCRC, start: SegmentHeaderSize, end: SegmentHeaderSize, written: SegmentHeaderSize}
}

// createNext writes telemetry.wal.next holding only header h, fdatasynced,
// and returns it open for writing. A leftover from an interrupted operation
// is replaced (it never holds a frame).
func createNext(fsys fileSystem, dir string, h segHeader) (segFile, error) {
	path := joinDir(dir, NextFile)
	if err := fsys.Remove(path); err != nil && !isNotExist(err) {
		return nil, err
	}
	f, err := fsys.CreateExcl(path)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(h.encode(), 0); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Datasync(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// rollFiles seals telemetry.wal under sealedName and makes a new, empty
// telemetry.wal with header h; it returns the new file, open for writing.
// The caller has fdatasynced the old active file. Order (every crash point
// recovers without an operator, see the top of this file):
//
//  1. telemetry.wal.next with h, fdatasynced;
//  2. hard link telemetry.wal → sealedName, directory fsync;
//  3. rename telemetry.wal.next → telemetry.wal, directory fsync.
//
// fault is called at roll-after-next, roll-after-link, roll-after-rename;
// an error it returns stops the roll there, like an I/O error.
func rollFiles(fsys fileSystem, dir, sealedName string, h segHeader, fault func(string) error) (segFile, error) {
	f, err := createNext(fsys, dir, h)
	if err != nil {
		return nil, err
	}
	err = fault("roll-after-next")
	if err == nil {
		err = fsys.Link(joinDir(dir, WALFile), joinDir(dir, sealedName))
	}
	if err == nil {
		err = fsys.SyncDir(dir)
	}
	if err == nil {
		err = fault("roll-after-link")
	}
	if err == nil {
		err = fsys.Rename(joinDir(dir, NextFile), joinDir(dir, WALFile))
	}
	if err == nil {
		err = fault("roll-after-rename")
	}
	if err == nil {
		err = fsys.SyncDir(dir)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// replaceActive replaces telemetry.wal by a new, empty segment with header h
// (telemetry.wal.next, then rename, then directory fsync): a truncation into
// a sealed segment, a rebase, a new WAL. fault is called at
// <op>-after-rename.
func replaceActive(fsys fileSystem, dir string, h segHeader, fault func(string) error, op string) (segFile, error) {
	f, err := createNext(fsys, dir, h)
	if err != nil {
		return nil, err
	}
	err = fsys.Rename(joinDir(dir, NextFile), joinDir(dir, WALFile))
	if err == nil {
		err = fault(op + "-after-rename")
	}
	if err == nil {
		err = fsys.SyncDir(dir)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// faultOpts runs the build-tagged failpoint and the test seam of o.
func faultOpts(o *Options, point string) error {
	if err := failpoint(point); err != nil {
		return err
	}
	if o.Inject != nil {
		return o.Inject(point)
	}
	return nil
}
