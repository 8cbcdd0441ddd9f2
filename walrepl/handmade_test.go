package walrepl_test

// The WALs in this file are written by hand from docs/wal-format.md, not with
// the package's encoder: the encoder below (hFrame.encode, hHeader, docCRC)
// follows the page field by field, so a test failing here means the code and
// the published format disagree. Every recovery case runs through both
// walrepl.Verify (read-only, must not change a byte) and walrepl.Open.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/autonomyops/orchestrator/walrepl"
)

// ---------------------------------------------------------------------------
// The format, as docs/wal-format.md states it.

const (
	docFileHeaderSize  = 64       // "Segment header (offset 0, 64 bytes)"
	docV1HeaderSize    = 32       // "Format version 1: a 32-byte file header"
	docFrameHeaderSize = 36       // "Frame (36-byte header + payload)"
	docMaxPayload      = 16 << 20 // "1 ≤ N ≤ 16 MiB"
	docMagic           = "AOTELWAL"
	docVersion         = 2
	docV1Version       = 1
	docFlagBase        = 1 // "bit 0, BASE"
	docTypeEvent       = 1
	docTypeEpochStart  = 2
)

var le = binary.LittleEndian // "All integers are little-endian."

// docCRC is CRC-32C computed bit by bit from the parameters the page gives:
// polynomial 0x1EDC6F41 (0x82F63B78 reflected), reflected, initial value
// 0xFFFFFFFF, final XOR 0xFFFFFFFF, over the concatenation of parts.
func docCRC(parts ...[]byte) uint32 {
	const reflectedPoly = 0x82F63B78
	crc := uint32(0xFFFFFFFF)
	for _, p := range parts {
		for _, c := range p {
			crc ^= uint32(c)
			for k := 0; k < 8; k++ {
				if crc&1 != 0 {
					crc = crc>>1 ^ reflectedPoly
				} else {
					crc >>= 1
				}
			}
		}
	}
	return crc ^ 0xFFFFFFFF
}

// hFrame is one frame as the page's table lays it out.
type hFrame struct {
	Seq, Epoch  uint64
	Time        int64
	Type, Flags uint16
	Payload     []byte
}

// encode lays the frame out per the page: N, CRC, Seq, Epoch, timestamp,
// type, flags, payload; the CRC covers [0,4) followed by [8,36+N).
func (f hFrame) encode() []byte {
	n := len(f.Payload)
	b := make([]byte, docFrameHeaderSize+n)
	le.PutUint32(b[0:], uint32(n))
	le.PutUint64(b[8:], f.Seq)
	le.PutUint64(b[16:], f.Epoch)
	le.PutUint64(b[24:], uint64(f.Time))
	le.PutUint16(b[32:], f.Type)
	le.PutUint16(b[34:], f.Flags)
	copy(b[36:], f.Payload)
	le.PutUint32(b[4:], docCRC(b[0:4], b[8:]))
	return b
}

// hHeaderV1 lays out the 32-byte file header of format version 1; the CRC
// covers [0,12) followed by [16,32).
func hHeaderV1(magic string, version uint32, id [16]byte) []byte {
	b := make([]byte, docV1HeaderSize)
	copy(b[0:8], magic)
	le.PutUint32(b[8:], version)
	copy(b[16:], id[:])
	le.PutUint32(b[12:], docCRC(b[0:12], b[16:32]))
	return b
}

// hSeg is a segment header as the page's table lays it out.
type hSeg struct {
	Magic     string
	Version   uint32
	ID        [16]byte
	First     uint64
	PrevEpoch uint64
	PrevCRC   uint32
	Flags     uint32
	Reserved  uint64
}

// encode: magic, version, CRC over [0,12) followed by [16,64), id, first
// Seq, prev epoch, prev CRC, flags, reserved.
func (h hSeg) encode() []byte {
	b := make([]byte, docFileHeaderSize)
	copy(b[0:8], h.Magic)
	le.PutUint32(b[8:], h.Version)
	copy(b[16:32], h.ID[:])
	le.PutUint64(b[32:], h.First)
	le.PutUint64(b[40:], h.PrevEpoch)
	le.PutUint32(b[48:], h.PrevCRC)
	le.PutUint32(b[52:], h.Flags)
	le.PutUint64(b[56:], h.Reserved)
	le.PutUint32(b[12:], docCRC(b[0:12], b[16:64]))
	return b
}

// firstSeg is the header of a new WAL's telemetry.wal: it begins the log at
// Seq=1.
func firstSeg() hSeg {
	return hSeg{Magic: docMagic, Version: docVersion, ID: testWALID, First: 1, Flags: docFlagBase}
}

// hHeader is a new WAL's segment header with another magic or version.
func hHeader(magic string, version uint32, id [16]byte) []byte {
	h := firstSeg()
	h.Magic, h.Version, h.ID = magic, version, id
	return h.encode()
}

var testWALID = [16]byte{0xa0, 0x7e, 0x1e, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

// hWAL is a hand-made telemetry.wal image. offs[i] is the offset of
// frames[i]; offs[len(frames)] is where the last frame ends.
type hWAL struct {
	img    []byte
	frames []hFrame
	offs   []int64
}

func buildWAL(frames ...hFrame) *hWAL { return buildSeg(firstSeg(), frames...) }

// buildSeg is a segment image with header h.
func buildSeg(h hSeg, frames ...hFrame) *hWAL {
	w := &hWAL{img: h.encode(), frames: frames}
	for _, f := range frames {
		w.offs = append(w.offs, int64(len(w.img)))
		w.img = append(w.img, f.encode()...)
	}
	w.offs = append(w.offs, int64(len(w.img)))
	return w
}

// withTail returns a copy of the image with extra bytes appended.
func (w *hWAL) withTail(tail []byte) []byte {
	return append(append([]byte(nil), w.img...), tail...)
}

// padJSON returns a JSON object of exactly size bytes (size ≥ 20).
func padJSON(seq uint64, size int) []byte {
	head := fmt.Sprintf(`{"seq":%d,"pad":"`, seq)
	pad := size - len(head) - 2
	if pad < 0 {
		panic("padJSON: size too small")
	}
	return []byte(head + strings.Repeat("x", pad) + `"}`)
}

const testTime0 = int64(1_700_000_000_000_000_000)

func ev(seq uint64, size int) hFrame {
	return hFrame{Seq: seq, Epoch: 1, Time: testTime0 + int64(seq), Type: docTypeEvent, Payload: padJSON(seq, size)}
}

func evP(seq uint64, payload string) hFrame {
	return hFrame{Seq: seq, Epoch: 1, Time: testTime0 + int64(seq), Type: docTypeEvent, Payload: []byte(payload)}
}

// stdFrames are n event frames of about 260 bytes each, the first three of
// 250+249+249 bytes, so that the frame at Seq=4 starts at offset 64+748 =
// 812: DESIGN §4's example.
func stdFrames(n int) []hFrame {
	fs := make([]hFrame, n)
	for i := range fs {
		size := 224
		switch i {
		case 0:
			size = 214
		case 1, 2:
			size = 213
		}
		fs[i] = ev(uint64(i+1), size)
	}
	return fs
}

// smallFrames are n frames of varied sizes across two epochs, the second
// starting with an epoch-start frame.
func smallFrames(n int) []hFrame {
	fs := make([]hFrame, n)
	for i := range fs {
		seq := uint64(i + 1)
		fs[i] = ev(seq, 20+int(seq)*3)
		if seq >= 3 {
			fs[i].Epoch = 7
		}
		if seq == 3 {
			fs[i].Type = docTypeEpochStart
			fs[i].Payload = []byte(`{"leader":"n2","epoch":7}`)
		}
	}
	return fs
}

// ---------------------------------------------------------------------------
// Directory helpers.

func writeFile(t testing.TB, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fileExists(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err == nil {
		return true
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return false
}

// setupDir writes telemetry.wal (unless img is nil) and telemetry.safe_seq
// (unless safe is nil) into a fresh directory.
func setupDir(t testing.TB, img []byte, safe *string) string {
	t.Helper()
	dir := t.TempDir()
	if img != nil {
		writeFile(t, dir, walrepl.WALFile, img)
	}
	if safe != nil {
		writeFile(t, dir, walrepl.SafeSeqFile, []byte(*safe))
	}
	return dir
}

func safeSeq(n uint64) *string { s := fmt.Sprintf("%d\n", n); return &s }
func rawSafe(s string) *string { return &s }

// snapshot is the content of every file in dir.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		if e.IsDir() {
			m[e.Name()+"/"] = ""
			continue
		}
		m[e.Name()] = string(readFile(t, dir, e.Name()))
	}
	return m
}

