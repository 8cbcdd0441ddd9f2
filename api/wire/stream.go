package wire

// POST /v1/telemetry/stream (docs/api.md): the request body is NDJSON, one
// batch a line (one event object or a JSON array of them, as the body of POST
// /v1/telemetry/events); the answer is NDJSON too, one StreamAnswer per
// request line, in line order.

// Window of a stream: how many request lines the leader reads and submits
// before their answers (query parameter window).
const (
	StreamWindowDefault = 64
	StreamWindowMax     = 1024
)

// StreamAnswer is one line of the answer of POST /v1/telemetry/stream: the
// answer to request line Line (1-based, blank lines not counted). Either
// Seqs and SafeSeq (every event of the line is committed: fsynced by a
// majority), or Error.
type StreamAnswer struct {
	Line    int          `json:"line"`
	Seqs    []uint64     `json:"seqs,omitempty"`
	SafeSeq uint64       `json:"safe_seq,omitempty"`
	Error   *StreamError `json:"error,omitempty"`
}

// StreamError is why a line was not acknowledged: the code and message the
// error table gives POST /v1/telemetry/events for the same cause.
type StreamError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
