package node

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/autonomyops/orchestrator/settings"
)

// defaultIDIndex has the built-in bounds.
func defaultIDIndex() *idIndex {
	return newIDIndex(settings.DefaultIdempotencyWindow, settings.DefaultIdempotencyBytes)
}

func (x *idIndex) has(id string) bool {
	_, ok := x.lookupLocked(id)
	return ok
}

// checkIDIndex verifies the set against its own order: every entry is found
// by its id at its Seq, Seqs ascend, the byte count adds up and the arrays
// stay within the byte bound.
func checkIDIndex(t *testing.T, x *idIndex) {
	t.Helper()
	s := &x.set
	var kb int64
	var prev uint64
	for k := 0; k < s.len(); k++ {
		e := s.at(k)
		id := string(s.idOf(e))
		if p, ok := s.get(id); !ok || p.seq != e.seq || p.epoch != e.epoch {
			t.Fatalf("entry %d (%q Seq %d) is found as %+v, %v", k, id, e.seq, p, ok)
		}
		if e.seq <= prev && !x.unsorted {
			t.Fatalf("entry %d Seq %d follows Seq %d", k, e.seq, prev)
		}
		prev = e.seq
		kb += int64(e.size)
	}
	// The ids lie end to end from the oldest's, wrapping to 0 at most once,
	// and never over the oldest's bytes.
	if s.len() > 0 {
		h := int(s.oldest().off)
		pos, wrapped := h, false
		for k := 0; k < s.len(); k++ {
			e := s.at(k)
			switch {
			case int(e.off) == pos:
			case !wrapped && e.off == 0 && k > 0:
				wrapped = true
			default:
				t.Fatalf("entry %d at offset %d, expected %d (wrapped %v)", k, e.off, pos, wrapped)
			}
			pos = int(e.off + e.size)
			if wrapped && pos > h || pos > len(s.buf) {
				t.Fatalf("entry %d ends at %d over the oldest id at %d (buffer %d, wrapped %v)", k, pos, h, len(s.buf), wrapped)
			}
		}
	}
	if kb != s.keyBytes {
		t.Fatalf("keyBytes %d, the entries hold %d", s.keyBytes, kb)
	}
	if f := s.footprint(); f > x.maxBytes {
		t.Fatalf("footprint %d bytes above the bound %d", f, x.maxBytes)
	}
	if s.len() > x.window {
		t.Fatalf("%d ids above the window %d", s.len(), x.window)
	}
	used := 0
	for _, v := range s.slots {
		if v != 0 {
			used++
		}
	}
	if used != s.len() {
		t.Fatalf("%d table slots in use for %d entries", used, s.len())
	}
}

func TestIDIndex_setLimitsForgetsTheOldest(t *testing.T) {
	x := defaultIDIndex()
	for i := 0; i < 3000; i++ {
		x.addLocked(fmt.Sprintf("id-%d", i), uint64(i+1), 1)
	}
	if !x.has("id-0") {
		t.Fatal("id-0 forgotten under the default window")
	}
	x.setLimits(1000, settings.DefaultIdempotencyBytes)
	if x.has("id-1999") {
		t.Fatal("id-1999 still known after the window shrank to 1000")
	}
	if !x.has("id-2000") || x.set.len() != 1000 || x.forgotten != 2000 {
		t.Fatalf("kept %d ids, forgotten up to Seq %d; want the newest 1000", x.set.len(), x.forgotten)
	}
	checkIDIndex(t, x)
}

// A leader indexes its own frames as it appends them, and later scans over
// them again: ids the window dropped must not come back.
func TestIDIndex_forgottenIdsStayForgotten(t *testing.T) {
	x := newIDIndex(1000, settings.DefaultIdempotencyBytes)
	for i := 0; i < 2001; i++ {
		x.addLocked(fmt.Sprintf("id-%d", i), uint64(i+1), 1)
	}
	for i := 0; i < 2001; i++ { // the scan
		x.addLocked(fmt.Sprintf("id-%d", i), uint64(i+1), 1)
	}
	if x.has("id-1") {
		t.Fatal("a scan brought back an id the window dropped")
	}
	if !x.has("id-2000") {
		t.Fatal("the newest id is not known")
	}
	// A retry of a forgotten id is written as a new event: its new frame
	// is indexed.
	x.addLocked("id-1", 2002, 1)
	if p, ok := x.lookupLocked("id-1"); !ok || p.seq != 2002 {
		t.Fatalf("a forgotten id written again is indexed at %+v, %v; want Seq 2002", p, ok)
	}
	checkIDIndex(t, x)
}

