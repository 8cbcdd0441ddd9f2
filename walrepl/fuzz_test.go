package walrepl_test

// Fuzz targets for the frame decoder and for recovery (DESIGN §10). The
// oracle for both is docs/wal-format.md as transcribed in handmade_test.go.
//
//	go test -run XXX -fuzz FuzzDecodeFrame -fuzztime 2m ./walrepl
//	go test -run XXX -fuzz FuzzRecover -fuzztime 2m ./walrepl
//
// Inputs that found bugs are kept in testdata/fuzz/<Target>/ and run with
// every `go test`.

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/autonomyops/orchestrator/walrepl"
)

// docDecode decodes the frame at the start of b as the page defines it, or
// reports that the bytes are not a whole, valid frame.
func docDecode(b []byte, maxPayload int) (hFrame, int, bool) {
	if len(b) < docFrameHeaderSize {
		return hFrame{}, 0, false
	}
	n := le.Uint32(b[0:])
	if n < 1 || int64(n) > int64(maxPayload) || int64(len(b)) < docFrameHeaderSize+int64(n) {
		return hFrame{}, 0, false
	}
	end := docFrameHeaderSize + int(n)
	if le.Uint32(b[4:]) != docCRC(b[0:4], b[8:end]) {
		return hFrame{}, 0, false
	}
	f := hFrame{
		Seq:     le.Uint64(b[8:]),
		Epoch:   le.Uint64(b[16:]),
		Time:    int64(le.Uint64(b[24:])),
		Type:    le.Uint16(b[32:]),
		Flags:   le.Uint16(b[34:]),
		Payload: b[docFrameHeaderSize:end],
	}
	// "flags, u16 = 0": a frame with other flags is not a version-1 frame.
	if f.Flags != 0 {
		return hFrame{}, 0, false
	}
	return f, end, true
}

func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range smallFrames(4) {
		f.Add(fr.encode(), false)
	}
	example := hFrame{Seq: 1, Epoch: 3, Type: docTypeEvent, Payload: []byte(`{"a":1}`)}.encode()
	f.Add(example, false)
	f.Add(example[:42], false)
	f.Add(append(append([]byte(nil), example...), 0xFF, 0x00), false)
	withFlags := hFrame{Seq: 2, Epoch: 3, Type: docTypeEvent, Flags: 1, Payload: []byte(`{}`)}.encode()
	f.Add(withFlags, false)
	f.Add(withFlags, true)
	odd := hFrame{Seq: ^uint64(0), Epoch: ^uint64(0), Time: -1, Type: 0xFFFF, Payload: []byte("not json")}.encode()
	f.Add(odd, false)
	f.Add(make([]byte, docFrameHeaderSize), false)
	f.Add(make([]byte, docFrameHeaderSize+1), true)
	f.Add([]byte{}, false)

	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC && len(b) >= docFrameHeaderSize {
			// Let the fuzzer past the checksum: recompute it per the page
			// so that structural corner cases are reached.
			n := le.Uint32(b)
			if n >= 1 && n <= docMaxPayload && int64(len(b)) >= docFrameHeaderSize+int64(n) {
				b = append([]byte(nil), b...)
				le.PutUint32(b[4:], docCRC(b[0:4], b[8:docFrameHeaderSize+int(n)]))
			}
		}
		for _, bound := range []int{walrepl.DefaultMaxPayload, 64} {
			fr, n, err := walrepl.DecodeFrame(b, bound)
			want, wantN, ok := docDecode(b, bound)
			if (err == nil) != ok {
				t.Fatalf("bound %d: DecodeFrame err=%v, the page says valid=%v for % x", bound, err, ok, b)
			}
			if err != nil {
				if n != 0 {
					t.Fatalf("bound %d: failed decode returned n=%d", bound, n)
				}
				continue
			}
			if n != wantN || n != fr.Size() || n > len(b) {
				t.Fatalf("bound %d: n=%d, Size=%d, page says %d", bound, n, fr.Size(), wantN)
			}
			if fr.Seq != want.Seq || fr.Epoch != want.Epoch || fr.Time != want.Time || uint16(fr.Type) != want.Type ||
				!bytes.Equal(fr.Payload, want.Payload) {
				t.Fatalf("bound %d: decoded %+v, the page reads %+v", bound, fr, want)
			}
			if enc := walrepl.AppendEncoded(nil, &fr); !bytes.Equal(enc, b[:n]) {
				t.Fatalf("bound %d: re-encoding differs:\n got % x\nwant % x", bound, enc, b[:n])
			}
			if enc := want.encode(); !bytes.Equal(enc, b[:n]) {
				t.Fatalf("bound %d: hand re-encoding differs", bound)
			}
		}
	})
}

