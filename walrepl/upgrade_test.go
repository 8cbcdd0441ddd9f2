package walrepl

// Upgrade in place (issue 14): a WAL written by the single-file format
// (version 1, testdata/v1, made by the code before segments) opens with this
// build, which seals it as the first segment at the first start.

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// copyFixture copies testdata/v1/<name> into a fresh directory and, for a
// trimmed one, punches the hole below its base again (git stores zeros).
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("testdata", "v1", name)
	dst := filepath.Join(t.TempDir(), "telemetry")
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "telemetry.") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if bs, ok, err := loadBase(dst); err != nil {
		t.Fatal(err)
	} else if ok && bs.Offset > 2*4096 {
		f, err := os.OpenFile(filepath.Join(dst, WALFile), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		const punchHole, keepSize = 0x02, 0x01
		if err := syscall.Fallocate(int(f.Fd()), punchHole|keepSize, 4096, bs.Offset/4096*4096-4096); err != nil {
			t.Logf("this filesystem punches no holes (%v): the fixture keeps its zeros", err)
		}
		f.Close()
	}
	return dst
}

// framesOf reads every frame of a WAL directory with ScanFrames (read-only).
func framesOf(t *testing.T, dir string) []Frame {
	t.Helper()
	var out []Frame
	_, err := ScanFrames(dir, 0, func(f *Frame, _ int64) error {
		c := *f
		c.Payload = append([]byte(nil), f.Payload...)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("ScanFrames: %v", err)
	}
	return out
}

func sameFrames(t *testing.T, what string, got, want []Frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !sameFrame(got[i], want[i]) {
			t.Fatalf("%s: frame Seq=%d differs: %+v vs %+v", what, want[i].Seq, got[i], want[i])
		}
	}
}

func TestUpgrade_v1InPlace(t *testing.T) {
	for _, tc := range []struct {
		fixture          string
		base, last, safe uint64
	}{
		{"plain", 1, 300, 297},
		{"trimmed", 1281, 2000, 1997},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			dir := copyFixture(t, tc.fixture)
			rep, err := Verify(dir, true, 0)
			if err != nil {
				t.Fatalf("Verify of the v1 WAL: %v", err)
			}
			if !rep.FormatV1 || rep.Base != tc.base || rep.FirstSeq != tc.base || rep.LastSeq != tc.last || rep.SafeSeq != tc.safe || rep.LastEpoch != 9 {
				t.Fatalf("Verify report %+v", rep)
			}
			want := framesOf(t, dir)
			if len(want) != int(tc.last-tc.base+1) || want[0].Seq != tc.base {
				t.Fatalf("v1 frames: %d from Seq=%d", len(want), want[0].Seq)
			}

			o := DefaultOptions(dir)
			o.Logger = quietLogger()
			o.Initialized = true
			o.SegmentBytes = 32 << 10
			w, orep, err := Open(o)
			if err != nil {
				t.Fatalf("Open of the v1 WAL: %v", err)
			}
			if !orep.Upgraded || orep.LastSeq != tc.last || orep.SafeSeq != tc.safe {
				t.Fatalf("Open report %+v", orep)
			}
			// The v1 file is now the first sealed segment, telemetry.wal a
			// version-2 segment chained to its last frame.
			sealed := filepath.Join(dir, SealedName(tc.base))
			h, _, err := readHeaderOf(osFS{}, sealed)
			if err != nil || h == nil || !h.V1 {
				t.Fatalf("%s: header %+v, %v", sealed, h, err)
			}
			ah, _, err := readHeaderOf(osFS{}, filepath.Join(dir, WALFile))
			if err != nil || ah == nil || ah.V1 || ah.Seg.First != tc.last+1 || ah.Seg.PrevEpoch != 9 || ah.Seg.PrevCRC == 0 || ah.ID != h.ID {
				t.Fatalf("new telemetry.wal header %+v, %v", ah, err)
			}
			got, err := w.ReadFrames(tc.base, tc.last, 1<<20, 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			sameFrames(t, "after the upgrade", got, want)
			// Writes go on in version-2 segments and roll.
			last := appendN(t, w, 10, 400, 200)
			if st := w.Status(); st.Segments < 3 || last != tc.last+400 {
				t.Fatalf("after appends: %+v", st)
			}
			w.Close()
			rep, err = Verify(dir, true, 0)
			if err != nil || rep.FormatV1 || rep.LastSeq != last || rep.Base != tc.base || rep.Segments[0].Version != 1 {
				t.Fatalf("Verify after the upgrade: %+v, %v", rep, err)
			}
			sameFrames(t, "after a restart", framesOf(t, dir)[:len(want)], want)

			// Retention deletes the sealed v1 file whole, and the base
			// no longer needs its offset.
			w = openSegWAL(t, dir, 32<<10, nil)
			nb, err := w.TrimTo(tc.last + 1)
			if err != nil || nb != tc.last+1 {
				t.Fatalf("TrimTo past the v1 segment: %d, %v", nb, err)
			}
			if fileExistsT(t, sealed) {
				t.Fatalf("%s survived the trim", sealed)
			}
			w.Close()
			bs, _, err := loadBase(dir)
			if err != nil || bs.Base != tc.last+1 || bs.Offset != 0 || bs.PrevEpoch != 9 {
				t.Fatalf("telemetry.base after the trim: %+v, %v", bs, err)
			}
			if rep, err := Verify(dir, true, 0); err != nil || rep.Base != tc.last+1 || rep.LastSeq != last {
				t.Fatalf("Verify after the trim: %+v, %v", rep, err)
			}
		})
	}
}