func sameSnapshot(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testOptions(dir string) (walrepl.Options, *logtest.Hook) {
	o := walrepl.DefaultOptions(dir)
	l, hook := logtest.NewNullLogger()
	o.Logger = l
	return o, hook
}

// logEntry returns the first entry with msg, or nil.
func logEntry(hook *logtest.Hook, msg string) *logrus.Entry {
	for _, e := range hook.AllEntries() {
		if e.Message == msg {
			return e
		}
	}
	return nil
}

// want describes a refusal. msg is the exact message; when prefix is set
// the message must start with msg instead.
type want struct {
	cause  walrepl.Cause
	msg    string
	prefix bool
	seq    uint64
	off    int64
	hasPos bool // check seq and off
}

func checkRecoveryErr(t *testing.T, who string, err error, w want) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted the WAL, want %s", who, w.cause)
	}
	var re *walrepl.RecoveryError
	if !errors.As(err, &re) {
		t.Fatalf("%s: error %v (%T) is not a *RecoveryError", who, err, err)
	}
	if !errors.Is(err, walrepl.ErrRecovery) {
		t.Errorf("%s: errors.Is(err, ErrRecovery) is false", who)
	}
	if re.Cause != w.cause {
		t.Errorf("%s: Cause = %s, want %s (%v)", who, re.Cause, w.cause, err)
	}
	got := err.Error()
	if w.prefix {
		if !strings.HasPrefix(got, w.msg) {
			t.Errorf("%s: message\n%q\ndoes not start with\n%q", who, got, w.msg)
		}
	} else if got != w.msg {
		t.Errorf("%s: message\n%q\nwant\n%q", who, got, w.msg)
	}
	if w.hasPos && (re.Seq != w.seq || re.Offset != w.off) {
		t.Errorf("%s: Seq=%d Offset=%d, want Seq=%d Offset=%d", who, re.Seq, re.Offset, w.seq, w.off)
	}
}

// expectRefused runs Verify and Open on dir and checks that both refuse it
// with w and that neither changes a file.
func expectRefused(t *testing.T, dir string, initialized bool, adjust func(*walrepl.Options), w want) {
	t.Helper()
	before := snapshot(t, dir)
	rep, err := walrepl.Verify(dir, initialized, 0)
	if err == nil {
		t.Fatalf("Verify accepted the WAL (report %+v), want %s", rep, w.cause)
	}
	checkRecoveryErr(t, "Verify", err, w)
	if !sameSnapshot(before, snapshot(t, dir)) {
		t.Fatal("Verify changed the directory")
	}
	o, _ := testOptions(dir)
	o.Initialized = initialized
	if adjust != nil {
		adjust(&o)
	}
	wal, _, err := walrepl.Open(o)
	if err == nil {
		wal.Close()
		t.Fatalf("Open accepted the WAL, want %s", w.cause)
	}
	checkRecoveryErr(t, "Open", err, w)
	if !sameSnapshot(before, snapshot(t, dir)) {
		t.Fatal("Open changed the directory while refusing it")
	}
}

// openOK opens dir and fails the test on any error.
func openOK(t *testing.T, o walrepl.Options) (*walrepl.WAL, *walrepl.Report) {
	t.Helper()
	w, rep, err := walrepl.Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w, rep
}

// checkFrames reads frames [1, len(want)] back from an open WAL and compares
// them field by field with the hand-made ones.
func checkFrames(t *testing.T, w *walrepl.WAL, want []hFrame) {
	t.Helper()
	if len(want) == 0 {
		return
	}
	got, err := w.ReadFrames(1, uint64(len(want)), len(want)+1, 1<<20)
	if err != nil {
		t.Fatalf("ReadFrames: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ReadFrames returned %d frames, want %d", len(got), len(want))
	}
	for i, f := range got {
		h := want[i]
		if f.Seq != h.Seq || f.Epoch != h.Epoch || f.Time != h.Time || uint16(f.Type) != h.Type || !bytes.Equal(f.Payload, h.Payload) {
			t.Fatalf("frame %d reads back as %+v, want %+v", i, f, h)
		}
	}
}

// appendOne appends an event, waits until it is durable and returns its Seq.
func appendOne(t *testing.T, w *walrepl.WAL, epoch uint64, payload string) uint64 {
	t.Helper()
	_, last, err := w.Append(epoch, walrepl.FrameEvent, testTime0, [][]byte{[]byte(payload)})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := w.WaitDurable(context.Background(), last); err != nil {
		t.Fatalf("WaitDurable: %v", err)
	}
	return last
}

// ---------------------------------------------------------------------------
// The format page itself.

