package walrepl

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// scanDir reads the whole WAL in dir — every segment of the chain from the
// base to telemetry.wal — and checks it against safeSeq: the invariants of
// DESIGN §4 on every frame, and across segments (docs/wal-format.md,
// "Recovery across segments"). It never writes. telemetry.wal must exist.
func scanDir(fsys fileSystem, dir string, safeSeq uint64, maxPayload int, visit func(*Frame, int64) error) (*scanResult, error) {
	res := &scanResult{tornAt: -1}
	names, err := fsys.List(dir)
	if err != nil {
		return nil, fmt.Errorf("walrepl: %w", err)
	}
	activePath := joinDir(dir, WALFile)
	act, actSize, err := readHeaderOf(fsys, activePath)
	if err != nil {
		return nil, err
	}
	if act == nil {
		return nil, recErr(CauseBadHeader, dir, 0, 0, "%s header is damaged: %v", WALFile, actSize.err)
	}
	res.id = act.ID
	type sealedFile struct {
		name  string
		first uint64
	}
	var sealed []sealedFile
	for _, n := range names {
		if n == NextFile {
			res.stale = append(res.stale, n)
			res.notes = append(res.notes, fmt.Sprintf("remove %s: the next segment of a roll that did not finish (it holds no frame)", n))
			continue
		}
		first, ok := parseSealedName(n)
		if !ok {
			continue
		}
		same, err := fsys.SameFile(joinDir(dir, n), activePath)
		if err != nil {
			return nil, fmt.Errorf("walrepl: %w", err)
		}
		if same {
			res.stale = append(res.stale, n)
			res.notes = append(res.notes, fmt.Sprintf("remove %s: a second name of %s from a roll that did not finish", n, WALFile))
			continue
		}
		sealed = append(sealed, sealedFile{n, first})
	}
	sort.Slice(sealed, func(i, j int) bool { return sealed[i].first < sealed[j].first })
	bs, recorded, err := loadBase(dir)
	if err != nil {
		return nil, err
	}

	if act.V1 {
		// Format version 1: one file, frames from telemetry.base's offset.
		if len(sealed) > 0 {
			return nil, recErr(CauseSegmentChain, dir, 0, -1,
				"sealed segment %s lies beside a format-version-1 %s, which has no chain to it", sealed[0].name, WALFile)
		}
		res.legacy = true
		res.base = bs
		seg := &segment{name: WALFile, v1: true, first: bs.Base, last: bs.Base - 1, lastEpoch: bs.PrevEpoch, start: bs.Offset}
		if bs.Offset == 0 {
			seg.start = FileHeaderSize
		}
		if seg.start > actSize.n {
			return nil, recErr(CauseBaseCorrupt, dir, bs.Base, seg.start,
				"%s says the retained WAL starts at offset %d but %s has only %d bytes", BaseFile, seg.start, WALFile, actSize.n)
		}
		res.lastSeq, res.lastEpoch = bs.Base-1, bs.PrevEpoch
		if err := scanFile(fsys, dir, activePath, actSize.n, seg, res, safeSeq, false, 0, maxPayload, visit); err != nil {
			return nil, err
		}
		res.segs = []*segment{seg}
		res.endOffset, res.fileSize = seg.end, actSize.n
		return res, nil
	}

	// Every segment of the chain, sealed ones in Seq order, then the active.
	var segs []*segment
	for _, s := range sealed {
		if s.first < bs.Base {
			// Below the recorded base: a trim removed its frames from the
			// log before a crash stopped it removing the file. Never read.
			res.stale = append(res.stale, s.name)
			res.notes = append(res.notes, fmt.Sprintf("remove %s: below the base %d (a trim that did not finish)", s.name, bs.Base))
			continue
		}
		h, hs, err := readHeaderOf(fsys, joinDir(dir, s.name))
		if err != nil {
			return nil, err
		}
		if h == nil {
			return nil, recErr(CauseBadHeader, dir, s.first, 0, "%s header is damaged: %v", s.name, hs.err)
		}
		if h.ID != act.ID {
			return nil, recErr(CauseSegmentChain, dir, s.first, 0,
				"sealed segment %s belongs to WAL %s, not to this one (%s)", s.name, IDString(h.ID), IDString(act.ID))
		}
		seg := &segment{name: s.name, v1: h.V1, hdr: h.Seg, first: s.first, start: h.size()}
		if !h.V1 && h.Seg.First != s.first {
			return nil, recErr(CauseSegmentChain, dir, h.Seg.First, 0,
				"sealed segment %s says its first frame is Seq=%d, not the Seq its name carries", s.name, h.Seg.First)
		}
		segs = append(segs, seg)
	}
	active := &segment{name: WALFile, hdr: act.Seg, first: act.Seg.First, start: SegmentHeaderSize}
	segs = append(segs, active)

	// The base: telemetry.base, raised by the newest BASE segment above it.
	base := bs
	for _, s := range segs {
		if !s.v1 && s.hdr.base() && s.first > base.Base {
			base = baseState{Base: s.first, PrevEpoch: s.hdr.PrevEpoch}
			res.baseRaised = true
		}
	}
	if res.baseRaised {
		res.notes = append(res.notes, fmt.Sprintf("record base %d in %s: a segment that begins the log starts there", base.Base, BaseFile))
	}
	res.base = base
	if active.first < base.Base {
		return nil, recErr(CauseBaseCorrupt, dir, base.Base, -1,
			"%s says the log begins at Seq=%d, above the first Seq=%d of the active segment %s", BaseFile, base.Base, active.first, WALFile)
	}
	var chain []*segment
	for _, s := range segs {
		switch {
		case s == active:
			chain = append(chain, s)
		case s.first < base.Base:
			res.stale = append(res.stale, s.name)
			res.notes = append(res.notes, fmt.Sprintf("remove %s: below the base %d (a trim that did not finish)", s.name, base.Base))
		case s.first >= active.first:
			// A truncation replaced telemetry.wal with a segment that
			// begins below this one: it is no longer part of the log.
			if active.first <= safeSeq {
				return nil, recErr(CauseSegmentChain, dir, s.first, -1,
					"%s begins at Seq=%d, but sealed segment %s starts at Seq=%d and safe_seq=%d: a truncation may not drop committed frames",
					WALFile, active.first, s.name, s.first, safeSeq)
			}
			res.stale = append(res.stale, s.name)
			res.notes = append(res.notes, fmt.Sprintf("remove %s: a truncation to Seq=%d removed its frames", s.name, active.first-1))
		default:
			chain = append(chain, s)
		}
	}
	if chain[0].first != base.Base {
		return nil, errSegmentMissing(dir, base.Base, chain[0], "the log begins at Seq=%d (%s)", base.Base, baseSource(recorded, res.baseRaised))
	}
	res.lastSeq, res.lastEpoch = base.Base-1, base.PrevEpoch
	if start := chain[0]; !start.v1 {
		if start.hdr.PrevEpoch != base.PrevEpoch && base.Base > 1 {
			return nil, recErr(CauseSegmentChain, dir, start.first, 0,
				"segment %s says frame Seq=%d had epoch %d, %s says %d", start.name, base.Base-1, start.hdr.PrevEpoch, BaseFile, base.PrevEpoch)
		}
		res.lastCRC = start.hdr.PrevCRC
	} else if recorded && bs.Offset > 0 {
		start.start = bs.Offset
	}
	for i, s := range chain {
		s.last, s.lastEpoch, s.lastCRC = s.first-1, res.lastEpoch, res.lastCRC
		if i > 0 {
			if err := checkLink(dir, res, s); err != nil {
				return nil, err
			}
		}
		stop := uint64(0)
		if s != active {
			stop = active.first
		}
		path := joinDir(dir, s.name)
		size, err := sizeOf(fsys, path)
		if err != nil {
			return nil, err
		}
		if s.start > size {
			return nil, recErr(CauseBaseCorrupt, dir, base.Base, s.start,
				"%s says the retained WAL starts at offset %d but %s has only %d bytes", BaseFile, s.start, s.name, size)
		}
		if err := scanFile(fsys, dir, path, size, s, res, safeSeq, s != active, stop, maxPayload, visit); err != nil {
			return nil, err
		}
		if s.frames() == 0 && s != active {
			return nil, recErr(CauseSegmentChain, dir, s.first, s.start, "sealed segment %s holds no frame", s.name)
		}
		if s == active {
			res.endOffset, res.fileSize = s.end, size
		}
	}
	if res.cutName != "" && active.first <= safeSeq {
		return nil, recErr(CauseSegmentChain, dir, active.first, -1,
			"%s begins at Seq=%d inside sealed segment %s, at or below safe_seq=%d: a truncation may not drop committed frames",
			WALFile, active.first, res.cutName, safeSeq)
	}
	res.segs = chain
	return res, nil
}

