//go:build integration

package integration

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

// The WAL's byte layout (docs/wal-format.md), for editing a stopped node's
// log from the host. The WAL is a chain of segment files: sealed
// telemetry-<first Seq, 20 digits>.seg, then the active telemetry.wal.
const (
	walV1HeaderSize = 32 // format version 1: one file
	walHeaderSize   = 64 // format version 2: every segment
	frameHeaderSize = 36
	activeSegment   = "telemetry.wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walFrame is where one whole, CRC-valid frame sits in a segment file.
type walFrame struct {
	Seq, Epoch uint64
	Type       uint16
	Path       string // the segment file
	Offset     int64
	Len        int64 // header + payload
}

// scanWALFile returns the whole frames of one segment file up to the first
// damage, and the file size.
func scanWALFile(path string) ([]walFrame, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < walV1HeaderSize || string(b[:8]) != "AOTELWAL" {
		return nil, int64(len(b)), fmt.Errorf("%s: no WAL header", path)
	}
	off := walHeaderSize
	if binary.LittleEndian.Uint32(b[8:]) == 1 {
		off = walV1HeaderSize // a node not yet upgraded
	}
	var out []walFrame
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
			Type: binary.LittleEndian.Uint16(b[off+32:]), Path: path, Offset: int64(off), Len: int64(frameHeaderSize + n),
		})
		off += frameHeaderSize + n
	}
	return out, int64(len(b)), nil
}

// segmentPaths lists a telemetry directory's segment files in chain order:
// sealed segments by first Seq (their names sort so), then telemetry.wal.
func segmentPaths(dir string) ([]string, error) {
	sealed, err := filepath.Glob(filepath.Join(dir, "telemetry-*.seg"))
	if err != nil {
		return nil, err
	}
	sort.Strings(sealed)
	return append(sealed, filepath.Join(dir, activeSegment)), nil
}

// scanWALDir returns the whole frames of every segment in a telemetry
// directory, in Seq order, and the size of telemetry.wal. Frames below the
// base (segments a trim left behind) and duplicates are dropped.
func scanWALDir(dir string) ([]walFrame, int64, error) {
	paths, err := segmentPaths(dir)
	if err != nil {
		return nil, 0, err
	}
	var out []walFrame
	var size int64
	for _, p := range paths {
		fs, n, err := scanWALFile(p)
		if err != nil {
			return nil, 0, err
		}
		size = n
		for _, f := range fs {
			if len(out) > 0 && f.Seq <= out[len(out)-1].Seq {
				// A truncation superseded them (the next start removes
				// them): the newer segment's frames count.
				i := sort.Search(len(out), func(i int) bool { return out[i].Seq >= f.Seq })
				out = out[:i]
			}
			out = append(out, f)
		}
	}
	return out, size, nil
}

// lastSeqOnDisk is the Seq of the last whole frame in the node's WAL.
func lastSeqOnDisk(n *Node) (uint64, error) {
	fs, _, err := scanWALDir(n.TelemetryDir())
	if err != nil {
		return 0, err
	}
	if len(fs) == 0 {
		return 0, nil
	}
	return fs[len(fs)-1].Seq, nil
}

// flipPayloadBit flips one bit in the payload of the event frame with the
// given Seq, in whichever segment of the telemetry directory holds it.
func flipPayloadBit(dir string, seq uint64) error {
	fs, _, err := scanWALDir(dir)
	if err != nil {
		return err
	}
	for _, f := range fs {
		if f.Seq != seq {
			continue
		}
		fh, err := os.OpenFile(f.Path, os.O_RDWR, 0)
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
	return fmt.Errorf("%s: no whole frame with Seq=%d", dir, seq)
}

// tearTail leaves a torn frame at the end of the WAL's active segment
// (telemetry.wal), as a crash in the middle of a write would: when its last
// frame is above the persisted safe_seq it is cut in half; otherwise half of
// a copy of the WAL's last frame is appended (the first bytes of a next frame
// that never finished). It returns what it did.
func tearTail(dir string, persistedSafe uint64) (string, error) {
	path := filepath.Join(dir, activeSegment)
	fs, _, err := scanWALDir(dir)
	if err != nil {
		return "", err
	}
	if len(fs) == 0 {
		return "", fmt.Errorf("%s: no frames", dir)
	}
	act, size, err := scanWALFile(path)
	if err != nil {
		return "", err
	}
	end := int64(walHeaderSize)
	if len(act) > 0 {
		end = act[len(act)-1].Offset + act[len(act)-1].Len
	}
	if end != size {
		return "", fmt.Errorf("%s: already has %d bytes of damage at its end", path, size-end)
	}
	last := fs[len(fs)-1]
	if last.Seq > persistedSafe && last.Path == path {
		cut := last.Offset + last.Len/2
		if err := os.Truncate(path, cut); err != nil {
			return "", err
		}
		return fmt.Sprintf("cut frame Seq=%d (above persisted safe_seq %d) at offset %d of %d", last.Seq, persistedSafe, cut, size), nil
	}
	b, err := os.ReadFile(last.Path)
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
	return fmt.Sprintf("appended %d bytes of a frame Seq=%d that never finished (last whole Seq=%d, persisted safe_seq %d)",
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
	fs, _, err := scanWALDir(n.TelemetryDir())
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	var out []wire.Frame
	for _, f := range fs {
		if f.Seq > safe {
			break
		}
		b, ok := files[f.Path]
		if !ok {
			if b, err = os.ReadFile(f.Path); err != nil {
				return nil, err
			}
			files[f.Path] = b
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
