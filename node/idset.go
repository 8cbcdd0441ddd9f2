package node

import (
	"hash/maphash"
	"math/bits"
)

// idSet is the id index's store: client event ids in the order they were
// added (Seq order), each with its frame's Seq and epoch, and a hash table
// that finds one by id. Each id is held once, in a byte ring, and nothing in
// the set holds a pointer, so the garbage collector never scans it.
//
// Layout, all three reused as ids come and go:
//
//	ents   a ring of entries (Seq, epoch, offset and length of the id),
//	       oldest at head: 24 bytes an id
//	buf    a ring of the ids' bytes, in the entries' order; an id never
//	       wraps: one that does not fit before the end starts at 0
//	slots  open addressing with linear probing, a power of two, at most
//	       half full: 16 to 32 bytes an id. A slot holds the low 32 bits of
//	       its id's hash (above) and its entry's index in ents + 1 (below;
//	       0: empty), so probing and deleting read only the table.
//
// footprint is what the three occupy. add never lets it grow past the
// caller's bound: it reports that the set is full instead, and the caller
// forgets the oldest id (dropOldest) to make room.
//
// Not safe for concurrent use: idIndex holds its mutex.
type idSet struct {
	seed maphash.Seed

	ents []idEnt
	head int // index in ents of the oldest entry
	n    int // entries in use

	buf []byte

	slots []uint64

	keyBytes int64 // sum of the ids' lengths
}

type idEnt struct {
	seq, epoch uint64
	off, size  uint32 // the id is buf[off : off+size]
}

// idEntBytes is an entry's share of the footprint at the table's fullest
// (two slots): with the id's own bytes, what an id costs.
const idEntBytes = 24 + 2*8

const idSetMinCap = 64

func newIDSet() idSet { return idSet{seed: maphash.MakeSeed()} }

func (s *idSet) len() int { return s.n }

// footprint is the bytes the set's arrays occupy.
func (s *idSet) footprint() int64 { return footprintOf(len(s.ents), len(s.slots), len(s.buf)) }

// footprintOf is the bytes of arrays of these lengths.
func footprintOf(ents, slots, buf int) int64 { return int64(ents)*24 + int64(slots)*8 + int64(buf) }

// at returns the k-th entry, oldest first.
func (s *idSet) at(k int) *idEnt {
	i := s.head + k
	if i >= len(s.ents) {
		i -= len(s.ents)
	}
	return &s.ents[i]
}

func (s *idSet) idOf(e *idEnt) []byte { return s.buf[e.off : e.off+e.size] }

// hash32 is the part of an id's hash the table keeps.
func (s *idSet) hash32(b []byte) uint64 { return maphash.Bytes(s.seed, b) & 0xffff_ffff }

// get returns the Seq and epoch recorded for id.
func (s *idSet) get(id string) (idPos, bool) {
	if s.n == 0 {
		return idPos{}, false
	}
	h := maphash.String(s.seed, id) & 0xffff_ffff
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return idPos{}, false
		}
		if v>>32 != h {
			continue
		}
		e := &s.ents[uint32(v)-1]
		if int(e.size) == len(id) && string(s.idOf(e)) == id {
			return idPos{e.seq, e.epoch}, true
		}
	}
}

// placement returns where in buf an id of size bytes goes without growing
// it, or ok false when the ring has no room for it.
func (s *idSet) placement(size int) (off int, ok bool) {
	if s.n == 0 {
		return 0, size <= len(s.buf)
	}
	first, last := s.at(0), s.at(s.n-1)
	h, t := int(first.off), int(last.off+last.size)
	if t > h { // not wrapped: free space at the end, then before h
		if size <= len(s.buf)-t {
			return t, true
		}
		return 0, size <= h
	}
	return t, size <= h-t // wrapped: free space between t and h
}

// grown returns the array sizes needed to add an id of size bytes: the
// current ones where they have room.
func (s *idSet) grown(size int) (ents, slots, buf int) {
	ents, slots, buf = len(s.ents), len(s.slots), len(s.buf)
	if s.n == ents {
		ents = max(idSetMinCap, ents+ents/2)
	}
	if 2*(s.n+1) > slots {
		slots = max(2*idSetMinCap, 2*slots)
	}
	if _, ok := s.placement(size); !ok {
		buf = max(idSetMinCap*16, int(s.keyBytes)+size, len(s.buf)+len(s.buf)/2)
	}
	return ents, slots, buf
}

// minFootprint is the smallest footprint holding n ids of keyBytes bytes.
func minFootprint(n int, keyBytes int64) int64 {
	if n == 0 {
		return 0
	}
	return footprintOf(n, slotsFor(n), 0) + keyBytes
}

// slotsFor is the smallest table for n entries: the power of two ≥ 2n.
func slotsFor(n int) int { return 1 << bits.Len(uint(2*n-1)) }

// add appends id as the newest entry if that keeps the footprint within
// limit, growing the arrays as needed, and reports whether it did. The id
// must not be in the set.
func (s *idSet) add(id string, seq, epoch uint64, limit int64) bool {
	ents, slots, bufLen := s.grown(len(id))
	if footprintOf(ents, slots, bufLen) > limit {
		if s.n > 0 || minFootprint(1, int64(len(id))) > limit {
			return false
		}
		// Empty but sized for more than the limit allows now (a lowered
		// bound): start over small.
		*s = idSet{seed: s.seed}
		ents, slots, bufLen = s.grown(len(id))
		if footprintOf(ents, slots, bufLen) > limit {
			ents, slots, bufLen = 1, 2, len(id)
		}
	}
	if ents != len(s.ents) || bufLen != len(s.buf) {
		s.resize(ents, slots, bufLen)
	} else if slots != len(s.slots) {
		s.rehash(slots, func(i int) int { return i })
	}
	off, _ := s.placement(len(id))
	copy(s.buf[off:], id)
	i := s.head + s.n
	if i >= len(s.ents) {
		i -= len(s.ents)
	}
	s.ents[i] = idEnt{seq: seq, epoch: epoch, off: uint32(off), size: uint32(len(id))}
	s.n++
	s.keyBytes += int64(len(id))
	s.insertSlot(s.hash32(s.idOf(&s.ents[i])), i)
	return true
}

