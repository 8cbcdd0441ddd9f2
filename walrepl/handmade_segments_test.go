package walrepl_test

// Multi-segment WALs written by hand from docs/wal-format.md ("Segments",
// "Recovery across segments"): names, headers and the chain between them.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/autonomyops/orchestrator/walrepl"
)

// hSegFile is one file of a hand-made chain.
type hSegFile struct {
	name string
	hdr  hSeg
	wal  *hWAL
}

// docSealedName is the page's name of a sealed segment: "telemetry-", the
// first Seq as 20 decimal digits, ".seg".
func docSealedName(first uint64) string { return fmt.Sprintf("telemetry-%020d.seg", first) }

// buildChain splits frames into segments of the given sizes, chained as the
// page says: each header names the first Seq of its segment and the epoch
// and CRC field of the frame before it; the first begins the log (BASE).
// The last segment is telemetry.wal.
func buildChain(frames []hFrame, counts ...int) []hSegFile {
	var out []hSegFile
	var prev *hFrame
	i := 0
	for k, n := range counts {
		h := hSeg{Magic: docMagic, Version: docVersion, ID: testWALID, First: frames[i].Seq}
		if prev == nil {
			h.Flags = docFlagBase
		} else {
			h.PrevEpoch = prev.Epoch
			h.PrevCRC = le.Uint32(prev.encode()[4:])
		}
		seg := hSegFile{name: docSealedName(h.First), hdr: h, wal: buildSeg(h, frames[i:i+n]...)}
		if k == len(counts)-1 {
			seg.name = walrepl.WALFile
		}
		out = append(out, seg)
		prev = &frames[i+n-1]
		i += n
	}
	return out
}

func writeChain(t *testing.T, dir string, segs []hSegFile) {
	t.Helper()
	for _, s := range segs {
		writeFile(t, dir, s.name, s.wal.img)
	}
}

func chainDir(t *testing.T, segs []hSegFile, safe uint64) string {
	t.Helper()
	dir := setupDir(t, nil, safeSeq(safe))
	writeChain(t, dir, segs)
	return dir
}

func TestWAL_Segments_validChain(t *testing.T) {
	fs := smallFrames(12)
	segs := buildChain(fs, 4, 4, 4)
	dir := chainDir(t, segs, 10)
	before := snapshot(t, dir)
	rep, err := walrepl.Verify(dir, true, 0)
	if err != nil || rep.LastSeq != 12 || rep.Frames != 12 || rep.LastEpoch != 7 || len(rep.Segments) != 3 || len(rep.Repairs) != 0 ||
		rep.Segments[1].Name != "telemetry-00000000000000000005.seg" || rep.Segments[1].FirstSeq != 5 || rep.Segments[1].LastSeq != 8 {
		t.Fatalf("Verify: %+v, %v", rep, err)
	}
	o, _ := testOptions(dir)
	o.Initialized = true
	w, _ := openOK(t, o)
	checkFrames(t, w, fs)
	w.Close()
	if !sameSnapshot(before, snapshot(t, dir)) {
		t.Fatal("Open and Close changed a clean multi-segment WAL")
	}
}

func segMissingMsg(from, to uint64, why string, next uint64) string {
	return fmt.Sprintf("telemetry/wal: SEGMENT_MISSING — no segment holds frames Seq=%d..%d: %s, but the next segment %s starts at Seq=%d",
		from, to, why, docSealedName(next), next)
}

func TestWAL_Segments_gap(t *testing.T) {
	fs := smallFrames(12)
	segs := buildChain(fs, 4, 4, 4)
	// The second segment holds 7..8 only, but says it follows Seq=6.
	segs[1].hdr.First = 7
	segs[1].hdr.PrevEpoch = fs[5].Epoch
	segs[1].wal = buildSeg(segs[1].hdr, fs[6:8]...)
	segs[1].name = docSealedName(7)
	dir := chainDir(t, segs, 2)
	expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSegmentMissing,
		msg: segMissingMsg(5, 6, "the segment before it ends at Seq=4", 7)})
}

func TestWAL_Segments_missingMiddleSegment(t *testing.T) {
	for _, safe := range []uint64{12, 2} { // in the committed range, and above it
		t.Run(fmt.Sprintf("safe_seq=%d", safe), func(t *testing.T) {
			segs := buildChain(smallFrames(14), 4, 4, 4, 2)
			dir := chainDir(t, segs, safe)
			if err := os.Remove(filepath.Join(dir, segs[1].name)); err != nil {
				t.Fatal(err)
			}
			expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSegmentMissing,
				msg: segMissingMsg(5, 8, "the segment before it ends at Seq=4", 9)})
		})
	}
}