// The window is exact: after many windows the index holds the newest ids,
// each at its own Seq, and forgotten is the Seq just before the oldest.
func TestIDIndex_keepsTheNewestWindow(t *testing.T) {
	x := newIDIndex(1000, settings.DefaultIdempotencyBytes)
	for i := 0; i < 10_500; i++ {
		x.addLocked(fmt.Sprintf("id-%d", i), uint64(i+1), 1)
	}
	if x.set.len() != 1000 {
		t.Fatalf("%d ids, want 1000", x.set.len())
	}
	checkIDIndex(t, x)
	if id := string(x.set.idOf(x.set.newest())); id != "id-10499" || x.forgotten != x.set.oldest().seq-1 {
		t.Fatalf("newest %s, forgotten %d, oldest kept Seq %d", id, x.forgotten, x.set.oldest().seq)
	}
}

// The byte bound holds whatever the ids' sizes: the set's arrays never
// exceed it, and the ids it keeps are the newest.
func TestIDIndex_staysUnderItsByteBound(t *testing.T) {
	const bound = 1 << 20
	x := newIDIndex(10_000_000, bound)
	rng := rand.New(rand.NewPCG(1, 2))
	var ids []string
	for i := 0; i < 200_000; i++ {
		id := fmt.Sprintf("%d-%s", i, strings.Repeat("x", rng.IntN(120)))
		ids = append(ids, id)
		x.addLocked(id, uint64(i+1), 1)
		if f := x.set.footprint(); f > bound {
			t.Fatalf("after %d ids the index holds %d bytes, above its bound %d", i+1, f, bound)
		}
	}
	checkIDIndex(t, x)
	n := x.set.len()
	// About bound / (32 + 64 + 7) ids at best; growth steps may leave less.
	if n < bound/(idEntBytes+70)/2 {
		t.Fatalf("only %d ids kept under %d bytes", n, bound)
	}
	for _, id := range ids[len(ids)-n:] {
		if !x.has(id) {
			t.Fatalf("%q is among the newest %d ids but not known", id, n)
		}
	}
	if x.has(ids[len(ids)-n-1]) || x.forgotten != uint64(len(ids)-n) {
		t.Fatalf("the id just older than the kept ones: known %v, forgotten %d", x.has(ids[len(ids)-n-1]), x.forgotten)
	}
}

// The defaults fit the default window of ids of up to 64 bytes: the count
// binds, not the bytes.
func TestIDIndex_defaultBytesHoldTheDefaultWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: fills the index with 200 000 ids (make test and CI run it without -short)")
	}
	x := defaultIDIndex()
	n := settings.DefaultIdempotencyWindow
	for i := 0; i < n+10; i++ {
		id := fmt.Sprintf("%064d", i)
		x.addLocked(id, uint64(i+1), 1)
	}
	if x.set.len() != n || x.forgotten != 10 {
		t.Fatalf("%d ids kept (forgotten up to %d) of 64 bytes under the default bounds; want the window, %d", x.set.len(), x.forgotten, n)
	}
	t.Logf("%d ids of 64 bytes: %d bytes (bound %d)", n, x.set.footprint(), x.maxBytes)
	checkIDIndex(t, x)
}

