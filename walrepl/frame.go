package walrepl

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The byte layout is specified in docs/wal-format.md; keep the two in step.
const (
	// FileHeaderSize is the size of the header at offset 0 of telemetry.wal.
	FileHeaderSize = 32
	// FrameHeaderSize is the size of the fixed part of every frame.
	FrameHeaderSize = 36
	// DefaultMaxPayload bounds a frame's payload. A length field above the
	// bound is treated as damage, not as an allocation request.
	DefaultMaxPayload = 16 << 20

	fileMagic   = "AOTELWAL"
	fileVersion = 1
)

// FrameType says what a frame's payload is.
type FrameType uint16

const (
	// FrameEvent carries one telemetry event: the client's JSON object.
	FrameEvent FrameType = 1
	// FrameEpochStart is the barrier a new leader appends before it serves
	// writes (DESIGN §6 rule 3). Readers skip it.
	FrameEpochStart FrameType = 2
)

func (t FrameType) valid() bool { return t == FrameEvent || t == FrameEpochStart }

func (t FrameType) String() string {
	switch t {
	case FrameEvent:
		return "event"
	case FrameEpochStart:
		return "epoch_start"
	}
	return fmt.Sprintf("type(%d)", uint16(t))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Frame is one WAL record.
type Frame struct {
	Seq     uint64
	Epoch   uint64
	Time    int64 // Unix nanoseconds, UTC, set by the leader that created the frame
	Type    FrameType
	Payload []byte // JSON
}

// Size is the frame's encoded length in bytes.
func (f *Frame) Size() int { return FrameHeaderSize + len(f.Payload) }

// AppendEncoded appends the frame's encoding to dst.
//
//	0  u32  payload length N
//	4  u32  CRC-32C over bytes [0,4) and [8,36+N)
//	8  u64  Seq
//	16 u64  Epoch
//	24 i64  timestamp (Unix ns)
//	32 u16  type
//	34 u16  flags (0)
//	36 [N]  payload
func AppendEncoded(dst []byte, f *Frame) []byte {
	start := len(dst)
	var h [FrameHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(f.Payload)))
	binary.LittleEndian.PutUint64(h[8:], f.Seq)
	binary.LittleEndian.PutUint64(h[16:], f.Epoch)
	binary.LittleEndian.PutUint64(h[24:], uint64(f.Time))
	binary.LittleEndian.PutUint16(h[32:], uint16(f.Type))
	dst = append(dst, h[:]...)
	dst = append(dst, f.Payload...)
	crc := crc32.Update(0, castagnoli, dst[start:start+4])
	crc = crc32.Update(crc, castagnoli, dst[start+8:])
	binary.LittleEndian.PutUint32(dst[start+4:], crc)
	return dst
}

// Decoding outcomes that are not a whole frame.
var (
	// errShortFrame: b ends before the frame does (a candidate torn tail).
	errShortFrame = errors.New("walrepl: frame is incomplete")
	// errBadChecksum: the bytes are all there but do not match their CRC.
	errBadChecksum = errors.New("walrepl: frame fails its checksum")
	// errBadLength: the length field is zero or above the payload bound.
	errBadLength = errors.New("walrepl: frame length is out of range")
	// errBadFlags: a whole, checksum-valid frame whose flags field is not 0.
	// Format version 1 only writes 0, and Frame cannot carry other values.
	errBadFlags = errors.New("walrepl: frame has unknown flags")
)

// frameLen returns the total encoded length of the frame starting at b, or
// an error when the header is incomplete or its length is out of range.
func frameLen(b []byte, maxPayload int) (int, error) {
	if len(b) < FrameHeaderSize {
		return 0, errShortFrame
	}
	n := binary.LittleEndian.Uint32(b[0:])
	if n == 0 || int64(n) > int64(maxPayload) {
		return 0, errBadLength
	}
	return FrameHeaderSize + int(n), nil
}

// DecodeFrame decodes the frame at the start of b. It returns the frame (its
// Payload aliases b), the number of bytes it occupies, or an error saying
// whether the frame is incomplete, out of range or fails its checksum. It does
// not validate the payload as JSON; callers decide what that means.
func DecodeFrame(b []byte, maxPayload int) (Frame, int, error) {
	n, err := frameLen(b, maxPayload)
	if err != nil {
		return Frame{}, 0, err
	}
	if len(b) < n {
		return Frame{}, 0, errShortFrame
	}
	crc := crc32.Update(0, castagnoli, b[0:4])
	crc = crc32.Update(crc, castagnoli, b[8:n])
	if crc != binary.LittleEndian.Uint32(b[4:]) {
		return Frame{}, 0, errBadChecksum
	}
	if binary.LittleEndian.Uint16(b[34:]) != 0 {
		return Frame{}, 0, errBadFlags
	}
	f := Frame{
		Seq:     binary.LittleEndian.Uint64(b[8:]),
		Epoch:   binary.LittleEndian.Uint64(b[16:]),
		Time:    int64(binary.LittleEndian.Uint64(b[24:])),
		Type:    FrameType(binary.LittleEndian.Uint16(b[32:])),
		Payload: b[FrameHeaderSize:n],
	}
	return f, n, nil
}

// fileHeader is the first FileHeaderSize bytes of telemetry.wal.
//
//	0  [8]  magic "AOTELWAL"
//	8  u32  version (1)
//	12 u32  CRC-32C over bytes [0,12) and [16,32)
//	16 [16] WAL id: random, new for every freshly created WAL
type fileHeader struct {
	Version uint32
	ID      [16]byte
}

func newFileHeader() (fileHeader, error) {
	h := fileHeader{Version: fileVersion}
	if _, err := rand.Read(h.ID[:]); err != nil {
		return h, fmt.Errorf("walrepl: generating WAL id: %w", err)
	}
	return h, nil
}

func (h fileHeader) encode() []byte {
	b := make([]byte, FileHeaderSize)
	copy(b, fileMagic)
	binary.LittleEndian.PutUint32(b[8:], h.Version)
	copy(b[16:], h.ID[:])
	crc := crc32.Update(0, castagnoli, b[0:12])
	crc = crc32.Update(crc, castagnoli, b[16:32])
	binary.LittleEndian.PutUint32(b[12:], crc)
	return b
}

func decodeFileHeader(b []byte) (fileHeader, error) {
	var h fileHeader
	if len(b) < FileHeaderSize {
		return h, fmt.Errorf("file is %d bytes, shorter than its %d-byte header", len(b), FileHeaderSize)
	}
	if string(b[0:8]) != fileMagic {
		return h, fmt.Errorf("bad magic %q (expected %q)", b[0:8], fileMagic)
	}
	crc := crc32.Update(0, castagnoli, b[0:12])
	crc = crc32.Update(crc, castagnoli, b[16:32])
	if crc != binary.LittleEndian.Uint32(b[12:]) {
		return h, errors.New("header fails its checksum")
	}
	h.Version = binary.LittleEndian.Uint32(b[8:])
	if h.Version != fileVersion {
		return h, fmt.Errorf("unsupported version %d (this build reads version %d)", h.Version, fileVersion)
	}
	copy(h.ID[:], b[16:32])
	return h, nil
}

// IDString renders a WAL id for logs and status.
func IDString(id [16]byte) string { return fmt.Sprintf("%x", id[:]) }