func TestWAL_Segments_missingFirstSegment(t *testing.T) {
	segs := buildChain(smallFrames(12), 4, 4, 4)
	dir := chainDir(t, segs, 12)
	os.Remove(filepath.Join(dir, segs[0].name))
	expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSegmentMissing,
		msg: segMissingMsg(1, 4, "the log begins at Seq=1 (telemetry.base is absent: the log begins at Seq=1)", 5)})
	// With telemetry.base naming Seq=1 the message says so.
	writeFile(t, dir, "telemetry.base", []byte(`{"base":1,"prev_epoch":0}`+"\n"))
	expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSegmentMissing,
		msg: segMissingMsg(1, 4, "the log begins at Seq=1 (telemetry.base)", 5)})
}

// Damage inside a sealed segment is never a torn tail.
func TestWAL_Segments_sealedSegmentDamage(t *testing.T) {
	fs := smallFrames(12)
	segs := buildChain(fs, 4, 4, 4)
	sealed := segs[1] // frames 5..8
	for _, tc := range []struct {
		name string
		at   int // frame index in the segment
		fn   func([]byte) []byte
		safe uint64
		want func(off int64) want
	}{
		{"bit flip in a committed frame", 1, func(b []byte) []byte { b[len(b)-3] ^= 0x04; return b }, 12, func(off int64) want {
			return want{cause: walrepl.CauseCommittedFrameCorrupt, seq: 6, off: off, hasPos: true,
				msg: fmt.Sprintf("telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=6 (offset %d) fails its checksum", off)}
		}},
		{"CRC flipped in the last committed frame", 3, func(b []byte) []byte { b[5] ^= 0x80; return b }, 8, func(off int64) want {
			return want{cause: walrepl.CauseCommittedFrameCorrupt, seq: 8, off: off, hasPos: true,
				msg: fmt.Sprintf("telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=8 (offset %d) fails its checksum", off)}
		}},
		{"corrupt frame above safe_seq", 2, func(b []byte) []byte { b[len(b)-2] ^= 0x10; return b }, 2, func(off int64) want {
			return want{cause: walrepl.CauseFrameCorrupt, prefix: true, seq: 7, off: off, hasPos: true,
				msg: fmt.Sprintf("telemetry/wal: FRAME_CORRUPT — frame at offset %d (expected Seq=7) of sealed segment %s is unreadable (", off, sealed.name)}
		}},
		{"sealed segment cut inside its last frame, above safe_seq", 3, func(b []byte) []byte { return b[:len(b)/2] }, 2, func(off int64) want {
			return want{cause: walrepl.CauseFrameCorrupt, prefix: true, seq: 8, off: off, hasPos: true,
				msg: fmt.Sprintf("telemetry/wal: FRAME_CORRUPT — frame at offset %d (expected Seq=8) of sealed segment %s is unreadable (", off, sealed.name)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := sealed.wal
			img := append([]byte(nil), w.img[:w.offs[tc.at]]...)
			img = append(img, tc.fn(append([]byte(nil), w.img[w.offs[tc.at]:w.offs[tc.at+1]]...))...)
			img = append(img, w.img[w.offs[tc.at+1]:]...)
			dir := chainDir(t, segs, tc.safe)
			writeFile(t, dir, sealed.name, img)
			expectRefused(t, dir, true, nil, tc.want(w.offs[tc.at]))
			_, err := walrepl.Verify(dir, true, 0)
			if re := err.(*walrepl.RecoveryError); re.File != sealed.name {
				t.Fatalf("RecoveryError.File = %q, want %q", re.File, sealed.name)
			}
		})
	}
}

func TestWAL_Segments_tornTailInActive(t *testing.T) {
	fs := smallFrames(13)
	segs := buildChain(fs[:12], 4, 4, 4)
	active := segs[2].wal
	next := hFrame(fs[12]).encode()
	dir := chainDir(t, segs, 10)
	writeFile(t, dir, walrepl.WALFile, active.withTail(next[:len(next)/2]))
	sealedBefore := []string{string(readFile(t, dir, segs[0].name)), string(readFile(t, dir, segs[1].name))}
	o, hook := testOptions(dir)
	o.Initialized = true
	w, rep := openOK(t, o)
	if !rep.TornTail || rep.TornOffset != active.offs[4] || rep.LastSeq != 12 {
		t.Fatalf("report %+v", rep)
	}
	if e := logEntry(hook, "WAL_TORN_TAIL_TRUNCATED"); e == nil || e.Level != logrus.WarnLevel {
		t.Fatalf("no WAL_TORN_TAIL_TRUNCATED: %v", hook.AllEntries())
	}
	checkFrames(t, w, fs[:12])
	w.Close()
	if got := readFile(t, dir, walrepl.WALFile); string(got) != string(active.img) {
		t.Fatal("telemetry.wal was not cut at its last whole frame")
	}
	if string(readFile(t, dir, segs[0].name)) != sealedBefore[0] || string(readFile(t, dir, segs[1].name)) != sealedBefore[1] {
		t.Fatal("a sealed segment changed")
	}
}

func TestWAL_Segments_brokenChain(t *testing.T) {
	fs := smallFrames(12)
	other := testWALID
	other[0] ^= 1
	for _, tc := range []struct {
		name   string
		adjust func(segs []hSegFile)
		msg    string
	}{
		{"previous epoch", func(s []hSegFile) { s[2].hdr.PrevEpoch = 6 },
			"telemetry/wal: SEGMENT_CHAIN — segment telemetry.wal says frame Seq=8 had epoch 6 and CRC %08x, but that frame has epoch 7 and CRC %08x"},
		{"previous CRC", func(s []hSegFile) { s[2].hdr.PrevCRC ^= 1 },
			"telemetry/wal: SEGMENT_CHAIN — segment telemetry.wal says frame Seq=8 had epoch 7 and CRC %08x, but that frame has epoch 7 and CRC %08x"},
		{"another WAL's segment", func(s []hSegFile) { s[1].hdr.ID = other },
			"telemetry/wal: SEGMENT_CHAIN — sealed segment telemetry-00000000000000000005.seg belongs to WAL " + walrepl.IDString(other) + ", not to this one (" + walrepl.IDString(testWALID) + ")"},
		{"name and header disagree", func(s []hSegFile) { s[1].name = docSealedName(4) },
			"telemetry/wal: SEGMENT_CHAIN — sealed segment telemetry-00000000000000000004.seg says its first frame is Seq=5, not the Seq its name carries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			segs := buildChain(fs, 4, 4, 4)
			tc.adjust(segs)
			for i := range segs {
				segs[i].wal = buildSeg(segs[i].hdr, segs[i].wal.frames...)
			}
			dir := chainDir(t, segs, 12)
			msg := tc.msg
			if strings.Contains(msg, "%08x") {
				msg = fmt.Sprintf(msg, segs[2].hdr.PrevCRC, le.Uint32(fs[7].encode()[4:]))
			}
			expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSegmentChain, msg: msg})
		})
	}
}

