package snapshot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/autonomyops/orchestrator/walrepl"
)

// Summary is what Scan found in a valid snapshot.
type Summary struct {
	Header     Header
	Etcd       EtcdState
	Checkpoint json.RawMessage
	// Frames is how many frames it holds, Events how many of them are
	// telemetry events (the others are epoch-start frames).
	Frames uint64
	Events uint64
	// FirstSeq and LastSeq are the first and last frame's Seq (0 and 0 when
	// it holds none).
	FirstSeq, LastSeq uint64
	// LastEpoch is the last frame's epoch (PrevEpoch when none).
	LastEpoch uint64
	// Size is the file's length in bytes; SHA256 the checksum its trailer
	// holds (hex), which Scan verified.
	Size   int64
	SHA256 string
}

// FrameFunc receives the frames of one record, in Seq order. The frames'
// payloads alias a buffer that is reused after it returns. An error it
// returns ends Scan with that error.
type FrameFunc func(frames []walrepl.Frame) error

// scanner reads records and hashes every byte it reads.
type scanner struct {
	rd  *bufio.Reader
	sum hash.Hash
	off int64
}

// read fills b, hashing it; a short read is a truncation while reading
// what. With atBoundary, an end of file before b's first byte is io.EOF, for
// the caller to judge.
func (s *scanner) read(b []byte, what string, atBoundary bool) error {
	n, err := io.ReadFull(s.rd, b)
	s.sum.Write(b[:n])
	s.off += int64(n)
	if errors.Is(err, io.EOF) && atBoundary {
		return io.EOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || (errors.Is(err, io.EOF) && len(b) > 0) {
		return truncated(s.off, "the file ends inside %s (%d of %d bytes); its trailer and checksum are missing", what, n, len(b))
	}
	return err
}

// Scan reads a whole snapshot from r and verifies it (see the package
// comment for what that covers). visit, if not nil, is called with the
// frames as they are read; they are only known to be valid as a whole once
// Scan returns nil, so a caller that writes them somewhere must undo that
// on an error. Format problems are *FormatError; read errors are returned
// as they are.
func Scan(r io.Reader, visit FrameFunc) (*Summary, error) {
	s := &scanner{rd: bufio.NewReaderSize(r, 256<<10), sum: sha256.New()}
	var pre [prefixSize]byte
	if err := s.read(pre[:], "the file's magic and version", true); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, truncated(0, "the file is empty")
		}
		return nil, err
	}
	if string(pre[:8]) != Magic {
		return nil, corrupt(0, "the file does not begin with %q: it is not an autonomy snapshot", Magic)
	}
	if v := binary.LittleEndian.Uint32(pre[8:]); v != Version {
		return nil, &FormatError{Kind: KindVersion, Offset: 8,
			Reason: fmt.Sprintf("format version %d; this build reads version %d only", v, Version)}
	}
	sum := &Summary{}
	order := []byte{RecHeader, RecEtcd, RecCheckpoint}
	var body []byte
	next := uint64(0)
	for {
		recOff := s.off
		var head [recordHead]byte
		beforeHead := s.sum.Sum(nil) // the checksum covers every byte before the trailer record
		if err := s.read(head[:], "a record header", true); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, truncated(recOff, "the file ends after %d whole bytes without its trailer and checksum", recOff)
			}
			return nil, err
		}
		typ, n := head[0], binary.LittleEndian.Uint32(head[1:])
		if len(order) > 0 && typ != order[0] {
			return nil, corrupt(recOff, "record %s where the %s record was due", recName(typ), recName(order[0]))
		}
		switch typ {
		case RecHeader, RecEtcd, RecCheckpoint, RecFrames, RecTrailer:
		default:
			return nil, corrupt(recOff, "record of unknown type 0x%02x", typ)
		}
		if n > MaxRecord {
			return nil, corrupt(recOff, "%s record claims %d bytes (bound %d)", recName(typ), n, MaxRecord)
		}
		if typ == RecTrailer && n != TrailerSize {
			return nil, corrupt(recOff, "trailer of %d bytes (want %d)", n, TrailerSize)
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if err := s.read(body, "the "+recName(typ)+" record", false); err != nil {
			return nil, err
		}
		bodyOff := recOff + recordHead
		switch typ {
		case RecHeader:
			if err := decodeJSON(body, &sum.Header); err != nil {
				return nil, corrupt(bodyOff, "the header is not valid JSON: %v", err)
			}
			h := &sum.Header
			if h.FormatVersion != Version {
				return nil, &FormatError{Kind: KindVersion, Offset: bodyOff,
					Reason: fmt.Sprintf("the header states format version %d; this build reads version %d only", h.FormatVersion, Version)}
			}
			if h.FirstSeq == 0 || h.FirstSeq > h.SafeSeq+1 {
				return nil, corrupt(bodyOff, "the header's first Seq %d is not in [1, safe_seq+1=%d]", h.FirstSeq, h.SafeSeq+1)
			}
			next, sum.LastEpoch = h.FirstSeq, h.PrevEpoch
		case RecEtcd:
			if err := decodeJSON(body, &sum.Etcd); err != nil {
				return nil, corrupt(bodyOff, "the etcd state is not valid JSON: %v", err)
			}
		case RecCheckpoint:
			if !json.Valid(body) {
				return nil, corrupt(bodyOff, "the checkpoint is not valid JSON")
			}
			sum.Checkpoint = append(json.RawMessage(nil), body...)
		case RecFrames:
			frames, err := decodeFrames(body, bodyOff, &next, &sum.LastEpoch, sum.Header.SafeSeq)
			if err != nil {
				return nil, err
			}
			if sum.FirstSeq == 0 {
				sum.FirstSeq = frames[0].Seq
			}
			sum.LastSeq = frames[len(frames)-1].Seq
			sum.Frames += uint64(len(frames))
			for i := range frames {
				if frames[i].Type == walrepl.FrameEvent {
					sum.Events++
				}
			}
			if visit != nil {
				if err := visit(frames); err != nil {
					return nil, err
				}
			}
		case RecTrailer:
			count, last := binary.LittleEndian.Uint64(body[0:]), binary.LittleEndian.Uint64(body[8:])
			if !bytes.Equal(body[16:], beforeHead) {
				return nil, corrupt(bodyOff+16, "checksum mismatch: the trailer holds sha256 %x, the bytes before it hash to %x", body[16:], beforeHead)
			}
			if count != sum.Frames || last != sum.Header.SafeSeq {
				return nil, corrupt(bodyOff, "the trailer counts %d frames up to Seq=%d; the file holds %d up to Seq=%d", count, last, sum.Frames, next-1)
			}
			if next != sum.Header.SafeSeq+1 {
				return nil, corrupt(recOff, "the frames end at Seq=%d, below the header's safe_seq %d", next-1, sum.Header.SafeSeq)
			}
			var one [1]byte
			if m, _ := io.ReadFull(s.rd, one[:]); m > 0 {
				return nil, corrupt(s.off, "bytes follow the trailer")
			}
			sum.Size, sum.SHA256 = s.off, hex.EncodeToString(body[16:])
			return sum, nil
		}
		if len(order) > 0 {
			order = order[1:]
		}
	}
}