// insertSlot enters the entry at index i of ents, whose id hashes to h.
func (s *idSet) insertSlot(h uint64, i int) {
	mask := uint64(len(s.slots) - 1)
	j := h & mask
	for s.slots[j] != 0 {
		j = (j + 1) & mask
	}
	s.slots[j] = h<<32 | uint64(i+1)
}

// deleteSlot removes the entry at index i of ents from the table, shifting
// back the entries after it in its probe run (no tombstones: lookups stay
// short).
func (s *idSet) deleteSlot(i int) {
	mask := uint64(len(s.slots) - 1)
	h := s.hash32(s.idOf(&s.ents[i]))
	v := h<<32 | uint64(i+1)
	hole := h & mask
	for s.slots[hole] != v {
		hole = (hole + 1) & mask
	}
	for j := (hole + 1) & mask; s.slots[j] != 0; j = (j + 1) & mask {
		home := (s.slots[j] >> 32) & mask
		// The entry at j moves to the hole unless its home lies cyclically
		// in (hole, j]: then a lookup from its home still reaches it.
		if (j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j) {
			s.slots[hole] = s.slots[j]
			hole = j
		}
	}
	s.slots[hole] = 0
}

// oldest and newest return the entries at either end; the set is not empty.
func (s *idSet) oldest() *idEnt { return s.at(0) }
func (s *idSet) newest() *idEnt { return s.at(s.n - 1) }

// dropOldest forgets the oldest entry and returns its Seq.
func (s *idSet) dropOldest() uint64 {
	e := s.oldest()
	s.deleteSlot(s.head)
	s.keyBytes -= int64(e.size)
	seq := e.seq
	s.head++
	if s.head == len(s.ents) {
		s.head = 0
	}
	s.n--
	return seq
}

// dropNewest forgets the newest entry (a truncated frame).
func (s *idSet) dropNewest() {
	i := s.head + s.n - 1
	if i >= len(s.ents) {
		i -= len(s.ents)
	}
	s.deleteSlot(i)
	s.keyBytes -= int64(s.ents[i].size)
	s.n--
}

// resize moves the entries, oldest first, into arrays of the given sizes
// (each large enough for them) and rebuilds the table.
func (s *idSet) resize(ents, slots, bufLen int) {
	ne, nb := make([]idEnt, ents), make([]byte, bufLen)
	off := 0
	for k := 0; k < s.n; k++ {
		e := *s.at(k)
		copy(nb[off:], s.idOf(&e))
		e.off = uint32(off)
		off += int(e.size)
		ne[k] = e
	}
	head, size := s.head, len(s.ents)
	s.ents, s.buf, s.head = ne, nb, 0
	s.rehash(slots, func(i int) int {
		if i -= head; i < 0 {
			i += size
		}
		return i
	})
}

// rehash rebuilds the table with the given number of slots from the hashes
// the old one holds; newIndex maps an entry's old index in ents to its new
// one.
func (s *idSet) rehash(slots int, newIndex func(int) int) {
	old := s.slots
	s.slots = make([]uint64, slots)
	for _, v := range old {
		if v != 0 {
			s.insertSlot(v>>32, newIndex(int(uint32(v))-1))
		}
	}
}

// compact shrinks the arrays to what the entries need (with room for a
// quarter more) when they are more than twice that, or exceed limit: after
// a bound was lowered, the memory goes back.
func (s *idSet) compact(limit int64) {
	if s.n == 0 {
		if s.footprint() > 0 {
			*s = idSet{seed: s.seed}
		}
		return
	}
	need := minFootprint(s.n, s.keyBytes)
	if s.footprint() <= limit && s.footprint() <= 2*need+2*idSetMinCap*16 {
		return
	}
	ents := max(s.n, min(len(s.ents), s.n+s.n/4))
	slots := slotsFor(s.n)
	buf := max(int(s.keyBytes), min(len(s.buf), int(s.keyBytes+s.keyBytes/4)))
	if footprintOf(ents, slots, buf) > limit {
		ents, buf = s.n, int(s.keyBytes)
	}
	s.resize(ents, slots, buf)
}

// filter keeps the entries for which keep is true, in order.
func (s *idSet) filter(keep func(*idEnt) bool) {
	out := idSet{seed: s.seed}
	kept := 0
	for k := 0; k < s.n; k++ {
		if keep(s.at(k)) {
			kept++
		}
	}
	if kept == s.n {
		return
	}
	ne := make([]idEnt, max(kept, 1))
	var kb int64
	for k := 0; k < s.n; k++ {
		if e := s.at(k); keep(e) {
			ne[out.n] = *e
			out.n++
			kb += int64(e.size)
		}
	}
	// Copy the kept ids into a buffer of their own, then index them.
	nb := make([]byte, max(kb, 1))
	off := uint32(0)
	for k := 0; k < out.n; k++ {
		e := &ne[k]
		copy(nb[off:], s.idOf(e))
		e.off = off
		off += e.size
	}
	out.ents, out.buf, out.keyBytes = ne, nb, kb
	out.slots = make([]uint64, slotsFor(max(out.n, idSetMinCap)))
	for k := 0; k < out.n; k++ {
		out.insertSlot(out.hash32(out.idOf(&out.ents[k])), k)
	}
	*s = out
}
