package walrepl

import (
	"fmt"
)

// progress reads, under one lock, what the replication core learns from
// the log: what is readable and fsynced, where it begins, and whether it
// failed or closed.
func (w *WAL) progress() (written, durable, base, baseEpoch, truncs uint64, closed bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writtenSeq, w.durableSeq, w.base, w.baseEpoch, uint64(len(w.truncs)), w.closed, w.failed
}

// view is the log as the replication core starts from it.
func (w *WAL) view() logView {
	w.mu.Lock()
	defer w.mu.Unlock()
	return logView{id: w.id, base: w.base, baseEpoch: w.baseEpoch, last: w.lastSeq, lastEpoch: w.lastEpoch,
		epochs: append([]EpochStart(nil), w.epochs...), written: w.writtenSeq, durable: w.durableSeq, safe: w.safeSeq,
		truncs: uint64(len(w.truncs))}
}

// CheckPayloads reports why payloads cannot become frames of this WAL:
// too large, or not JSON.
func (w *WAL) CheckPayloads(payloads [][]byte) error {
	for _, p := range payloads {
		if len(p) > w.opts.MaxPayload {
			return fmt.Errorf("%w: %d bytes (bound %d)", ErrTooLarge, len(p), w.opts.MaxPayload)
		}
		if !validJSON(p) { // json.Valid's verdict, faster (jsonvalid.go)
			return ErrInvalidPayload
		}
	}
	return nil
}

// truncations is how many truncations and rebases the log has made.
func (w *WAL) truncations() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return uint64(len(w.truncs))
}