// checkLink checks that segment s continues the frames read so far.
func checkLink(dir string, res *scanResult, s *segment) error {
	want := res.lastSeq + 1
	switch {
	case s.first > want:
		return errSegmentMissing(dir, want, s, "the segment before it ends at Seq=%d", res.lastSeq)
	case s.first < want:
		return recErr(CauseSegmentChain, dir, s.first, 0,
			"segment %s starts at Seq=%d but the segment before it ends at Seq=%d: sealed segments may not overlap", s.name, s.first, res.lastSeq)
	case s.v1:
		return recErr(CauseSegmentChain, dir, s.first, 0, "format-version-1 segment %s can only begin the log", s.name)
	case s.hdr.PrevEpoch != res.lastEpoch || (s.hdr.PrevCRC != 0 && res.lastCRC != 0 && s.hdr.PrevCRC != res.lastCRC):
		return recErr(CauseSegmentChain, dir, s.first, 0,
			"segment %s says frame Seq=%d had epoch %d and CRC %08x, but that frame has epoch %d and CRC %08x",
			s.name, res.lastSeq, s.hdr.PrevEpoch, s.hdr.PrevCRC, res.lastEpoch, res.lastCRC)
	}
	return nil
}

func baseSource(recorded, raised bool) string {
	switch {
	case raised:
		return "a segment flagged as the log's beginning"
	case recorded:
		return BaseFile
	}
	return BaseFile + " is absent: the log begins at Seq=1"
}