func fileExistsT(t *testing.T, p string) bool {
	t.Helper()
	ok, err := exists(p)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// A crash at any point of the upgrade's roll leaves a directory the next
// start upgrades, with nothing lost and no operator action.
func TestUpgrade_crashDuringUpgrade(t *testing.T) {
	for _, point := range []string{"roll-after-next", "roll-after-link", "roll-after-rename"} {
		t.Run(point, func(t *testing.T) {
			dir := copyFixture(t, "trimmed")
			want := framesOf(t, dir)
			o := DefaultOptions(dir)
			o.Logger = quietLogger()
			o.Initialized = true
			o.Inject = func(p string) error {
				if p == point {
					return errors.New("injected crash at " + p)
				}
				return nil
			}
			if w, _, err := Open(o); err == nil {
				w.Close()
				t.Fatalf("the upgrade went through %s", point)
			}
			// What a crash there leaves is a state recovery accepts.
			rep, err := Verify(dir, true, 0)
			if err != nil {
				t.Fatalf("Verify after a crash at %s: %v", point, err)
			}
			t.Logf("after a crash at %s: v1=%v repairs=%q", point, rep.FormatV1, rep.Repairs)
			o.Inject = nil
			w, orep, err := Open(o)
			if err != nil {
				t.Fatalf("restart after a crash at %s: %v", point, err)
			}
			defer w.Close()
			if orep.LastSeq != 2000 || orep.SafeSeq != 1997 {
				t.Fatalf("report %+v", orep)
			}
			got, err := w.ReadFrames(1281, 2000, 1<<20, 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			sameFrames(t, "after the restart", got, want)
			names, _ := segFiles(t, dir)
			if len(names) != 2 || fileExistsT(t, filepath.Join(dir, NextFile)) {
				t.Fatalf("files after the restart: %v", names)
			}
		})
	}
}

// Path 1 on a v1 WAL: no safe_seq is the runbook's refusal; the variable
// treats every frame as committed and the start upgrades the file.
func TestUpgrade_v1LegacyPath1AndTornTail(t *testing.T) {
	dir := copyFixture(t, "plain")
	if err := os.Remove(filepath.Join(dir, SafeSeqFile)); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, WALFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{40, 0, 0, 0, 1, 2, 3}) // a torn frame
	f.Close()
	o := DefaultOptions(dir)
	o.Logger = quietLogger()
	o.Initialized = true
	if _, _, err := Open(o); err == nil || !strings.Contains(err.Error(), "safe_seq missing in steady-state") {
		t.Fatalf("without the variable: %v", err)
	}
	o.LegacyUpgrade = true
	w, rep, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !rep.LegacyUpgraded || !rep.Upgraded || !rep.TornTail || rep.SafeSeq != 300 || w.SafeSeq() != 300 {
		t.Fatalf("report %+v", rep)
	}
}

// fixtureSanity guards the fixtures themselves: they are version 1.
func TestUpgrade_fixturesAreVersion1(t *testing.T) {
	for _, name := range []string{"plain", "trimmed"} {
		f, err := os.Open(filepath.Join("testdata", "v1", name, WALFile))
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, FileHeaderSize)
		if _, err := io.ReadFull(f, b); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if h, err := decodeFileHeader(b); err != nil || h.Version != 1 {
			t.Fatalf("%s: %v %+v", name, err, h)
		}
	}
}