// The crash windows of a roll, made by hand: the next file written but not
// yet renamed, and the sealed name linked but telemetry.wal not yet replaced.
func TestWAL_Segments_interruptedRoll(t *testing.T) {
	fs := smallFrames(8)
	segs := buildChain(fs, 4, 4)
	next := hSeg{Magic: docMagic, Version: docVersion, ID: testWALID, First: 9, PrevEpoch: 7, PrevCRC: le.Uint32(fs[7].encode()[4:])}
	for _, tc := range []struct {
		name string
		mess func(t *testing.T, dir string)
	}{
		{"next file written", func(t *testing.T, dir string) {
			writeFile(t, dir, "telemetry.wal.next", next.encode())
		}},
		{"sealed name linked", func(t *testing.T, dir string) {
			writeFile(t, dir, "telemetry.wal.next", next.encode())
			if err := os.Link(filepath.Join(dir, walrepl.WALFile), filepath.Join(dir, docSealedName(5))); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := chainDir(t, segs, 8)
			clean := snapshot(t, dir)
			tc.mess(t, dir)
			rep, err := walrepl.Verify(dir, true, 0)
			if err != nil || rep.LastSeq != 8 || len(rep.Repairs) == 0 {
				t.Fatalf("Verify: %+v, %v", rep, err)
			}
			o, _ := testOptions(dir)
			o.Initialized = true
			w, _ := openOK(t, o)
			checkFrames(t, w, fs)
			w.Close()
			if !sameSnapshot(clean, snapshot(t, dir)) {
				t.Fatalf("after the start the directory is %v, want the chain before the roll", keys(snapshot(t, dir)))
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// telemetry.base after a trim: the log begins at a segment; segments below
// it are leftovers of a trim a crash interrupted, removed without reading.
func TestWAL_Segments_base(t *testing.T) {
	fs := smallFrames(12)
	segs := buildChain(fs, 4, 4, 4)
	dir := chainDir(t, segs, 12)
	writeFile(t, dir, "telemetry.base", []byte(`{"base":5,"prev_epoch":7}`+"\n"))
	writeFile(t, dir, segs[0].name, []byte("whatever is below the base is not read"))
	rep, err := walrepl.Verify(dir, true, 0)
	if err != nil || rep.Base != 5 || rep.FirstSeq != 5 || rep.Frames != 8 || len(rep.Repairs) != 1 {
		t.Fatalf("Verify: %+v, %v", rep, err)
	}
	o, _ := testOptions(dir)
	o.Initialized = true
	w, _ := openOK(t, o)
	got, err := w.ReadFrames(5, 12, 100, 1<<20)
	if err != nil || len(got) != 8 || got[0].Seq != 5 {
		t.Fatalf("ReadFrames: %d, %v", len(got), err)
	}
	w.Close()
	if fileExists(t, filepath.Join(dir, segs[0].name)) {
		t.Fatal("the segment below the base survived the start")
	}
	// A base whose prev_epoch disagrees with the segment that begins there.
	writeFile(t, dir, "telemetry.base", []byte(`{"base":5,"prev_epoch":2}`+"\n"))
	expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSegmentChain,
		msg: "telemetry/wal: SEGMENT_CHAIN — segment telemetry-00000000000000000005.seg says frame Seq=4 had epoch 7, telemetry.base says 2"})
}

// The runbook's Path 2, step by step, on a multi-segment WAL.
func TestWAL_Segments_runbookPath2(t *testing.T) {
	segs := buildChain(smallFrames(12), 4, 4, 4)
	root := t.TempDir()
	dir := filepath.Join(root, "telemetry")
	os.MkdirAll(dir, 0o700)
	writeFile(t, dir, walrepl.SafeSeqFile, []byte("12\n"))
	writeChain(t, dir, segs)
	// 2. cp -r telemetry telemetry.corrupt-YYYYMMDD (the backup is the test's
	// business); 3. rm telemetry.wal; rm telemetry.safe_seq.
	for _, name := range []string{walrepl.WALFile, walrepl.SafeSeqFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	expectRefused(t, dir, true, nil, want{cause: walrepl.CauseWALMissing, prefix: true,
		msg: "telemetry/wal: WAL missing in steady-state at "})
	// 4. AUTONOMYOPS_WAL_OPERATOR_RESET=1
	o, hook := testOptions(dir)
	o.Initialized, o.OperatorReset = true, true
	w, rep := openOK(t, o)
	checkEmptyAfterReset(t, dir, w, rep, testWALID, "env")
	e := logEntry(hook, "WAL_RESET_BY_OPERATOR")
	if e == nil || e.Level != logrus.WarnLevel {
		t.Fatalf("no WAL_RESET_BY_OPERATOR: %v", hook.AllEntries())
	}
	moved, _ := e.Data["segments_moved_to"].(string)
	if !strings.HasPrefix(moved, dir+".corrupt-") {
		t.Fatalf("segments_moved_to = %q", moved)
	}
	for _, s := range segs[:2] {
		if fileExists(t, filepath.Join(dir, s.name)) || !fileExists(t, filepath.Join(moved, s.name)) {
			t.Fatalf("%s was not moved aside to %s", s.name, moved)
		}
	}
	appendOne(t, w, 2, `{"after":"reset"}`)
	w.Close()
	// The next start is normal, the variable still set is ignored.
	o2, _ := testOptions(dir)
	o2.Initialized, o2.OperatorReset = true, true
	w2, rep2 := openOK(t, o2)
	if rep2.Reset || !rep2.ResetVarIgnore || rep2.LastSeq != 1 {
		t.Fatalf("second start %+v", rep2)
	}
	w2.Close()
}

// The runbook's Path 1 on a multi-segment WAL: telemetry.wal without
// telemetry.safe_seq.
func TestWAL_Segments_runbookPath1(t *testing.T) {
	fs := smallFrames(12)
	segs := buildChain(fs, 4, 4, 4)
	dir := setupDir(t, nil, nil)
	writeChain(t, dir, segs)
	expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSafeSeqMissing, msg: safeSeqMissingMsg(dir)})
	o, _ := testOptions(dir)
	o.Initialized, o.LegacyUpgrade = true, true
	w, rep := openOK(t, o)
	if !rep.LegacyUpgraded || rep.SafeSeq != 12 || w.SafeSeq() != 12 {
		t.Fatalf("report %+v", rep)
	}
	checkFrames(t, w, fs)
}

// Any single-byte change in the committed region of a two-segment WAL (both
// headers and every frame) is refused, by Verify and Open alike.
func TestWAL_Segments_singleByteChangeInCommittedRegion(t *testing.T) {
	segs := buildChain(smallFrames(4), 2, 2)
	dir := chainDir(t, segs, 4)
	o, _ := testOptions(dir)
	o.Initialized = true
	checked := 0
	for _, s := range segs {
		for off := range s.wal.img {
			img := append([]byte(nil), s.wal.img...)
			img[off] ^= 0x01
			writeFile(t, dir, s.name, img)
			_, verr := walrepl.Verify(dir, true, 0)
			if verr == nil {
				t.Fatalf("%s offset %d: Verify accepted it", s.name, off)
			}
			w, _, oerr := walrepl.Open(o)
			if oerr == nil {
				w.Close()
				t.Fatalf("%s offset %d: Open accepted it", s.name, off)
			}
			if oerr.Error() != verr.Error() {
				t.Fatalf("%s offset %d: Open says %q, Verify %q", s.name, off, oerr, verr)
			}
			checked++
		}
		writeFile(t, dir, s.name, s.wal.img)
	}
	t.Logf("%d single-bit changes, all refused", checked)
}

// The segment header example of docs/wal-format.md, byte for byte.
func TestWALFormat_docSegmentHeaderExample(t *testing.T) {
	const ex = "414f54454c57414c 02000000 6e73513a a07e1e000102030405060708090a0b0c 0100000000000000 0000000000000000 00000000 01000000 0000000000000000"
	got := fmt.Sprintf("%x", firstSeg().encode())
	if want := strings.ReplaceAll(ex, " ", ""); got != want {
		t.Fatalf("hand encoder %s\npage         %s", got, want)
	}
	if docSealedName(4097) != "telemetry-00000000000000004097.seg" || walrepl.SealedName(4097) != docSealedName(4097) {
		t.Fatalf("sealed name %s / %s", docSealedName(4097), walrepl.SealedName(4097))
	}
}

// FuzzRecoverSegments changes one byte of a three-segment WAL: Verify
// predicts Open exactly; a refused WAL is left as it was; any change to a
// sealed segment, or to the committed part of telemetry.wal, is refused.
func FuzzRecoverSegments(f *testing.F) {
	f.Add(uint8(2), uint16(40), byte(0x00), uint8(0))
	f.Add(uint8(9), uint16(70), byte(0x01), uint8(1))
	f.Add(uint8(5), uint16(33), byte(0xFF), uint8(2))
	f.Add(uint8(0), uint16(200), byte('x'), uint8(2))
	f.Fuzz(func(t *testing.T, safe uint8, off uint16, val byte, file uint8) {
		fs := smallFrames(9)
		segs := buildChain(fs, 3, 3, 3)
		s := uint64(safe) % 10
		k := int(file) % len(segs)
		img := append([]byte(nil), segs[k].wal.img...)
		pos := int(off) % len(img)
		changed := img[pos] != val
		img[pos] = val
		dir := chainDir(t, segs, s)
		writeFile(t, dir, segs[k].name, img)
		before := snapshot(t, dir)

		_, verr := walrepl.Verify(dir, true, 0)
		if !sameSnapshot(before, snapshot(t, dir)) {
			t.Fatal("Verify changed the directory")
		}
		o, _ := testOptions(dir)
		o.Initialized = true
		w, _, oerr := walrepl.Open(o)
		if oerr == nil {
			defer w.Close()
		}
		if (verr == nil) != (oerr == nil) || (verr != nil && verr.Error() != oerr.Error()) {
			t.Fatalf("Verify %v, Open %v", verr, oerr)
		}
		if oerr != nil {
			if !sameSnapshot(before, snapshot(t, dir)) {
				t.Fatal("Open changed the directory while refusing it")
			}
			return
		}
		active := k == len(segs)-1
		committedEnd := int64(docFileHeaderSize)
		if active {
			for i, fr := range segs[k].wal.frames {
				if fr.Seq <= s {
					committedEnd = segs[k].wal.offs[i+1]
				}
			}
		}
		if changed && (!active || int64(pos) < committedEnd) {
			t.Fatalf("byte %d of %s changed and the WAL was accepted", pos, segs[k].name)
		}
		got, err := w.ReadFrames(1, s, 100, 1<<20)
		if err != nil || len(got) != int(s) {
			t.Fatalf("committed frames: %d, %v", len(got), err)
		}
	})
}