func TestWALFormat_docCRCParameters(t *testing.T) {
	// The standard check value of CRC-32C ("123456789" → 0xE3069283).
	if got := docCRC([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("CRC-32C check value = %#08x, want 0xe3069283", got)
	}
	if got := docCRC([]byte("1234"), []byte("56789")); got != 0xE3069283 {
		t.Fatalf("CRC over a concatenation = %#08x", got)
	}
}

func TestWALFormat_docExample(t *testing.T) {
	// The example of docs/wal-format.md with CCCCCCCC left to fill in.
	const ex = "07000000 CCCCCCCC 0100000000000000 0300000000000000 0000000000000000 0100 0000 7b2261223a317d"
	raw, err := hex.DecodeString(strings.ReplaceAll(strings.ReplaceAll(ex, " ", ""), "CCCCCCCC", "00000000"))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 43 {
		t.Fatalf("example is %d bytes, the page says 43", len(raw))
	}
	le.PutUint32(raw[4:], docCRC(raw[0:4], raw[8:]))
	mine := hFrame{Seq: 1, Epoch: 3, Time: 0, Type: docTypeEvent, Payload: []byte(`{"a":1}`)}.encode()
	if !bytes.Equal(raw, mine) {
		t.Fatalf("hand encoder % x\nexample      % x", mine, raw)
	}
	// The page leaves the CRC as CCCCCCCC; it is 0xC174CFE4, e4cf74c1 on disk.
	if got := hex.EncodeToString(raw[4:8]); got != "e4cf74c1" {
		t.Fatalf("example CRC bytes %s, want e4cf74c1", got)
	}
	f, n, err := walrepl.DecodeFrame(raw, walrepl.DefaultMaxPayload)
	if err != nil || n != 43 || f.Seq != 1 || f.Epoch != 3 || f.Time != 0 || f.Type != walrepl.FrameEvent || string(f.Payload) != `{"a":1}` {
		t.Fatalf("DecodeFrame(example) = %+v, %d, %v", f, n, err)
	}
	if enc := walrepl.AppendEncoded(nil, &f); !bytes.Equal(enc, raw) {
		t.Fatalf("AppendEncoded % x\nexample     % x", enc, raw)
	}
}

// A WAL written by the package decodes by hand per the page: header fields,
// frame offsets and CRCs.
func TestWALFormat_writtenWALMatchesDoc(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(dir)
	w, rep := openOK(t, o)
	if !rep.Created {
		t.Fatalf("first start: Created=false in %+v", rep)
	}
	payloads := []string{`{"kind":"boot"}`, `{"kind":"error","agent":"r2","n":[1,2,3]}`}
	for _, p := range payloads {
		appendOne(t, w, 4, p)
	}
	id := w.ID()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := readFile(t, dir, walrepl.WALFile)
	if string(b[0:8]) != docMagic || le.Uint32(b[8:]) != docVersion || !bytes.Equal(b[16:32], id[:]) ||
		le.Uint32(b[12:]) != docCRC(b[0:12], b[16:64]) || le.Uint64(b[32:]) != 1 || le.Uint64(b[40:]) != 0 ||
		le.Uint32(b[48:]) != 0 || le.Uint32(b[52:]) != docFlagBase || le.Uint64(b[56:]) != 0 {
		t.Fatalf("header % x does not follow the page", b[:32])
	}
	off := docFileHeaderSize
	for i, p := range payloads {
		n := int(le.Uint32(b[off:]))
		fr := b[off : off+docFrameHeaderSize+n]
		if n != len(p) || le.Uint32(fr[4:]) != docCRC(fr[0:4], fr[8:]) || le.Uint64(fr[8:]) != uint64(i+1) ||
			le.Uint64(fr[16:]) != 4 || int64(le.Uint64(fr[24:])) != testTime0 || le.Uint16(fr[32:]) != docTypeEvent ||
			le.Uint16(fr[34:]) != 0 || string(fr[36:]) != p {
			t.Fatalf("frame %d % x does not follow the page", i+1, fr)
		}
		off += len(fr)
	}
	if off != len(b) {
		t.Fatalf("%d bytes after the last frame", len(b)-off)
	}
}

// ---------------------------------------------------------------------------
// DESIGN §4's table, one test per row, each a table of WALs.

type refusalCase struct {
	name   string
	frames []hFrame
	tail   []byte
	safe   *string
	want   want
}

func runRefusals(t *testing.T, cases []refusalCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wal := buildWAL(tc.frames...)
			dir := setupDir(t, wal.withTail(tc.tail), tc.safe)
			for _, initialized := range []bool{true, false} {
				expectRefused(t, dir, initialized, nil, tc.want)
			}
		})
	}
}

func seqs(fs []hFrame, seq ...uint64) []hFrame {
	out := make([]hFrame, len(seq))
	for i, s := range seq {
		out[i] = fs[i]
		out[i].Seq = s
	}
	return out
}

func TestWAL_Recover_badFirstSeq(t *testing.T) {
	fs := stdFrames(5)
	runRefusals(t, []refusalCase{
		{"design example", seqs(fs, 5, 6, 7), nil, safeSeq(0), want{
			cause: walrepl.CauseBadFirstSeq, msg: "telemetry/wal: BAD_FIRST_SEQ — first frame Seq=5 (expected 1)",
			seq: 5, off: docFileHeaderSize, hasPos: true}},
		{"seq 0", seqs(fs, 0, 1), nil, safeSeq(0), want{
			cause: walrepl.CauseBadFirstSeq, msg: "telemetry/wal: BAD_FIRST_SEQ — first frame Seq=0 (expected 1)"}},
		{"seq 2 in the committed range", seqs(fs, 2, 3, 4), nil, safeSeq(2), want{
			cause: walrepl.CauseBadFirstSeq, msg: "telemetry/wal: BAD_FIRST_SEQ — first frame Seq=2 (expected 1)"}},
		{"single frame above safe_seq is not a torn tail", seqs(fs, 5), nil, safeSeq(0), want{
			cause: walrepl.CauseBadFirstSeq, msg: "telemetry/wal: BAD_FIRST_SEQ — first frame Seq=5 (expected 1)"}},
	})
}

func TestWAL_Recover_seqGap(t *testing.T) {
	fs := stdFrames(6)
	gap := buildWAL(seqs(fs, 1, 3)...)
	runRefusals(t, []refusalCase{
		{"design example", seqs(fs, 1, 3), nil, safeSeq(1), want{
			cause: walrepl.CauseSeqGap, msg: "telemetry/wal: SEQ_GAP — frame Seq=3 follows Seq=1 (expected 2)",
			seq: 3, off: gap.offs[1], hasPos: true}},
		{"inside the committed range", seqs(fs, 1, 2, 3, 5, 6), nil, safeSeq(5), want{
			cause: walrepl.CauseSeqGap, msg: "telemetry/wal: SEQ_GAP — frame Seq=5 follows Seq=3 (expected 4)"}},
		{"duplicate", seqs(fs, 1, 2, 2), nil, safeSeq(2), want{
			cause: walrepl.CauseSeqGap, msg: "telemetry/wal: SEQ_GAP — frame Seq=2 follows Seq=2 (expected 3)"}},
		{"backwards", seqs(fs, 1, 2, 3, 1), nil, safeSeq(3), want{
			cause: walrepl.CauseSeqGap, msg: "telemetry/wal: SEQ_GAP — frame Seq=1 follows Seq=3 (expected 4)"}},
		{"whole last frame above safe_seq is not a torn tail", seqs(fs, 1, 2, 4), nil, safeSeq(1), want{
			cause: walrepl.CauseSeqGap, msg: "telemetry/wal: SEQ_GAP — frame Seq=4 follows Seq=2 (expected 3)"}},
	})
}

func TestWAL_Recover_safeSeqGTMaxSeq(t *testing.T) {
	runRefusals(t, []refusalCase{
		{"design example", stdFrames(5), nil, safeSeq(7), want{
			cause: walrepl.CauseSafeSeqGTMaxSeq, msg: "telemetry/wal: SAFESEQ_GT_MAXSEQ — safe_seq=7 but maxSeq=5"}},
		{"one above", stdFrames(5), nil, safeSeq(6), want{
			cause: walrepl.CauseSafeSeqGTMaxSeq, msg: "telemetry/wal: SAFESEQ_GT_MAXSEQ — safe_seq=6 but maxSeq=5"}},
		{"empty WAL", nil, nil, safeSeq(1), want{
			cause: walrepl.CauseSafeSeqGTMaxSeq, msg: "telemetry/wal: SAFESEQ_GT_MAXSEQ — safe_seq=1 but maxSeq=0"}},
		{"huge", smallFrames(2), nil, rawSafe("18446744073709551615\n"), want{
			cause: walrepl.CauseSafeSeqGTMaxSeq, msg: "telemetry/wal: SAFESEQ_GT_MAXSEQ — safe_seq=18446744073709551615 but maxSeq=2"}},
	})
}