// errSegmentMissing: the frames from want up to s.first-1 are in no segment.
func errSegmentMissing(dir string, want uint64, s *segment, format string, args ...any) error {
	return recErr(CauseSegmentMissing, dir, want, -1,
		"no segment holds frames Seq=%d..%d: %s, but the next segment %s starts at Seq=%d",
		want, s.first-1, fmt.Sprintf(format, args...), s.name, s.first)
}

type sizeOrErr struct {
	n   int64
	err error
}

// readHeaderOf reads the header at the start of path. A damaged header is
// (nil, its error, nil); an I/O error is the error.
func readHeaderOf(fsys fileSystem, path string) (*anyHeader, sizeOrErr, error) {
	f, err := fsys.OpenRead(path)
	if err != nil {
		return nil, sizeOrErr{}, fmt.Errorf("walrepl: %w", err)
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, sizeOrErr{}, fmt.Errorf("walrepl: %w", err)
	}
	b := make([]byte, SegmentHeaderSize)
	m, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, sizeOrErr{}, fmt.Errorf("walrepl: reading %s: %w", path, err)
	}
	h, herr := decodeAnyHeader(b[:m])
	if herr != nil {
		return nil, sizeOrErr{n: n, err: herr}, nil
	}
	return &h, sizeOrErr{n: n}, nil
}

func sizeOf(fsys fileSystem, path string) (int64, error) {
	f, err := fsys.OpenRead(path)
	if err != nil {
		return 0, fmt.Errorf("walrepl: %w", err)
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return 0, fmt.Errorf("walrepl: %w", err)
	}
	return n, nil
}

// scanFile opens path read-only and scans seg's frames in it.
func scanFile(fsys fileSystem, dir, path string, size int64, seg *segment, res *scanResult, safeSeq uint64, sealed bool, stopAt uint64, maxPayload int, visit func(*Frame, int64) error) error {
	f, err := fsys.OpenRead(path)
	if err != nil {
		return fmt.Errorf("walrepl: %w", err)
	}
	defer f.Close()
	err = scanFrames(dir, f, size, seg, res, safeSeq, sealed, stopAt, maxPayload, visit)
	var re *RecoveryError
	if errors.As(err, &re) && re.File == "" {
		re.File = seg.name
	}
	return err
}