// decodeFrames decodes a frames record whose body starts at byte off, checks
// that its Seqs continue at *next without exceeding safe and its epochs
// never go below *epoch, and advances both.
func decodeFrames(body []byte, off int64, next, epoch *uint64, safe uint64) ([]walrepl.Frame, error) {
	var out []walrepl.Frame
	for pos := 0; pos < len(body); {
		f, n, err := walrepl.DecodeFrame(body[pos:], walrepl.DefaultMaxPayload)
		at := off + int64(pos)
		if err != nil {
			return nil, corrupt(at, "frame %d of this record (Seq=%d due): %v", len(out)+1, *next, err)
		}
		switch {
		case f.Seq != *next:
			return nil, corrupt(at, "frame Seq=%d follows Seq=%d (expected %d)", f.Seq, *next-1, *next)
		case f.Seq > safe:
			return nil, corrupt(at, "frame Seq=%d is above the header's safe_seq %d", f.Seq, safe)
		case f.Epoch < *epoch:
			return nil, corrupt(at, "frame Seq=%d has epoch %d, below the previous frame's %d", f.Seq, f.Epoch, *epoch)
		case f.Type != walrepl.FrameEvent && f.Type != walrepl.FrameEpochStart:
			return nil, corrupt(at, "frame Seq=%d has unknown type %d", f.Seq, f.Type)
		case !json.Valid(f.Payload):
			return nil, corrupt(at, "frame Seq=%d does not carry JSON", f.Seq)
		}
		out = append(out, f)
		*next, *epoch = f.Seq+1, f.Epoch
		pos += n
	}
	if len(out) == 0 {
		return nil, corrupt(off, "empty frames record")
	}
	return out, nil
}

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}