// damaged returns the image of frames with fn applied to the bytes of the
// frame at index i (fn may also shorten or lengthen it).
func damaged(frames []hFrame, i int, fn func([]byte) []byte) (*hWAL, []byte) {
	w := buildWAL(frames...)
	img := append([]byte(nil), w.img[:w.offs[i]]...)
	fr := append([]byte(nil), w.img[w.offs[i]:w.offs[i+1]]...)
	img = append(img, fn(fr)...)
	img = append(img, w.img[w.offs[i+1]:]...)
	return w, img
}

var damages = []struct {
	name string
	fn   func([]byte) []byte
}{
	{"payload byte flipped", func(b []byte) []byte { b[len(b)-3] ^= 0x01; return b }},
	{"CRC byte flipped", func(b []byte) []byte { b[5] ^= 0x80; return b }},
	{"Seq byte changed", func(b []byte) []byte { b[8]++; return b }},
	{"epoch byte changed", func(b []byte) []byte { b[16] ^= 0xFF; return b }},
	{"type changed", func(b []byte) []byte { b[32] ^= 0x03; return b }},
	{"flags set", func(b []byte) []byte { b[34] = 1; return b }},
	{"length zero", func(b []byte) []byte { le.PutUint32(b, 0); return b }},
	{"length above 16 MiB", func(b []byte) []byte { le.PutUint32(b, docMaxPayload+1); return b }},
	{"length one more", func(b []byte) []byte { le.PutUint32(b, le.Uint32(b)+1); return b }},
	{"length one less", func(b []byte) []byte { le.PutUint32(b, le.Uint32(b)-1); return b }},
	{"hole of 10 bytes", func(b []byte) []byte { return append(b[:40:40], b[50:]...) }},
	{"zeroed", func(b []byte) []byte { return make([]byte, len(b)) }},
}

func TestWAL_Recover_committedFrameCorrupt(t *testing.T) {
	fs := stdFrames(5)
	std := buildWAL(fs...)
	if std.offs[3] != 812 {
		t.Fatalf("the frame at Seq=4 starts at %d, not 812", std.offs[3])
	}
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 0xFF; return b }
	}
	var cases []refusalCase
	add := func(name string, i int, fn func([]byte) []byte, safe uint64) {
		w, img := damaged(fs, i, fn)
		seq := uint64(i + 1)
		cases = append(cases, refusalCase{name: name, frames: nil, safe: safeSeq(safe),
			tail: img[docFileHeaderSize:], want: want{
				cause: walrepl.CauseCommittedFrameCorrupt,
				msg:   fmt.Sprintf("telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=%d (offset %d) fails its checksum", seq, w.offs[i]),
				seq:   seq, off: w.offs[i], hasPos: true}})
	}
	add("design example: payload byte of Seq=4", 3, flip(200), 5)
	for _, d := range damages {
		add("Seq=2 "+d.name, 1, d.fn, 5)
		add("last committed frame "+d.name, 4, d.fn, 5)
		add("first frame "+d.name+", safe_seq=1", 0, d.fn, 1)
	}
	// The literal of DESIGN §4, byte for byte.
	if cases[0].want.msg != "telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=4 (offset 812) fails its checksum" {
		t.Fatalf("design example message: %q", cases[0].want.msg)
	}
	// Damage that makes the frame end past EOF (a longer length in the last
	// frame, a hole in it) reads as a frame the file ends inside of.
	for i := range cases {
		tc := &cases[i]
		img := append(hHeader(docMagic, docVersion, testWALID), tc.tail...)
		off := tc.want.off
		if n := le.Uint32(img[off:]); n >= 1 && n <= docMaxPayload && off+int64(docFrameHeaderSize)+int64(n) > int64(len(img)) {
			tc.want.msg = fmt.Sprintf("telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=%d (offset %d) is torn: the file ends %d bytes into it",
				tc.want.seq, off, int64(len(img))-off)
		}
	}
	runRefusals(t, cases)
}

func TestWAL_Recover_invalidJSON(t *testing.T) {
	bad := func(n int, seq uint64, payload string) []hFrame {
		fs := stdFrames(n)
		fs[seq-1].Payload = []byte(payload)
		return fs
	}
	msg4 := "telemetry/wal: WAL_CORRUPT_INVALID_JSON — frame at Seq=4 contains invalid JSON"
	w := buildWAL(stdFrames(5)...)
	runRefusals(t, []refusalCase{
		{"design example", bad(5, 4, `{"a":`), nil, safeSeq(5), want{
			cause: walrepl.CauseInvalidJSON, msg: msg4, seq: 4, off: w.offs[3], hasPos: true}},
		{"above safe_seq", bad(5, 4, `not json`), nil, safeSeq(2), want{cause: walrepl.CauseInvalidJSON, msg: msg4}},
		{"last frame above safe_seq is not a torn tail", bad(4, 4, `{"a":1}}`), nil, safeSeq(0), want{cause: walrepl.CauseInvalidJSON, msg: msg4}},
		{"two values", bad(5, 4, `{"a":1}{"b":2}`), nil, safeSeq(5), want{cause: walrepl.CauseInvalidJSON, msg: msg4}},
		{"epoch-start frame", func() []hFrame {
			fs := bad(5, 4, `{"leader":`)
			fs[3].Type = docTypeEpochStart
			return fs
		}(), nil, safeSeq(5), want{cause: walrepl.CauseInvalidJSON, msg: msg4}},
	})
}

func TestWAL_Recover_epochRegression(t *testing.T) {
	fs := smallFrames(5) // epochs 1,1,7,7,7
	fs[3].Epoch = 6
	runRefusals(t, []refusalCase{
		{"epoch goes down", fs, nil, safeSeq(2), want{cause: walrepl.CauseEpochRegression,
			msg: "telemetry/wal: EPOCH_REGRESSION — frame at Seq=4 has epoch 6, below the previous frame's epoch 7"}},
	})
}

func TestWAL_Recover_badFrameType(t *testing.T) {
	for _, typ := range []uint16{0, 3, 0xFFFF} {
		fs := smallFrames(4)
		fs[1].Type = typ
		runRefusals(t, []refusalCase{
			{fmt.Sprintf("type %d", typ), fs, nil, safeSeq(4), want{cause: walrepl.CauseBadFrameType,
				msg: fmt.Sprintf("telemetry/wal: BAD_FRAME_TYPE — frame at Seq=2 has unknown type %d", typ)}},
		})
	}
}

// A whole, checksum-valid frame whose flags are not 0 is not a version-1
// frame: refused wherever it is, never dropped as a torn tail.
func TestWAL_Recover_unknownFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		at    int
		safe  uint64
		flags uint16
	}{
		{"committed", 1, 4, 1},
		{"above safe_seq", 2, 1, 0x8000},
		{"last frame above safe_seq", 3, 0, 2},
	} {
		fs := smallFrames(4)
		fs[tc.at].Flags = tc.flags
		runRefusals(t, []refusalCase{{tc.name, fs, nil, safeSeq(tc.safe), want{cause: walrepl.CauseBadFrameType,
			msg: fmt.Sprintf("telemetry/wal: BAD_FRAME_TYPE — frame at Seq=%d has flags %#04x (format version 1 writes 0)", tc.at+1, tc.flags),
			seq: uint64(tc.at + 1), off: buildWAL(fs...).offs[tc.at], hasPos: true}}})
	}
}