// Lowering the byte bound live forgets the oldest ids and gives the memory
// back; raising it lets the index grow again.
func TestIDIndex_lowerByteBoundShrinks(t *testing.T) {
	x := defaultIDIndex()
	for i := 0; i < 100_000; i++ {
		x.addLocked(fmt.Sprintf("id-%040d", i), uint64(i+1), 1)
	}
	before := x.set.footprint()
	x.setLimits(settings.DefaultIdempotencyWindow, 1<<20)
	checkIDIndex(t, x)
	if x.set.footprint() > 1<<20 || x.set.footprint() >= before || !x.has(fmt.Sprintf("id-%040d", 99_999)) {
		t.Fatalf("footprint %d after lowering the bound to 1 MiB (was %d)", x.set.footprint(), before)
	}
	for i := 100_000; i < 110_000; i++ {
		x.addLocked(fmt.Sprintf("id-%040d", i), uint64(i+1), 1)
	}
	checkIDIndex(t, x)
	x.setLimits(settings.DefaultIdempotencyWindow, settings.DefaultIdempotencyBytes)
	for i := 110_000; i < 150_000; i++ {
		x.addLocked(fmt.Sprintf("id-%040d", i), uint64(i+1), 1)
	}
	checkIDIndex(t, x)
	if x.set.len() < 40_000 {
		t.Fatalf("%d ids after raising the bound again", x.set.len())
	}
}

// An id larger than the whole bound is forgotten at once, and the others
// stay.
func TestIDIndex_idLargerThanTheBound(t *testing.T) {
	x := newIDIndex(1000, 1<<20)
	x.addLocked("small", 1, 1)
	x.addLocked(strings.Repeat("z", 1<<20), 2, 1)
	x.addLocked("after", 3, 1)
	if !x.has("small") || !x.has("after") || x.forgotten != 2 {
		t.Fatalf("small %v, after %v, forgotten %d", x.has("small"), x.has("after"), x.forgotten)
	}
	checkIDIndex(t, x)
}

// A truncation forgets the ids above it, whichever end of the ring buffer
// they sit at; the frames written there next are indexed again.
func TestIDIndex_truncation(t *testing.T) {
	x := newIDIndex(1000, 1<<20)
	for i := 0; i < 5000; i++ {
		x.addLocked(fmt.Sprintf("id-%d", i), uint64(i+1), 1)
	}
	x.truncateLocked(4500)
	if x.has("id-4500") || !x.has("id-4499") || x.forgotten != 4000 {
		t.Fatalf("after truncating to 4500: id-4500 %v, id-4499 %v, forgotten %d", x.has("id-4500"), x.has("id-4499"), x.forgotten)
	}
	x.truncateLocked(3000) // below everything kept
	if x.set.len() != 0 || x.forgotten != 3000 {
		t.Fatalf("%d ids after truncating below them all, forgotten %d", x.set.len(), x.forgotten)
	}
	x.addLocked("id-4000", 3001, 2)
	if p, ok := x.lookupLocked("id-4000"); !ok || p != (idPos{3001, 2}) {
		t.Fatalf("the new frame's id: %+v %v", p, ok)
	}
	checkIDIndex(t, x)
}

// Ids added out of Seq order (not expected) are still truncated correctly.
func TestIDIndex_truncationUnsorted(t *testing.T) {
	x := newIDIndex(1000, 1<<20)
	x.addLocked("a", 10, 1)
	x.addLocked("b", 12, 1)
	x.addLocked("c", 11, 1)
	if !x.unsorted {
		t.Fatal("an add below the newest Seq is not noticed")
	}
	x.truncateLocked(10)
	if !x.has("a") || x.has("b") || x.has("c") {
		t.Fatalf("after truncating to 10: a %v b %v c %v", x.has("a"), x.has("b"), x.has("c"))
	}
	checkIDIndex(t, x)
}

