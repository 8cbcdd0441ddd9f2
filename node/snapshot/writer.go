package snapshot

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/autonomyops/orchestrator/walrepl"
)

// frameBatch is how many bytes of frames a writer gathers in one record.
const frameBatch = 1 << 20

// Writer writes one snapshot: NewWriter writes everything but the frames and
// the trailer, WriteFrames the frames in Seq order, Close the trailer. It
// is not safe for concurrent use.
type Writer struct {
	bw     *bufio.Writer
	sum    hash.Hash
	h      Header
	next   uint64 // the Seq the next frame must have
	epoch  uint64 // the last frame's epoch
	frames uint64
	buf    []byte // frames gathered for the next record
	err    error
	closed bool
}

// NewWriter writes the magic, version, header, etcd state and checkpoint to
// w. h.FormatVersion is set to Version; FirstSeq must be at least 1 and at
// most SafeSeq+1; checkpoint, when not empty, must be JSON.
func NewWriter(w io.Writer, h Header, etcd EtcdState, checkpoint []byte) (*Writer, error) {
	h.FormatVersion = Version
	if h.FirstSeq == 0 || h.FirstSeq > h.SafeSeq+1 {
		return nil, fmt.Errorf("snapshot: first Seq %d must be in [1, safe_seq+1=%d]", h.FirstSeq, h.SafeSeq+1)
	}
	if len(checkpoint) == 0 {
		checkpoint = []byte("null")
	}
	if !json.Valid(checkpoint) {
		return nil, errors.New("snapshot: the checkpoint is not JSON")
	}
	sw := &Writer{sum: sha256.New(), h: h, next: h.FirstSeq, epoch: h.PrevEpoch}
	sw.bw = bufio.NewWriterSize(io.MultiWriter(w, sw.sum), 256<<10)
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	eb, err := json.Marshal(etcd)
	if err != nil {
		return nil, err
	}
	var pre [prefixSize]byte
	copy(pre[:], Magic)
	binary.LittleEndian.PutUint32(pre[8:], Version)
	sw.write(pre[:])
	sw.record(RecHeader, hb)
	sw.record(RecEtcd, eb)
	sw.record(RecCheckpoint, checkpoint)
	return sw, sw.err
}

func (sw *Writer) write(b []byte) {
	if sw.err == nil {
		_, sw.err = sw.bw.Write(b)
	}
}

func (sw *Writer) record(typ byte, body []byte) {
	var head [recordHead]byte
	head[0] = typ
	binary.LittleEndian.PutUint32(head[1:], uint32(len(body)))
	sw.write(head[:])
	sw.write(body)
}

// WriteFrames appends frames, which must continue the snapshot's Seqs (the
// first is FirstSeq), never exceed SafeSeq and never lower the epoch.
func (sw *Writer) WriteFrames(frames []walrepl.Frame) error {
	if sw.err != nil {
		return sw.err
	}
	for i := range frames {
		f := &frames[i]
		switch {
		case f.Seq != sw.next:
			return fmt.Errorf("snapshot: frame Seq=%d where Seq=%d was due", f.Seq, sw.next)
		case f.Seq > sw.h.SafeSeq:
			return fmt.Errorf("snapshot: frame Seq=%d is above the snapshot's safe_seq %d", f.Seq, sw.h.SafeSeq)
		case f.Epoch < sw.epoch:
			return fmt.Errorf("snapshot: frame Seq=%d has epoch %d below the previous %d", f.Seq, f.Epoch, sw.epoch)
		case !json.Valid(f.Payload):
			return fmt.Errorf("snapshot: frame Seq=%d does not carry JSON", f.Seq)
		}
		if len(sw.buf) > 0 && len(sw.buf)+f.Size() > frameBatch {
			sw.flushFrames()
		}
		sw.buf = walrepl.AppendEncoded(sw.buf, f)
		sw.next, sw.epoch = f.Seq+1, f.Epoch
		sw.frames++
	}
	if len(sw.buf) >= frameBatch {
		sw.flushFrames()
	}
	return sw.err
}

func (sw *Writer) flushFrames() {
	if len(sw.buf) > 0 {
		sw.record(RecFrames, sw.buf)
		sw.buf = sw.buf[:0]
	}
}

// Flush writes what is buffered to the underlying writer.
func (sw *Writer) Flush() error {
	sw.flushFrames()
	if sw.err == nil {
		sw.err = sw.bw.Flush()
	}
	return sw.err
}

// Close writes the trailer; it fails, writing no trailer, unless every frame
// up to SafeSeq was written. It does not close the underlying writer.
func (sw *Writer) Close() error {
	if sw.closed {
		return sw.err
	}
	sw.closed = true
	if sw.err != nil {
		return sw.err
	}
	if sw.next != sw.h.SafeSeq+1 {
		sw.err = fmt.Errorf("snapshot: closed after Seq=%d, before safe_seq %d", sw.next-1, sw.h.SafeSeq)
		return sw.err
	}
	sw.flushFrames()
	if sw.err == nil {
		sw.err = sw.bw.Flush() // every body byte is now in the hash
	}
	if sw.err != nil {
		return sw.err
	}
	var t [TrailerSize]byte
	binary.LittleEndian.PutUint64(t[0:], sw.frames)
	binary.LittleEndian.PutUint64(t[8:], sw.h.SafeSeq)
	copy(t[16:], sw.sum.Sum(nil))
	sw.record(RecTrailer, t[:])
	if sw.err == nil {
		sw.err = sw.bw.Flush()
	}
	return sw.err
}