// ---------------------------------------------------------------------------
// Steady-state files: safe_seq and the WAL missing, safe_seq corrupt, header.

func safeSeqMissingMsg(dir string) string {
	// The runbook's text (seed section 3), with its example directory
	// replaced by dir; quoted with plain double quotes as in the runbook.
	return `telemetry/wal: safe_seq missing in steady-state at "` + dir + `/telemetry.safe_seq";` + "\n" +
		`to upgrade from a pre-Phase-1 WAL set AUTONOMYOPS_WAL_LEGACY_UPGRADE=1;` + "\n" +
		`to accept telemetry loss after deleting telemetry.wal set AUTONOMYOPS_WAL_OPERATOR_RESET=1`
}

func TestWAL_Recover_safeSeqMissing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		img    []byte
		adjust func(*walrepl.Options)
	}{
		{"frames", buildWAL(stdFrames(3)...).img, nil},
		{"header only", buildWAL().img, nil},
		{"torn tail", buildWAL(stdFrames(3)...).withTail([]byte{1, 2, 3}), nil},
		{"reset variable does not help while the WAL is present", buildWAL(stdFrames(3)...).img,
			func(o *walrepl.Options) { o.OperatorReset = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setupDir(t, tc.img, nil)
			msg := safeSeqMissingMsg(dir)
			if strings.Count(msg, "\n") != 2 {
				t.Fatal("the message has three lines")
			}
			for _, initialized := range []bool{true, false} {
				expectRefused(t, dir, initialized, tc.adjust, want{cause: walrepl.CauseSafeSeqMissing, msg: msg})
			}
			// The runbook's example directory renders identically.
			if got := safeSeqMissingMsg("/var/lib/autonomy/telemetry"); got != ""+
				"telemetry/wal: safe_seq missing in steady-state at \"/var/lib/autonomy/telemetry/telemetry.safe_seq\";\n"+
				"to upgrade from a pre-Phase-1 WAL set AUTONOMYOPS_WAL_LEGACY_UPGRADE=1;\n"+
				"to accept telemetry loss after deleting telemetry.wal set AUTONOMYOPS_WAL_OPERATOR_RESET=1" {
				t.Fatalf("runbook text: %q", got)
			}
		})
	}
}

func TestWAL_Recover_walMissing(t *testing.T) {
	walMissingMsg := func(dir string) string {
		return `telemetry/wal: WAL missing in steady-state at "` + dir + `/telemetry.wal" ` +
			"(node.json or telemetry.safe_seq shows the node was initialised);\n" +
			"restore it from backup, or to accept telemetry loss set AUTONOMYOPS_WAL_OPERATOR_RESET=1 " +
			"(in a cluster the node then re-replicates the committed history from the leader)"
	}
	for _, tc := range []struct {
		name        string
		initialized bool
		safe        *string
		adjust      func(*walrepl.Options)
	}{
		{"initialised", true, nil, nil},
		{"safe_seq present", false, safeSeq(5), nil},
		{"both", true, safeSeq(0), nil},
		{"legacy upgrade does not help", true, nil, func(o *walrepl.Options) { o.LegacyUpgrade = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setupDir(t, nil, tc.safe)
			w := want{cause: walrepl.CauseWALMissing, msg: walMissingMsg(dir)}
			expectRefused(t, dir, tc.initialized, tc.adjust, w)
			if !strings.Contains(w.msg, "AUTONOMYOPS_WAL_OPERATOR_RESET=1") {
				t.Fatal("the message must name the reset variable")
			}
			if fileExists(t, filepath.Join(dir, walrepl.WALFile)) {
				t.Fatal("a refused start created telemetry.wal")
			}
		})
	}
}

func TestWAL_Recover_firstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "telemetry") // not there yet
	rep, err := walrepl.Verify(dir, false, 0)
	if err != nil || rep.LastSeq != 0 || rep.TornTail {
		t.Fatalf("Verify of a first start: %+v, %v", rep, err)
	}
	if fileExists(t, dir) {
		t.Fatal("Verify created the directory")
	}
	o, hook := testOptions(dir)
	w, rep := openOK(t, o)
	if !rep.Created || rep.Reset || rep.LastSeq != 0 || rep.SafeSeq != 0 || rep.Frames != 0 {
		t.Fatalf("first start report: %+v", rep)
	}
	if e := logEntry(hook, "WAL_RESET_BY_OPERATOR"); e != nil {
		t.Fatal("a first start is not a reset")
	}
	b := readFile(t, dir, walrepl.WALFile)
	if len(b) != docFileHeaderSize || string(b[:8]) != docMagic || le.Uint32(b[8:]) != docVersion ||
		le.Uint32(b[12:]) != docCRC(b[0:12], b[16:64]) || le.Uint64(b[32:]) != 1 || le.Uint32(b[52:]) != docFlagBase {
		t.Fatalf("new WAL % x is not a bare header per the page", b)
	}
	if id := w.ID(); !bytes.Equal(b[16:32], id[:]) || id == [16]byte{} {
		t.Fatalf("WAL id % x, header % x", id, b[16:32])
	}
	if s := string(readFile(t, dir, walrepl.SafeSeqFile)); s != "0\n" {
		t.Fatalf("safe_seq %q, want \"0\\n\"", s)
	}
	appendOne(t, w, 1, `{"k":1}`)
	w.Close()
	// The second start is a normal one, as an initialised node.
	o.Initialized = true
	w2, rep2 := openOK(t, o)
	if rep2.Created || rep2.LastSeq != 1 || rep2.SafeSeq != 0 {
		t.Fatalf("second start: %+v", rep2)
	}
	w2.Close()
}

func TestWAL_Recover_safeSeqCorrupt(t *testing.T) {
	for _, s := range []string{"abc\n", "", "\n", "-1\n", "5x\n", "0x5\n", "+5\n", "5 6\n", "1e3\n",
		"99999999999999999999999\n", "3" + strings.Repeat("\n", 24)} {
		t.Run(fmt.Sprintf("%q", s), func(t *testing.T) {
			dir := setupDir(t, buildWAL(stdFrames(3)...).img, rawSafe(s))
			expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSafeSeqCorrupt, prefix: true,
				msg: fmt.Sprintf("telemetry/wal: SAFESEQ_CORRUPT — %q holds ", filepath.Join(dir, walrepl.SafeSeqFile))})
		})
	}
}

