//go:build integration

package integration

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

// The WAL's byte layout (docs/wal-format.md), for editing a stopped node's
// log from the host.
const (
	walHeaderSize   = 32
	frameHeaderSize = 36
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walFrame is where one whole, CRC-valid frame sits in telemetry.wal.
type walFrame struct {
	Seq, Epoch uint64
	Type       uint16
	Offset     int64
	Len        int64 // header + payload
}

// scanWALFile returns the whole frames of a WAL file up to the first damage,
// and the file size.
func scanWALFile(path string) ([]walFrame, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < walHeaderSize || string(b[:8]) != "AOTELWAL" {
		return nil, int64(len(b)), fmt.Errorf("%s: no WAL header", path)
	}
	var out []walFrame
	off := walHeaderSize
	for off+frameHeaderSize <= len(b) {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n < 1 || off+frameHeaderSize+n > len(b) {
			break
		}
		crc := crc32.Update(crc32.Checksum(b[off:off+4], castagnoli), castagnoli, b[off+8:off+frameHeaderSize+n])
		if crc != binary.LittleEndian.Uint32(b[off+4:]) {
			break
		}
		out = append(out, walFrame{
			Seq: binary.LittleEndian.Uint64(b[off+8:]), Epoch: binary.LittleEndian.Uint64(b[off+16:]),
			Type: binary.LittleEndian.Uint16(b[off+32:]), Offset: int64(off), Len: int64(frameHeaderSize + n),
		})
		off += frameHeaderSize + n
	}
	return out, int64(len(b)), nil
}

// lastSeqOnDisk is the Seq of the last whole frame in the node's WAL.
func lastSeqOnDisk(n *Node) (uint64, error) {
	fs, _, err := scanWALFile(n.WALPath())
	if err != nil {
		return 0, err
	}
	if len(fs) == 0 {
		return 0, nil
	}
	return fs[len(fs)-1].Seq, nil
}

// flipPayloadBit flips one bit in the payload of the event frame with the
// given Seq.
func flipPayloadBit(path string, seq uint64) error {
	fs, _, err := scanWALFile(path)
	if err != nil {
		return err
	}
	for _, f := range fs {
		if f.Seq != seq {
			continue
		}
		fh, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer fh.Close()
		at := f.Offset + frameHeaderSize + (f.Len-frameHeaderSize)/2
		var one [1]byte
		if _, err := fh.ReadAt(one[:], at); err != nil {
			return err
		}
		one[0] ^= 0x04
		if _, err := fh.WriteAt(one[:], at); err != nil {
			return err
		}
		return fh.Sync()
	}
	return fmt.Errorf("%s: no whole frame with Seq=%d", path, seq)
}

// tearTail leaves a torn frame at the end of the WAL, as a crash in the
// middle of a write would: when the last frame is above the persisted
// safe_seq it is cut in half; otherwise half of a copy of it is appended
// (the first bytes of a next frame that never finished). It returns what it
// did.
func tearTail(path string, persistedSafe uint64) (string, error) {
	fs, size, err := scanWALFile(path)
	if err != nil {
		return "", err
	}
	if len(fs) == 0 {
		return "", fmt.Errorf("%s: no frames", path)
	}
	last := fs[len(fs)-1]
	if last.Offset+last.Len != size {
		return "", fmt.Errorf("%s: already has %d bytes of damage at its end", path, size-last.Offset-last.Len)
	}
	if last.Seq > persistedSafe {
		cut := last.Offset + last.Len/2
		if err := os.Truncate(path, cut); err != nil {
			return "", err
		}
		return fmt.Sprintf("cut frame Seq=%d (above persisted safe_seq %d) at offset %d of %d", last.Seq, persistedSafe, cut, size), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	frag := append([]byte(nil), b[last.Offset:last.Offset+last.Len/2]...)
	binary.LittleEndian.PutUint64(frag[8:], last.Seq+1) // what the next frame's header would have said
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	if _, err := fh.Write(frag); err != nil {
		return "", err
	}
	return fmt.Sprintf("appended %d bytes of a frame Seq=%d that never finished (last whole Seq=%d = persisted safe_seq %d)",
		len(frag), last.Seq+1, last.Seq, persistedSafe), fh.Sync()
}

// committedFramesOnDisk reads a stopped node's committed frames (up to its
// persisted safe_seq) from its WAL file, in the API's shape: the checker's
// view of a node that cannot answer any more.
func committedFramesOnDisk(n *Node) ([]wire.Frame, error) {
	safe, err := n.PersistedSafeSeq()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(n.WALPath())
	if err != nil {
		return nil, err
	}
	fs, _, err := scanWALFile(n.WALPath())
	if err != nil {
		return nil, err
	}
	var out []wire.Frame
	for _, f := range fs {
		if f.Seq > safe {
			break
		}
		h := b[f.Offset : f.Offset+f.Len]
		typ := "event"
		if f.Type == 2 {
			typ = "epoch_start"
		}
		out = append(out, wire.Frame{Seq: f.Seq, Epoch: f.Epoch, TS: time.Unix(0, int64(binary.LittleEndian.Uint64(h[24:]))).UTC(),
			Type: typ, Event: json.RawMessage(append([]byte(nil), h[frameHeaderSize:]...))})
	}
	return out, nil
}
