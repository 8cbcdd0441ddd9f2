package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
)

// frames returns frames first..last, in epoch 7 then 9 from Seq 5 on, with
// Seq 5 an epoch-start frame.
func frames(first, last uint64) []walrepl.Frame {
	var out []walrepl.Frame
	for s := first; s <= last; s++ {
		f := walrepl.Frame{Seq: s, Epoch: 7, Time: int64(s) * 1e9, Type: walrepl.FrameEvent,
			Payload: []byte(fmt.Sprintf(`{"id":"e%d","kind":"k","pad":%q}`, s, strings.Repeat("x", int(s%50))))}
		if s >= 5 {
			f.Epoch = 9
		}
		if s == 5 {
			f.Type, f.Payload = walrepl.FrameEpochStart, []byte(`{"epoch":9}`)
		}
		out = append(out, f)
	}
	return out
}

func header(first, safe uint64) Header {
	h := Header{ClusterName: "c1", Node: "n1", TakenAt: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC),
		SafeSeq: safe, FirstSeq: first, LeaderEpoch: 9}
	if first > 1 {
		h.PrevEpoch = 7
	}
	return h
}

var testEtcd = EtcdState{Revision: 42,
	Settings: []KV{{Key: "config/ingest/max_batch", Value: []byte(`500`)}},
	Audit:    []KV{{Key: "audit/00000000000000000001-n1", Value: []byte(`{"action":"settings_put"}`)}},
	Members:  []KV{{Key: "members/n1", Value: []byte(`{"name":"n1"}`)}},
	WALPos:   []KV{{Key: "walpos/n1", Value: []byte(`{"wal_id":"ab","durable":3}`)}}}