// fuzzWAL builds the seed WAL for FuzzRecover: n frames (two epochs, an
// epoch-start frame) and, when torn > 0, the first torn bytes of frame n+1.
func fuzzWAL(n, torn int) (*hWAL, []byte) {
	fs := smallFrames(n + 1)
	w := buildWAL(fs[:n]...)
	next := fs[n].encode()
	return w, w.withTail(next[:torn%len(next)])
}

func FuzzRecover(f *testing.F) {
	// (frames, safe_seq, torn tail length, mutation offset, new byte)
	f.Add(uint8(3), uint8(3), uint8(0), uint16(40), byte(0x00))
	f.Add(uint8(3), uint8(3), uint8(0), uint16(0), byte('B'))
	f.Add(uint8(3), uint8(1), uint8(0), uint16(100), byte(0x7f))
	f.Add(uint8(3), uint8(2), uint8(20), uint16(1000), byte(0x01))
	f.Add(uint8(5), uint8(0), uint8(40), uint16(300), byte(0x00))
	f.Add(uint8(0), uint8(0), uint8(3), uint16(33), byte(0xFF))
	f.Add(uint8(4), uint8(4), uint8(0), uint16(8), byte(0x02))
	f.Add(uint8(4), uint8(2), uint8(0), uint16(170), byte(0x05)) // a length byte above safe_seq

	f.Fuzz(func(t *testing.T, nFrames, safe, torn uint8, off uint16, val byte) {
		n := int(nFrames % 6)
		s := uint64(safe) % uint64(n+1)
		wal, img := fuzzWAL(n, int(torn))
		pos := int(off) % len(img)
		orig := img[pos]
		img[pos] = val
		changed := orig != val
		committedEnd := int(wal.offs[s]) // the committed region is [0, end of frame s)
		inCommitted := changed && pos < committedEnd

		dir := t.TempDir()
		writeFile(t, dir, walrepl.WALFile, img)
		writeFile(t, dir, walrepl.SafeSeqFile, []byte(*safeSeq(s)))

		rep, verr := walrepl.Verify(dir, true, 0)
		if got := readFile(t, dir, walrepl.WALFile); !bytes.Equal(got, img) {
			t.Fatal("Verify changed telemetry.wal")
		}
		o, _ := testOptions(dir)
		o.Initialized = true
		w, orep, oerr := walrepl.Open(o)
		if oerr == nil {
			defer w.Close()
		}

		// Verify predicts Open exactly.
		if (verr == nil) != (oerr == nil) {
			t.Fatalf("Verify err=%v but Open err=%v", verr, oerr)
		}
		if verr != nil {
			var vre, ore *walrepl.RecoveryError
			if !errors.As(verr, &vre) || !errors.As(oerr, &ore) {
				t.Fatalf("not recovery errors: Verify %v, Open %v", verr, oerr)
			}
			if verr.Error() != oerr.Error() {
				t.Fatalf("Verify %q, Open %q", verr, oerr)
			}
			if got := readFile(t, dir, walrepl.WALFile); !bytes.Equal(got, img) {
				t.Fatal("Open changed telemetry.wal while refusing it")
			}
			return
		}

		// Accepted: nothing inside the committed region may have changed,
		// and the committed frames read back exactly as written.
		if inCommitted {
			t.Fatalf("byte %d changed %#02x→%#02x inside the committed region [0,%d) and was accepted: %+v",
				pos, orig, val, committedEnd, rep)
		}
		if rep.LastSeq < s || orep.LastSeq != rep.LastSeq || orep.EndOffset != rep.EndOffset || orep.SafeSeq != s {
			t.Fatalf("reports disagree: Verify %+v, Open %+v", rep, orep)
		}
		got, err := w.ReadFrames(1, s, int(s)+1, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != int(s) {
			t.Fatalf("%d committed frames read back, want %d", len(got), s)
		}
		for i, fr := range got {
			h := wal.frames[i]
			if fr.Seq != h.Seq || fr.Epoch != h.Epoch || fr.Time != h.Time || uint16(fr.Type) != h.Type || !bytes.Equal(fr.Payload, h.Payload) {
				t.Fatalf("committed frame %d reads back as %+v, written %+v", i+1, fr, h)
			}
		}
		// Open leaves exactly the whole frames; a torn tail is gone.
		st, err := os.Stat(filepath.Join(dir, walrepl.WALFile))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != rep.EndOffset {
			t.Fatalf("after Open the file is %d bytes, last whole frame ends at %d", st.Size(), rep.EndOffset)
		}
		if rep.TornTail != (rep.FileSize != rep.EndOffset) {
			t.Fatalf("torn tail %v but file %d, end %d", rep.TornTail, rep.FileSize, rep.EndOffset)
		}
	})
}