// The byte ring at its edges: an id that just fits before the oldest wraps
// to 0, one a byte longer makes the ring grow instead of overwriting it.
func TestIDSet_ringEdges(t *testing.T) {
	x := newIDIndex(1000, 1<<20)
	id := func(i, size int) string { return fmt.Sprintf("%03d", i) + strings.Repeat("r", size-3) }
	for i := 0; i < 10; i++ {
		x.addLocked(id(i, 100), uint64(i+1), 1)
	}
	if len(x.set.buf) != 1024 {
		t.Fatalf("the test assumes a first buffer of 1024 bytes, not %d", len(x.set.buf))
	}
	x.forgetOldestLocked()
	x.forgetOldestLocked() // the oldest id now starts at 200; 24 bytes free at the end
	x.addLocked(id(10, 201), 11, 1)
	checkIDIndex(t, x)
	if len(x.set.buf) == 1024 {
		t.Fatal("201 bytes were placed in a ring with 200 free at its start")
	}

	x = newIDIndex(1000, 1<<20)
	for i := 0; i < 10; i++ {
		x.addLocked(id(i, 100), uint64(i+1), 1)
	}
	x.forgetOldestLocked()
	x.forgetOldestLocked()
	x.addLocked(id(10, 200), 11, 1) // fits exactly at 0
	checkIDIndex(t, x)
	if len(x.set.buf) != 1024 || x.set.newest().off != 0 {
		t.Fatalf("200 bytes with 200 free at the start: buffer %d, placed at %d", len(x.set.buf), x.set.newest().off)
	}
	x.addLocked("z", 12, 1) // the ring is full: it grows
	checkIDIndex(t, x)
	if len(x.set.buf) == 1024 {
		t.Fatal("an id was placed in a full ring")
	}
	for i := 0; i < 10; i++ {
		if want := i >= 2; x.has(id(i, 100)) != want {
			t.Fatalf("id %d known %v", i, !want)
		}
	}
	if !x.has(id(10, 200)) || !x.has("z") {
		t.Fatal("the wrapped ids are lost")
	}
}

// A random walk of adds, truncations and bound changes against a plain map
// of what the index must know.
func TestIDSet_randomAgainstAModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	x := newIDIndex(2000, 1<<20)
	type pos struct{ seq, epoch uint64 }
	var order []string // the model: ids oldest first
	model := map[string]pos{}
	seq, epoch := uint64(0), uint64(1)
	for step := 0; step < 200_000; step++ {
		switch r := rng.IntN(1000); {
		case r < 2 && seq > 50: // a truncation
			t0 := seq - uint64(rng.IntN(50))
			x.truncateLocked(t0)
			for len(order) > 0 && model[order[len(order)-1]].seq > t0 {
				delete(model, order[len(order)-1])
				order = order[:len(order)-1]
			}
			seq, epoch = t0, epoch+1
		case r < 3: // a bound change
			w, b := 500+rng.IntN(3000), int64(1<<20+rng.IntN(1<<20))
			x.setLimits(w, b)
		default:
			seq++
			id := fmt.Sprintf("%x%s", rng.Uint64()%5000, strings.Repeat("y", rng.IntN(200)))
			x.addLocked(id, seq, epoch)
			if _, dup := model[id]; !dup {
				if p, ok := x.lookupLocked(id); ok && p.seq == seq {
					model[id] = pos{seq, epoch}
					order = append(order, id)
				}
			}
		}
		// The model forgets what the index forgot, oldest first: the index
		// must hold exactly a suffix of the model.
		for len(order) > x.set.len() {
			delete(model, order[0])
			order = order[1:]
		}
		if step%97 == 0 {
			checkIDIndex(t, x)
			for i, id := range order {
				p, ok := x.lookupLocked(id)
				if !ok || p != (idPos(model[id])) {
					t.Fatalf("step %d: %q (the %d-th of %d) is %+v, %v in the index; the model has %+v", step, id, i, len(order), p, ok, model[id])
				}
			}
		}
	}
}

// BenchmarkIDIndex_addLookup is one ingest's index work at the default
// bounds once the window is full: a lookup of a new id, then its add (which
// forgets the oldest).
func BenchmarkIDIndex_addLookup(b *testing.B) {
	x := defaultIDIndex()
	ids := make([]string, settings.DefaultIdempotencyWindow*2)
	for i := range ids {
		ids[i] = fmt.Sprintf("b64-%d-%d-%d", i%64, i/6400, i/64%100) // unique, like the bench's
	}
	for i := 0; i < settings.DefaultIdempotencyWindow; i++ {
		x.addLocked(ids[i], uint64(i+1), 1)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := settings.DefaultIdempotencyWindow + i
		id := ids[k%len(ids)]
		if _, ok := x.lookupLocked(id); !ok {
			x.addLocked(id, uint64(k+1), 1)
		}
	}
}