func TestWAL_Recover_badHeader(t *testing.T) {
	good := buildWAL(stdFrames(2)...).img
	withHeader := func(h []byte) []byte { return append(append([]byte(nil), h...), good[docFileHeaderSize:]...) }
	for _, tc := range []struct {
		name string
		img  []byte
	}{
		{"empty file", []byte{}},
		{"short", good[:63]},
		{"v1 short", good[:31]},
		{"other magic", withHeader(hHeader("AOTELWAM", docVersion, testWALID))},
		{"other version", withHeader(hHeader(docMagic, 3, testWALID))},
		{"version 0", withHeader(hHeader(docMagic, 0, testWALID))},
		{"bad CRC", func() []byte { b := withHeader(good[:64]); b[13] ^= 1; return b }()},
		{"id byte flipped", func() []byte { b := withHeader(good[:64]); b[20] ^= 1; return b }()},
		{"first Seq flipped", func() []byte { b := withHeader(good[:64]); b[33] ^= 1; return b }()},
		{"version flipped without CRC", func() []byte { b := withHeader(good[:64]); b[8] = 3; return b }()},
		{"unknown flag", func() []byte { h := firstSeg(); h.Flags |= 2; return withHeader(h.encode()) }()},
		{"reserved set", func() []byte { h := firstSeg(); h.Reserved = 1; return withHeader(h.encode()) }()},
		{"first Seq 0", func() []byte { h := firstSeg(); h.First = 0; return withHeader(h.encode()) }()},
		{"v1 header with a bad CRC", func() []byte { b := hHeaderV1(docMagic, docV1Version, testWALID); b[20] ^= 1; return b }()},
		{"frames only", good[docFileHeaderSize:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setupDir(t, tc.img, safeSeq(0))
			expectRefused(t, dir, true, nil, want{cause: walrepl.CauseBadHeader, prefix: true,
				msg: "telemetry/wal: BAD_HEADER — telemetry.wal header is damaged: "})
		})
	}
}

// ---------------------------------------------------------------------------
// Torn tails: above safe_seq repaired, at or below it refused, damage with a
// whole frame after it refused.

type tornCase struct {
	name string
	tail func(next []byte) []byte // the bytes after the last whole frame, from the next frame's encoding
	crc  bool                     // the tail is a whole frame that fails its checksum
}

var tornCases = []tornCase{
	{"1 byte into the header", func(b []byte) []byte { return b[:1] }, false},
	{"4 bytes: length only", func(b []byte) []byte { return b[:4] }, false},
	{"mid-header", func(b []byte) []byte { return b[:18] }, false},
	{"header without payload", func(b []byte) []byte { return b[:docFrameHeaderSize] }, false},
	{"mid-payload", func(b []byte) []byte { return b[:docFrameHeaderSize+(len(b)-docFrameHeaderSize)/2] }, false},
	{"one byte short", func(b []byte) []byte { return b[:len(b)-1] }, false},
	{"CRC-failing last frame", func(b []byte) []byte { b = append([]byte(nil), b...); b[len(b)-2] ^= 0x20; return b }, true},
	{"CRC field zeroed", func(b []byte) []byte { b = append([]byte(nil), b...); copy(b[4:8], []byte{0, 0, 0, 0}); return b }, true},
	{"zero-filled block", func(b []byte) []byte { return make([]byte, 4096) }, true},
	{"partial frame then zeros", func(b []byte) []byte { return append(append([]byte(nil), b[:20]...), make([]byte, 600)...) }, true},
}

func TestWAL_Recover_tornTail(t *testing.T) {
	for _, whole := range []int{0, 3, 5} {
		for _, safe := range []uint64{0, 2, 5} {
			if safe > uint64(whole) {
				continue
			}
			for _, tc := range tornCases {
				t.Run(fmt.Sprintf("%d whole frames, safe_seq=%d, %s", whole, safe, tc.name), func(t *testing.T) {
					testTornTail(t, whole, safe, tc)
				})
			}
		}
	}
}