// build writes a snapshot of frames first..safe, batchSize frames a call.
func build(t *testing.T, first, safe uint64, batch int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, header(first, safe), testEtcd, []byte(`{"fleet":{"up_to":3}}`))
	if err != nil {
		t.Fatal(err)
	}
	fs := frames(first, safe)
	for len(fs) > 0 {
		n := min(batch, len(fs))
		if err := w.WriteFrames(fs[:n]); err != nil {
			t.Fatal(err)
		}
		fs = fs[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshot_roundTrip(t *testing.T) {
	for _, tc := range []struct {
		name        string
		first, safe uint64
	}{{"from1", 1, 40}, {"trimmed", 3, 40}, {"empty", 1, 0}, {"allTrimmed", 11, 10}} {
		t.Run(tc.name, func(t *testing.T) {
			b := build(t, tc.first, tc.safe, 7)
			var got []walrepl.Frame
			sum, err := Scan(bytes.NewReader(b), func(fs []walrepl.Frame) error {
				for _, f := range fs {
					f.Payload = append([]byte(nil), f.Payload...)
					got = append(got, f)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := frames(tc.first, tc.safe)
			if len(got) != len(want) || sum.Frames != uint64(len(want)) {
				t.Fatalf("got %d frames (summary %d), want %d", len(got), sum.Frames, len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.Seq != w.Seq || g.Epoch != w.Epoch || g.Time != w.Time || g.Type != w.Type || !bytes.Equal(g.Payload, w.Payload) {
					t.Fatalf("frame %d: got %+v, want %+v", i, g, w)
				}
			}
			if sum.Header.SafeSeq != tc.safe || sum.Header.FirstSeq != tc.first || sum.Header.FormatVersion != Version ||
				sum.Header.ClusterName != "c1" || !sum.Header.TakenAt.Equal(header(1, 1).TakenAt) {
				t.Errorf("header %+v", sum.Header)
			}
			if sum.Size != int64(len(b)) || len(sum.SHA256) != 64 {
				t.Errorf("size %d (file %d), sha %q", sum.Size, len(b), sum.SHA256)
			}
			if len(sum.Etcd.Settings) != 1 || len(sum.Etcd.Audit) != 1 || len(sum.Etcd.Members) != 1 || len(sum.Etcd.WALPos) != 1 ||
				sum.Etcd.Revision != 42 || string(sum.Etcd.Settings[0].Value) != "500" {
				t.Errorf("etcd state %+v", sum.Etcd)
			}
			if string(sum.Checkpoint) != `{"fleet":{"up_to":3}}` {
				t.Errorf("checkpoint %s", sum.Checkpoint)
			}
			if len(want) > 0 && (sum.FirstSeq != tc.first || sum.LastSeq != tc.safe) {
				t.Errorf("first/last %d/%d", sum.FirstSeq, sum.LastSeq)
			}
		})
	}
}

// Every proper prefix of a valid file is refused as truncated, and every
// single flipped byte as corrupt (or, in the version field, as a version it
// does not read): the checksum and the structure leave no byte unchecked.
func TestSnapshot_everyTruncationAndFlipRefused(t *testing.T) {
	b := build(t, 1, 12, 5)
	for n := 0; n < len(b); n++ {
		_, err := Scan(bytes.NewReader(b[:n]), nil)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix of %d/%d bytes: got %v, want ErrTruncated", n, len(b), err)
		}
	}
	for i := 0; i < len(b); i++ {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		_, err := Scan(bytes.NewReader(c), nil)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: got %v, want ErrCorrupt", i, err)
		}
	}
}

func TestSnapshot_refusals(t *testing.T) {
	good := build(t, 1, 12, 5)
	withVersion := func(v uint32) []byte {
		c := bytes.Clone(good)
		binary.LittleEndian.PutUint32(c[8:], v)
		return c
	}
	for _, tc := range []struct {
		name string
		b    []byte
		is   error
		says string
	}{
		{"empty", nil, ErrTruncated, "empty"},
		{"notSnapshot", []byte(`{"hello":"world"} and more bytes`), ErrCorrupt, "not an autonomy snapshot"},
		{"version2", withVersion(2), ErrVersion, "format version 2"},
		{"trailingGarbage", append(bytes.Clone(good), 0), ErrCorrupt, "follow the trailer"},
		{"cutBeforeTrailer", good[:len(good)-recordHead-TrailerSize], ErrTruncated, "without its trailer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Scan(bytes.NewReader(tc.b), nil)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want %v saying %q", err, tc.is, tc.says)
			}
		})
	}
}

// A file whose structure is sound but whose Seqs skip one (written by hand,
// with a matching checksum) is refused for the gap, not accepted.
func TestSnapshot_seqGapRefused(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, header(1, 4), testEtcd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrames(frames(1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrames(frames(4, 4)); err == nil {
		t.Fatal("the writer accepted Seq=4 after Seq=2")
	}
	// Hand-made: the same records, the gap, and a trailer that matches.
	w2 := &bytes.Buffer{}
	sw, _ := NewWriter(w2, header(1, 4), testEtcd, nil)
	sw.Flush()
	var body []byte
	for _, f := range append(frames(1, 2), frames(4, 4)...) {
		body = walrepl.AppendEncoded(body, &f)
	}
	sw.record(RecFrames, body)
	sw.frames, sw.next = 3, 5
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Scan(bytes.NewReader(w2.Bytes()), nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "frame Seq=4 follows Seq=2 (expected 3)") {
		t.Fatalf("got %v", err)
	}
}

func TestWriter_refusesToEndEarly(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, header(1, 10), testEtcd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrames(frames(1, 9)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close wrote a trailer before safe_seq")
	}
	if _, err := Scan(bytes.NewReader(buf.Bytes()), nil); !errors.Is(err, ErrTruncated) {
		t.Fatalf("the unfinished file scans as %v, want truncated", err)
	}
	if _, err := NewWriter(&buf, header(12, 10), testEtcd, nil); err == nil {
		t.Fatal("first Seq above safe_seq+1 accepted")
	}
	w3, _ := NewWriter(&bytes.Buffer{}, header(1, 10), testEtcd, nil)
	if err := w3.WriteFrames(frames(1, 11)); err == nil {
		t.Fatal("a frame above safe_seq accepted")
	}
}

func TestScan_visitErrorStops(t *testing.T) {
	b := build(t, 1, 30, 4)
	boom := errors.New("disk full")
	calls := 0
	_, err := Scan(bytes.NewReader(b), func([]walrepl.Frame) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("got %v after %d calls", err, calls)
	}
}