func testTornTail(t *testing.T, whole int, safe uint64, tc tornCase) {
	fs := smallFrames(whole + 1)
	full := buildWAL(fs...)
	wal := buildWAL(fs[:whole]...)
	tail := tc.tail(full.img[full.offs[whole]:])
	img := wal.withTail(tail)
	dir := setupDir(t, img, safeSeq(safe))
	end := wal.offs[whole]

	rep, err := walrepl.Verify(dir, true, 0)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.TornTail || rep.TornOffset != end || rep.TornBytes != int64(len(tail)) || rep.EndOffset != end ||
		rep.LastSeq != uint64(whole) || rep.SafeSeq != safe || rep.FileSize != int64(len(img)) {
		t.Fatalf("Verify report %+v; want torn tail of %d bytes at %d", rep, len(tail), end)
	}
	if got := readFile(t, dir, walrepl.WALFile); !bytes.Equal(got, img) {
		t.Fatal("Verify changed telemetry.wal")
	}

	o, hook := testOptions(dir)
	o.Initialized = true
	w, orep := openOK(t, o)
	if !orep.TornTail || orep.TornOffset != end || orep.TornBytes != int64(len(tail)) || orep.LastSeq != uint64(whole) {
		t.Fatalf("Open report %+v", orep)
	}
	if got := readFile(t, dir, walrepl.WALFile); !bytes.Equal(got, wal.img) {
		t.Fatalf("after Open the file is %d bytes, want the %d bytes up to the last whole frame", len(got), end)
	}
	e := logEntry(hook, "WAL_TORN_TAIL_TRUNCATED")
	if e == nil || e.Level != logrus.WarnLevel {
		t.Fatalf("no WARN WAL_TORN_TAIL_TRUNCATED in %v", hook.AllEntries())
	}
	if e.Data["bytes_dropped"] != int64(len(tail)) || e.Data["offset"] != end {
		t.Fatalf("log fields %v, want bytes_dropped=%d offset=%d", e.Data, len(tail), end)
	}
	checkFrames(t, w, fs[:whole])
	// The repaired WAL carries on from the last whole frame.
	if seq := appendOne(t, w, 9, `{"after":"repair"}`); seq != uint64(whole)+1 {
		t.Fatalf("next Seq %d, want %d", seq, whole+1)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = walrepl.Verify(dir, true, 0)
	if err != nil || rep.TornTail || rep.LastSeq != uint64(whole)+1 {
		t.Fatalf("Verify after repair and append: %+v, %v", rep, err)
	}
}

func TestWAL_Recover_tornFrameCommitted(t *testing.T) {
	for _, whole := range []int{0, 4} {
		for _, extra := range []uint64{0, 1} { // safe_seq = the torn frame's Seq, or one above
			for _, tc := range tornCases {
				t.Run(fmt.Sprintf("%d whole frames, safe_seq=%d, %s", whole, uint64(whole)+1+extra, tc.name), func(t *testing.T) {
					fs := smallFrames(whole + 1)
					full := buildWAL(fs...)
					wal := buildWAL(fs[:whole]...)
					tail := tc.tail(full.img[full.offs[whole]:])
					dir := setupDir(t, wal.withTail(tail), safeSeq(uint64(whole)+1+extra))
					seq, off := uint64(whole+1), wal.offs[whole]
					msg := fmt.Sprintf("telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=%d (offset %d) fails its checksum", seq, off)
					if !tc.crc {
						msg = fmt.Sprintf("telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=%d (offset %d) is torn: the file ends %d bytes into it",
							seq, off, len(tail))
					}
					expectRefused(t, dir, true, nil, want{cause: walrepl.CauseCommittedFrameCorrupt, msg: msg,
						seq: seq, off: off, hasPos: true})
				})
			}
		}
	}
}

func TestWAL_Recover_frameCorrupt(t *testing.T) {
	fs := smallFrames(6)
	for _, at := range []int{3, 4} { // Seq 4 or 5 damaged; a whole frame follows
		for _, d := range damages {
			t.Run(fmt.Sprintf("Seq=%d %s", at+1, d.name), func(t *testing.T) {
				w, img := damaged(fs, at, d.fn)
				dir := setupDir(t, img, safeSeq(3))
				next := w.offs[at+1] + int64(len(img)-len(w.img))
				expectRefused(t, dir, true, nil, want{cause: walrepl.CauseFrameCorrupt, prefix: true,
					msg: fmt.Sprintf("telemetry/wal: FRAME_CORRUPT — frame at offset %d (expected Seq=%d) is unreadable (", w.offs[at], at+1),
					seq: uint64(at + 1), off: w.offs[at], hasPos: true})
				_, err := walrepl.Verify(dir, true, 0)
				if suffix := fmt.Sprintf("but a whole frame follows at offset %d: this is damage to written data, not a torn tail", next); !strings.HasSuffix(err.Error(), suffix) {
					t.Fatalf("message %q does not end with %q", err, suffix)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// safe_seq against the last frame.

func TestWAL_Recover_safeSeqPosition(t *testing.T) {
	fs := smallFrames(5)
	wal := buildWAL(fs...)
	for _, safe := range []uint64{0, 1, 2, 4, 5} {
		t.Run(fmt.Sprintf("safe_seq=%d below or at last Seq=5", safe), func(t *testing.T) {
			dir := setupDir(t, wal.img, safeSeq(safe))
			rep, err := walrepl.Verify(dir, true, 0)
			if err != nil || rep.SafeSeq != safe || rep.LastSeq != 5 || rep.FirstSeq != 1 || rep.Frames != 5 ||
				rep.LastEpoch != 7 || rep.TornTail || rep.EndOffset != int64(len(wal.img)) || rep.WALID != hex.EncodeToString(testWALID[:]) {
				t.Fatalf("Verify: %+v, %v", rep, err)
			}
			o, _ := testOptions(dir)
			o.Initialized = true
			w, orep := openOK(t, o)
			if orep.SafeSeq != safe || orep.LastSeq != 5 {
				t.Fatalf("Open report %+v", orep)
			}
			if last, epoch, durable, s := w.Positions(); last != 5 || epoch != 7 || durable != 5 || s != safe {
				t.Fatalf("Positions %d %d %d %d", last, epoch, durable, s)
			}
			checkFrames(t, w, fs)
			w.Close()
			if got := readFile(t, dir, walrepl.WALFile); !bytes.Equal(got, wal.img) {
				t.Fatal("Open and Close changed a clean WAL")
			}
			if s := string(readFile(t, dir, walrepl.SafeSeqFile)); s != fmt.Sprintf("%d\n", safe) {
				t.Fatalf("safe_seq became %q", s)
			}
		})
	}
	for _, safe := range []uint64{6, 7, 100} {
		t.Run(fmt.Sprintf("safe_seq=%d above last Seq=5", safe), func(t *testing.T) {
			dir := setupDir(t, wal.img, safeSeq(safe))
			expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSafeSeqGTMaxSeq,
				msg: fmt.Sprintf("telemetry/wal: SAFESEQ_GT_MAXSEQ — safe_seq=%d but maxSeq=5", safe)})
		})
	}
}

// ---------------------------------------------------------------------------
// Operator paths: legacy upgrade, reset by variable and by marker.

func TestWAL_Recover_legacyUpgrade(t *testing.T) {
	fs := smallFrames(5)
	for _, tc := range []struct {
		name string
		tail []byte
	}{
		{"whole frames", nil},
		{"torn tail is repaired first", []byte{9, 0, 0, 0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wal := buildWAL(fs...)
			dir := setupDir(t, wal.withTail(tc.tail), nil)
			// Without the variable: the runbook's refusal.
			expectRefused(t, dir, true, nil, want{cause: walrepl.CauseSafeSeqMissing, msg: safeSeqMissingMsg(dir)})

			o, hook := testOptions(dir)
			o.Initialized, o.LegacyUpgrade = true, true
			w, rep := openOK(t, o)
			if !rep.LegacyUpgraded || rep.SafeSeq != 5 || rep.LastSeq != 5 || rep.Reset {
				t.Fatalf("legacy start report %+v", rep)
			}
			if s := string(readFile(t, dir, walrepl.SafeSeqFile)); s != "5\n" {
				t.Fatalf("telemetry.safe_seq = %q, want \"5\\n\"", s)
			}
			if w.SafeSeq() != 5 {
				t.Fatalf("in-memory safe_seq %d", w.SafeSeq())
			}
			checkFrames(t, w, fs)
			if (tc.tail != nil) != (logEntry(hook, "WAL_TORN_TAIL_TRUNCATED") != nil) {
				t.Fatalf("torn tail log: %v", hook.AllEntries())
			}
			w.Close()
			if got := readFile(t, dir, walrepl.WALFile); !bytes.Equal(got, wal.img) {
				t.Fatal("legacy upgrade changed the frames")
			}
			// The next start needs no variable; with it still set it is
			// ignored.
			o2, _ := testOptions(dir)
			o2.Initialized = true
			w2, rep2 := openOK(t, o2)
			if rep2.LegacyUpgraded || rep2.SafeSeq != 5 {
				t.Fatalf("restart report %+v", rep2)
			}
			w2.Close()
			o3, hook3 := testOptions(dir)
			o3.Initialized, o3.LegacyUpgrade = true, true
			w3, rep3 := openOK(t, o3)
			if rep3.LegacyUpgraded {
				t.Fatal("legacy upgrade ran again although safe_seq exists")
			}
			if e := hook3.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "AUTONOMYOPS_WAL_LEGACY_UPGRADE is set") {
				t.Fatalf("no warning that the variable is ignored: %v", hook3.AllEntries())
			}
			w3.Close()
		})
	}
	t.Run("damage followed by a whole frame is still refused", func(t *testing.T) {
		_, img := damaged(fs, 2, damages[0].fn)
		dir := setupDir(t, img, nil)
		o, _ := testOptions(dir)
		o.LegacyUpgrade = true
		if _, _, err := walrepl.Open(o); err == nil {
			t.Fatal("legacy upgrade accepted a damaged WAL")
		} else {
			checkRecoveryErr(t, "Open", err, want{cause: walrepl.CauseFrameCorrupt, prefix: true, msg: "telemetry/wal: FRAME_CORRUPT — "})
		}
		if fileExists(t, filepath.Join(dir, walrepl.SafeSeqFile)) {
			t.Fatal("a refused legacy upgrade wrote safe_seq")
		}
	})
}

// deletedTelemetry writes an initialised node's telemetry, then deletes it as the
// runbook's Path 2 says: rm telemetry.wal and telemetry.safe_seq.
func deletedTelemetry(t *testing.T) (dir string, oldID [16]byte) {
	t.Helper()
	dir = setupDir(t, buildWAL(smallFrames(4)...).img, safeSeq(4))
	for _, name := range []string{walrepl.WALFile, walrepl.SafeSeqFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, testWALID
}

func checkEmptyAfterReset(t *testing.T, dir string, w *walrepl.WAL, rep *walrepl.Report, oldID [16]byte, via string) {
	t.Helper()
	if !rep.Reset || rep.ResetVia != via || rep.LastSeq != 0 || rep.SafeSeq != 0 || rep.Frames != 0 {
		t.Fatalf("reset report %+v", rep)
	}
	if id := w.ID(); id == oldID {
		t.Fatal("a reset WAL must get a new id")
	}
	b := readFile(t, dir, walrepl.WALFile)
	if len(b) != docFileHeaderSize || le.Uint32(b[12:]) != docCRC(b[0:12], b[16:64]) || le.Uint64(b[32:]) != 1 {
		t.Fatalf("reset WAL % x", b)
	}
	if s := string(readFile(t, dir, walrepl.SafeSeqFile)); s != "0\n" {
		t.Fatalf("safe_seq after reset %q", s)
	}
}

func TestWAL_Recover_operatorReset(t *testing.T) {
	dir, oldID := deletedTelemetry(t)
	expectRefused(t, dir, true, nil, want{cause: walrepl.CauseWALMissing, prefix: true,
		msg: "telemetry/wal: WAL missing in steady-state at "})

	o, hook := testOptions(dir)
	o.Initialized, o.OperatorReset = true, true
	w, rep := openOK(t, o)
	checkEmptyAfterReset(t, dir, w, rep, oldID, "env")
	e := logEntry(hook, "WAL_RESET_BY_OPERATOR")
	if e == nil || e.Level != logrus.WarnLevel || e.Data["env"] != walrepl.EnvOperatorReset {
		t.Fatalf("no WARN WAL_RESET_BY_OPERATOR naming the variable: %v", hook.AllEntries())
	}
	if seq := appendOne(t, w, 2, `{"after":"reset"}`); seq != 1 {
		t.Fatalf("first Seq after reset %d", seq)
	}
	w.Close()
	rep, err := walrepl.Verify(dir, true, 0)
	if err != nil || rep.LastSeq != 1 {
		t.Fatalf("Verify after reset: %+v, %v", rep, err)
	}
}

func TestWAL_Recover_resetMarker(t *testing.T) {
	dir, oldID := deletedTelemetry(t)
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := walrepl.WriteResetMarker(dir, walrepl.ResetMarker{At: at, By: "alice", Backup: "/var/lib/autonomy/telemetry.corrupt-20250301-120000"}); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, walrepl.ResetMarkerFile)
	// Verify reads the marker as a pending reset and leaves it in place.
	before := snapshot(t, dir)
	if rep, err := walrepl.Verify(dir, true, 0); err != nil || rep.LastSeq != 0 {
		t.Fatalf("Verify with a reset marker: %+v, %v", rep, err)
	}
	if !sameSnapshot(before, snapshot(t, dir)) {
		t.Fatal("Verify changed the directory")
	}

	o, hook := testOptions(dir)
	o.Initialized = true // no variable: the marker is the instruction
	w, rep := openOK(t, o)
	checkEmptyAfterReset(t, dir, w, rep, oldID, "marker")
	if fileExists(t, marker) {
		t.Fatal("the reset marker is still there after the start")
	}
	e := logEntry(hook, "WAL_RESET_BY_OPERATOR")
	if e == nil || e.Level != logrus.WarnLevel || e.Data["marker_by"] != "alice" || e.Data["via"] != "marker" {
		t.Fatalf("no WARN WAL_RESET_BY_OPERATOR with the marker's audit fields: %v", hook.AllEntries())
	}
	appendOne(t, w, 1, `{"k":"v"}`)
	w.Close()
	// One-shot: the next start is normal and keeps the new frame.
	o2, hook2 := testOptions(dir)
	o2.Initialized = true
	w2, rep2 := openOK(t, o2)
	if rep2.Reset || rep2.LastSeq != 1 || logEntry(hook2, "WAL_RESET_BY_OPERATOR") != nil {
		t.Fatalf("second start after the marker: %+v", rep2)
	}
	w2.Close()
}

func TestWAL_Recover_resetVarWithIntactWAL(t *testing.T) {
	fs := smallFrames(5)
	wal := buildWAL(fs...)
	dir := setupDir(t, wal.img, safeSeq(3))
	o, hook := testOptions(dir)
	o.Initialized, o.OperatorReset = true, true
	w, rep := openOK(t, o)
	if rep.Reset || !rep.ResetVarIgnore || rep.LastSeq != 5 || rep.SafeSeq != 3 || rep.WALID != hex.EncodeToString(testWALID[:]) {
		t.Fatalf("report %+v", rep)
	}
	if logEntry(hook, "WAL_RESET_BY_OPERATOR") != nil {
		t.Fatal("an intact WAL was reported as reset")
	}
	var warned bool
	for _, e := range hook.AllEntries() {
		warned = warned || (e.Level == logrus.WarnLevel && strings.Contains(e.Message, walrepl.EnvOperatorReset) && strings.Contains(e.Message, "ignored"))
	}
	if !warned {
		t.Fatalf("no warning that the variable is set and ignored: %v", hook.AllEntries())
	}
	checkFrames(t, w, fs)
	w.Close()
	if got := readFile(t, dir, walrepl.WALFile); !bytes.Equal(got, wal.img) {
		t.Fatal("the WAL changed")
	}
	if s := string(readFile(t, dir, walrepl.SafeSeqFile)); s != "3\n" {
		t.Fatalf("safe_seq %q", s)
	}
}

// ---------------------------------------------------------------------------
// Any single-byte change inside the committed region is refused.

func TestWAL_Recover_singleByteChangeInCommittedRegion(t *testing.T) {
	fs := smallFrames(3) // header + 3 frames, two epochs, an epoch-start frame
	wal := buildWAL(fs...)
	dir := t.TempDir()
	writeFile(t, dir, walrepl.SafeSeqFile, []byte("3\n"))
	// Sanity: the pristine WAL is accepted with safe_seq = last Seq.
	writeFile(t, dir, walrepl.WALFile, wal.img)
	if rep, err := walrepl.Verify(dir, true, 0); err != nil || rep.LastSeq != 3 || rep.SafeSeq != 3 {
		t.Fatalf("pristine WAL: %+v, %v", rep, err)
	}
	o, _ := testOptions(dir)
	o.Initialized = true
	checked := 0
	for off := range wal.img {
		for _, m := range []struct {
			name string
			fn   func(byte) byte
		}{{"xor 0xff", func(b byte) byte { return b ^ 0xFF }}, {"+1", func(b byte) byte { return b + 1 }}} {
			img := append([]byte(nil), wal.img...)
			img[off] = m.fn(img[off])
			writeFile(t, dir, walrepl.WALFile, img)
			rep, verr := walrepl.Verify(dir, true, 0)
			if verr == nil {
				t.Fatalf("offset %d %s: Verify accepted it: %+v", off, m.name, rep)
			}
			if !errors.Is(verr, walrepl.ErrRecovery) {
				t.Fatalf("offset %d %s: Verify: %v is not a recovery error", off, m.name, verr)
			}
			if got := readFile(t, dir, walrepl.WALFile); !bytes.Equal(got, img) {
				t.Fatalf("offset %d %s: Verify changed the file", off, m.name)
			}
			w, _, oerr := walrepl.Open(o)
			if oerr == nil {
				w.Close()
				t.Fatalf("offset %d %s: Open accepted it", off, m.name)
			}
			if oerr.Error() != verr.Error() {
				t.Fatalf("offset %d %s: Open says %q, Verify %q", off, m.name, oerr, verr)
			}
			if got := readFile(t, dir, walrepl.WALFile); !bytes.Equal(got, img) {
				t.Fatalf("offset %d %s: Open changed the file while refusing it", off, m.name)
			}
			checked++
		}
	}
	t.Logf("%d single-byte changes over %d committed bytes, all refused", checked, len(wal.img))
}
