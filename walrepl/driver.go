package walrepl

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Replica runs the replication protocol for this node's WAL: as leader of
// an epoch (Lead) or as follower (HandleStream, HandlePromise, HandleFetch).
//
// It is the driver of a core (core.go): one goroutine owns the core, feeds it
// inputs (calls from the API and the transport, ticks, the WAL's progress)
// and performs what it asks, in its order: persist the promise, change the
// WAL, answer local callers, send messages. Everything else here is I/O:
// transport calls and streams run on their own goroutines and report back
// through the inbox; nothing outside the loop touches the core.
type Replica struct {
	cfg   ReplicaConfig
	wal   *WAL
	log   logrus.FieldLogger
	start time.Time

	inbox chan func()
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	ctx   context.Context // ends at Close: transport calls and streams
	quit  context.CancelFunc
	wg    sync.WaitGroup // transport goroutines

	serving atomic.Bool
	barrier atomic.Uint64

	// Owned by the loop goroutine.
	c        *core
	nextID   uint64
	nextConn uint64 // leader streams; the core numbers them
	pending  map[uint64]func(coreEvent)
	tokens   map[uint64]func(outMsg)
	leads    map[uint64]*leadRun
	conns    map[uint64]*clientConn // leader streams by conn
	served   map[uint64]*sendQueue[*AppendResponse]
	servedID uint64
}

// leadRun is the driver's side of one Lead call: its result and the writers
// waiting for their frames to commit.
type leadRun struct {
	epoch   uint64
	done    chan error
	commit  uint64
	waiters commitWaiters
}

// NewReplica loads the promise state of cfg.WAL's directory and starts the
// replica's loop. Close stops it.
func NewReplica(cfg ReplicaConfig) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = logrus.StandardLogger()
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	st, err := loadState(cfg.WAL.Dir())
	if err != nil {
		return nil, err
	}
	changed := false
	if cfg.JoinAsLearner && !st.Learner {
		st.Learner, st.LearnerUntil, changed = true, 0, true
	}
	if cfg.MinEpoch > st.PromisedEpoch {
		st.PromisedEpoch, changed = cfg.MinEpoch, true
	}
	if changed {
		if err := saveState(cfg.WAL.Dir(), st); err != nil {
			return nil, fmt.Errorf("walrepl: persisting replication state: %w", err)
		}
	}
	log := cfg.Logger.WithField("node", cfg.Name)
	if st.Learner {
		log.WithField("promised_epoch", st.PromisedEpoch).Warn("WAL_LEARNER: this node counts toward no majority until it has caught up")
	}
	ctx, quit := context.WithCancel(context.Background())
	r := &Replica{cfg: cfg, wal: cfg.WAL, log: log, start: cfg.Clock.Now(),
		inbox: make(chan func(), 1024), stop: make(chan struct{}), done: make(chan struct{}), ctx: ctx, quit: quit,
		pending: map[uint64]func(coreEvent){}, tokens: map[uint64]func(outMsg){}, leads: map[uint64]*leadRun{},
		conns: map[uint64]*clientConn{}, served: map[uint64]*sendQueue[*AppendResponse]{}}
	r.c = newCore(cfg.Name, coreConfig{
		Heartbeat: cfg.HeartbeatInterval, QuorumTimeout: cfg.QuorumTimeout, PromiseTimeout: cfg.PromiseTimeout,
		RetryInterval: 50 * time.Millisecond, MaxBatchBytes: cfg.MaxBatchBytes, MaxInflight: cfg.MaxInflight,
	}, log, st, cfg.WAL.view(), cfg.NewLog)
	go r.run()
	return r, nil
}

// Close stops the replica: a Lead in progress returns ErrClosed, streams and
// transport calls end. It does not close the WAL.
func (r *Replica) Close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
	r.wg.Wait()
}

// do runs f on the loop goroutine. It reports false if the replica stopped.
func (r *Replica) do(f func()) bool {
	select {
	case r.inbox <- f:
		return true
	case <-r.done:
		return false
	}
}

func (r *Replica) now() time.Duration { return r.cfg.Clock.Since(r.start) }

func (r *Replica) tickInterval() time.Duration {
	return max(time.Millisecond, min(10*time.Millisecond, r.cfg.HeartbeatInterval/2))
}

func (r *Replica) run() {
	defer close(r.done)
	defer r.quit()
	t := time.NewTicker(r.tickInterval())
	defer t.Stop()
	for {
		changed := r.wal.Changed()
		written, durable, base, baseEpoch, truncs, closed, err := r.wal.progress()
		if closed {
			r.shutdown(ErrClosed)
			return
		}
		r.c.progress(written, durable, base, baseEpoch, truncs, err)
		r.process()
		select {
		case f := <-r.inbox:
			f()
			for i := 0; i < 256; i++ {
				select {
				case f := <-r.inbox:
					f()
					continue
				default:
				}
				break
			}
		case <-changed:
		case <-t.C:
			r.c.tick(r.now(), r.cfg.Clock.Now().UnixNano())
		case <-r.stop:
			r.shutdown(ErrClosed)
			return
		}
		r.process()
	}
}

// shutdown ends every Lead and wait and every stream.
func (r *Replica) shutdown(cause error) {
	r.quit()
	for _, lr := range r.leads {
		r.endRun(lr, cause)
	}
	for id, cc := range r.conns {
		cc.close()
		delete(r.conns, id)
	}
	for id, q := range r.served {
		q.close(cause)
		delete(r.served, id)
	}
	for id, f := range r.pending {
		f(coreEvent{kind: evReply, id: id, err: cause})
		delete(r.pending, id)
	}
	r.serving.Store(false)
}

// process performs what the core asked, until it asks nothing more.
func (r *Replica) process() {
	for {
		rd := r.c.takeReady()
		if rd.empty() {
			break
		}
		r.perform(rd)
	}
	r.serving.Store(r.c.serving())
	r.barrier.Store(r.c.epochStartSeq())
}

func (r *Replica) perform(rd ready) {
	if rd.state != nil {
		if err := saveState(r.wal.Dir(), *rd.state); err != nil {
			r.failCore(fmt.Errorf("walrepl: persisting replication state: %w", err), rd.events)
			return
		}
	}
	for _, o := range rd.ops {
		if err := r.apply(o); err != nil {
			// The WAL refused (it fails itself when asked to drop
			// committed frames) or failed: nothing this ready still asks may
			// go out.
			r.failCore(err, rd.events)
			return
		}
	}
	for _, ev := range rd.events {
		r.deliver(ev)
	}
	for i := range rd.msgs {
		r.sendMsg(&rd.msgs[i])
	}
}

func (r *Replica) failCore(err error, events []coreEvent) {
	if werr := r.wal.Err(); werr != nil {
		err = werr // the WAL logged WAL_FAILED
	} else {
		r.log.WithField("error", err.Error()).Error("REPL_STATE_FAILED: replication stops on this node; see the error, then restart it")
	}
	for _, ev := range events {
		r.deliver(ev)
	}
	r.c.fail(err)
}

func (r *Replica) apply(o logOp) error {
	switch o.kind {
	case opAppend:
		if o.checked {
			return r.wal.appendChecked(o.frames)
		}
		return r.wal.AppendFrames(o.frames)
	case opTruncate:
		return r.wal.TruncateAfter(o.seq)
	case opRebase:
		return r.wal.Rebase(o.base, o.prevEpoch)
	case opSafe:
		r.wal.SetSafeSeq(o.seq)
	}
	return nil
}

func (r *Replica) deliver(ev coreEvent) {
	switch ev.kind {
	case evProposed, evReply:
		if f := r.pending[ev.id]; f != nil {
			delete(r.pending, ev.id)
			f(ev)
		}
	case evCommitted:
		if lr := r.leads[ev.epoch]; lr != nil {
			lr.commit = max(lr.commit, ev.seq)
			lr.waiters.release(lr.commit, nil)
		}
	case evLeadEnded:
		if lr := r.leads[ev.epoch]; lr != nil {
			lr.commit = max(lr.commit, ev.seq)
			r.endRun(lr, ev.err)
		}
	}
}

// endRun answers a Lead call and every writer still waiting in its epoch.
func (r *Replica) endRun(lr *leadRun, cause error) {
	delete(r.leads, lr.epoch)
	lr.waiters.release(lr.commit, nil)
	err := r.wal.Err()
	if err == nil {
		err = fmt.Errorf("%w (%v)", ErrUnknownOutcome, cause)
	}
	lr.waiters.release(^uint64(0), err)
	lr.done <- cause
}

func (r *Replica) sendMsg(m *outMsg) {
	switch m.kind {
	case msgPromise:
		epoch := m.promise.Epoch
		r.goRPC(func(ctx context.Context) {
			resp, err := r.cfg.Transport.Promise(ctx, m.to.Addr, m.promise)
			r.do(func() {
				if err != nil {
					r.c.promiseFailed(epoch, m.to)
				} else {
					r.c.recvPromiseResp(epoch, m.to, resp)
				}
			})
		})
	case msgFetch:
		epoch := m.fetch.Epoch
		r.goRPC(func(ctx context.Context) {
			resp, err := r.cfg.Transport.Fetch(ctx, m.to.Addr, m.fetch)
			r.do(func() {
				if err != nil {
					r.c.fetchFailed(epoch, err)
				} else {
					r.c.recvFetchResp(epoch, resp)
				}
			})
		})
	case msgPromiseResp, msgFetchResp:
		if f := r.tokens[m.token]; f != nil {
			delete(r.tokens, m.token)
			f(*m)
		}
	case msgDial:
		r.dial(m.to, m.conn)
	case msgClose:
		if cc := r.conns[m.conn]; cc != nil {
			cc.close()
			delete(r.conns, m.conn)
		}
	case msgAppend:
		r.sendAppend(m)
	case msgAppendResp:
		if q := r.served[m.conn]; q != nil {
			q.push(m.resp)
		}
	case msgServerClose:
		if q := r.served[m.conn]; q != nil {
			q.close(m.err)
			delete(r.served, m.conn)
		}
	}
}

// framesStillMeant reports whether the frames a message names (a send's or
// a fetch answer's) are still the ones the core meant: the log has made no
// truncation since (truncs is the log's count now).
func framesStillMeant(m *outMsg, truncs uint64) bool {
	if m.kind == msgAppend && m.maxFrames == 0 {
		return true // names no frames
	}
	return m.truncs == truncs
}

// goRPC runs a transport call on its own goroutine, bounded by
// PromiseTimeout and by the replica's life.
func (r *Replica) goRPC(f func(ctx context.Context)) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PromiseTimeout)
		defer cancel()
		f(ctx)
	}()
}

// sendAppend reads the frames the core named and queues the message on its
// stream; the core learns how many frames went.
func (r *Replica) sendAppend(m *outMsg) {
	req := *m.req
	cc := r.conns[m.conn]
	if cc == nil {
		r.c.appendSent(m.conn, req.Gen, req.PrevSeq+1, 0)
		return
	}
	if !framesStillMeant(m, r.wal.truncations()) {
		// A later input of this batch truncated the log: frames read now
		// would not be the ones the core meant (they may be another
		// leader's). The stream starts over.
		cc.close()
		delete(r.conns, m.conn)
		r.c.streamClosed(m.conn, errors.New("walrepl: the log was truncated under a send"))
		return
	}
	if m.maxFrames > 0 {
		frames, err := r.wal.ReadFrames(req.PrevSeq+1, m.limit, m.maxFrames, r.cfg.MaxBatchBytes)
		if err != nil {
			// Retention trimmed them meanwhile, or the WAL failed: the
			// stream starts over (the core rebases the peer from the new
			// base it learns at the next progress).
			cc.close()
			delete(r.conns, m.conn)
			r.c.streamClosed(m.conn, fmt.Errorf("walrepl: reading frames for %s at Seq=%d: %w", m.to.Name, req.PrevSeq+1, err))
			return
		}
		req.Frames = frames
	}
	cc.q.push(&req)
	r.c.appendSent(m.conn, req.Gen, req.PrevSeq+1, len(req.Frames))
}

// ---- the local API ----

// request runs f on the loop with a fresh request id whose event answers
// it, and waits for the answer.
func (r *Replica) request(f func(id uint64)) coreEvent {
	ch := make(chan coreEvent, 1)
	ok := r.do(func() {
		r.nextID++
		id := r.nextID
		r.pending[id] = func(ev coreEvent) { ch <- ev }
		f(id)
	})
	if !ok {
		return coreEvent{err: ErrClosed}
	}
	select {
	case ev := <-ch:
		return ev
	case <-r.done:
		return coreEvent{err: ErrClosed}
	}
}

// Lead runs this node as the leader of epoch until ctx ends, leadership is
// lost (a higher epoch, no quorum) or the WAL fails; it returns the cause.
// voters are the names of the cluster's voting nodes (this one included);
// peers are the other nodes with their replication addresses.
//
// Before any write is served (DESIGN §6 rule 3) it obtains promises for
// epoch from a majority of voters (rule 13: confirmed ones, or every
// voter), adopts the most up-to-date tail among them, appends the
// epoch-start frame and waits until that frame is committed.
func (r *Replica) Lead(ctx context.Context, epoch uint64, voters []string, peers []Peer) error {
	done := make(chan error, 1)
	if !r.do(func() {
		if old := r.leads[epoch]; old != nil {
			done <- fmt.Errorf("walrepl: already leading epoch %d", epoch)
			return
		}
		r.leads[epoch] = &leadRun{epoch: epoch, done: done}
		r.c.campaign(epoch, voters, peers, &r.nextConn)
	}) {
		return ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	case <-r.done:
		return ErrClosed
	}
	cause := context.Cause(ctx)
	r.do(func() { r.c.abdicate(epoch, cause) })
	select {
	case err := <-done:
		return err
	case <-r.done:
		return ErrClosed
	}
}

// Propose appends events as the leader and returns their Seqs once they are
// committed (safe_seq ≥ last). ts is the leader's timestamp for the frames.
func (r *Replica) Propose(ctx context.Context, ts int64, payloads [][]byte) (first, last uint64, err error) {
	return r.ProposeNotify(ctx, ts, payloads, nil)
}

// ProposeNotify is Propose with a callback run once the frames are in the log
// (before they are committed), with their first Seq and epoch: indexes over
// the log (idempotency ids) learn of them even if the outcome is unknown.
// The callback runs on the replica's loop: it must be quick.
func (r *Replica) ProposeNotify(ctx context.Context, ts int64, payloads [][]byte, appended func(first, epoch uint64)) (first, last uint64, err error) {
	if len(payloads) == 0 {
		return 0, 0, errors.New("walrepl: nothing to propose")
	}
	if err := r.wal.CheckPayloads(payloads); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	ev := r.request(func(id uint64) {
		r.c.propose(id, ts, payloads)
		// The event is delivered after the frames reached the WAL; the
		// waiter is registered before any later input can commit them.
		f := r.pending[id]
		r.pending[id] = func(ev coreEvent) {
			if ev.err == nil {
				// Only while the frames are still there: a later input of
				// the same batch may have truncated them (leadership lost).
				if appended != nil && r.wal.truncations() == ev.truncs {
					appended(ev.first, ev.epoch)
				}
				r.waitCommitLocked(ev.epoch, ev.last, done)
			}
			f(ev)
		}
	})
	if ev.err != nil {
		return 0, 0, ev.err
	}
	select {
	case err := <-done:
		return ev.first, ev.last, err
	case <-ctx.Done():
		return ev.first, ev.last, ctx.Err()
	case <-r.done:
		return ev.first, ev.last, ErrClosed
	}
}

// waitCommitLocked (on the loop) registers done to hear when seq commits in
// epoch, or why it never will.
func (r *Replica) waitCommitLocked(epoch, seq uint64, done chan error) {
	lr := r.leads[epoch]
	switch {
	case lr == nil:
		done <- fmt.Errorf("%w (leadership of epoch %d ended)", ErrUnknownOutcome, epoch)
	case lr.commit >= seq:
		done <- nil
	default:
		lr.waiters.push(commitWaiter{seq: seq, ch: done})
	}
}

// WaitCommitted waits, as the leader of a started epoch, until seq is
// committed. Used for an idempotent retry whose event is already in the log.
func (r *Replica) WaitCommitted(ctx context.Context, seq uint64) error {
	done := make(chan error, 1)
	ev := r.request(func(id uint64) {
		r.c.checkCommitWait(id, seq)
		f := r.pending[id]
		r.pending[id] = func(ev coreEvent) {
			if ev.ok {
				r.waitCommitLocked(ev.epoch, seq, done)
			}
			f(ev)
		}
	})
	if ev.err != nil {
		return ev.err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return ErrClosed
	}
}

// SetDraining starts (or cancels) a planned handoff: while draining, the
// leader accepts no new writes, so the target can catch up to a fixed tail.
// It reports false when this node is not leading.
func (r *Replica) SetDraining(on bool) bool {
	ev := r.request(func(id uint64) { r.c.setDraining(id, on) })
	return ev.ok
}

// Serving reports, cheaply, whether this node leads a started epoch that can
// commit (a majority heard) and is not handing over.
func (r *Replica) Serving() bool { return r.serving.Load() }

// EpochStartSeq is the Seq of the current epoch's epoch-start frame on the
// leader (0 otherwise): every frame below it came from earlier epochs.
func (r *Replica) EpochStartSeq() uint64 { return r.barrier.Load() }

// Status returns a snapshot of the replica's state.
func (r *Replica) Status() ReplicaStatus {
	ch := make(chan ReplicaStatus, 1)
	if !r.do(func() { ch <- r.c.status() }) {
		return ReplicaStatus{Role: RoleFollower}
	}
	select {
	case s := <-ch:
		return s
	case <-r.done:
		return ReplicaStatus{Role: RoleFollower}
	}
}

// ---- serving the transport ----

// HandlePromise answers a new leader's promise request (DESIGN §6 rules 2, 3).
func (r *Replica) HandlePromise(ctx context.Context, req *PromiseRequest) *PromiseResponse {
	m, ok := r.answer(ctx, func(token uint64) { r.c.recvPromise(token, req) })
	if !ok {
		return &PromiseResponse{OK: false, Node: r.cfg.Name}
	}
	return m.promiseResp
}

// HandleFetch serves frames of this node's log to the leader of the promised
// epoch, which is adopting this node's tail.
func (r *Replica) HandleFetch(ctx context.Context, req *FetchRequest) *FetchResponse {
	m, ok := r.answer(ctx, func(token uint64) { r.c.recvFetch(token, req) })
	if !ok {
		return &FetchResponse{OK: false}
	}
	return m.fetchResp
}

// answer runs f on the loop with a token for the core's reply and waits for
// it. Frames of an OK fetch are read on the loop, before anything else can
// change the log.
func (r *Replica) answer(ctx context.Context, f func(token uint64)) (outMsg, bool) {
	ch := make(chan outMsg, 1)
	if !r.do(func() {
		r.nextID++
		token := r.nextID
		r.tokens[token] = func(m outMsg) {
			if m.kind == msgFetchResp && m.fetchResp.OK {
				frames, err := r.wal.ReadFrames(m.from, m.limit, 1<<20, m.maxBytes)
				if err == nil && !framesStillMeant(&m, r.wal.truncations()) {
					err = errors.New("truncated since the answer was decided")
				}
				if err != nil {
					m.fetchResp = &FetchResponse{OK: false, Promised: m.fetchResp.Promised}
				} else {
					resp := *m.fetchResp
					resp.Frames = frames
					m.fetchResp = &resp
				}
			}
			ch <- m
		}
		f(token)
	}) {
		return outMsg{}, false
	}
	select {
	case m := <-ch:
		return m, true
	case <-ctx.Done():
	case <-r.done:
	}
	return outMsg{}, false
}

// HandleStream serves a leader's append stream: the core checks every batch
// continues this log (DESIGN §6 rule 4) and acknowledges cumulatively once
// fsynced. Answers go out on a sender goroutine, joined before return.
func (r *Replica) HandleStream(ctx context.Context, s ServerStream) error {
	q := newSendQueue[*AppendResponse]()
	var id uint64
	if !r.do(func() {
		r.servedID++
		id = r.servedID
		r.served[id] = q
	}) {
		return ErrClosed
	}
	sendDone := make(chan error, 1)
	go func() { sendDone <- q.drain(s.Send) }()
	defer func() {
		r.do(func() {
			r.c.serverClosed(id)
			delete(r.served, id)
		})
		q.close(nil)
		<-sendDone
	}()
	for {
		req, err := s.Recv()
		if qerr := q.err(); qerr != nil {
			return qerr // the core ended this stream
		}
		if err != nil {
			return err
		}
		if err := q.err(); err != nil {
			return err
		}
		if !r.do(func() { r.c.recvAppend(id, req) }) {
			return ErrClosed
		}
	}
}

// ---- leader streams ----

// clientConn is one leader→follower append stream: a sender goroutine
// drains its queue, a receiver goroutine feeds answers to the loop.
type clientConn struct {
	q      *sendQueue[*AppendRequest]
	s      Stream
	closed atomic.Bool
}

func (cc *clientConn) close() {
	if cc.closed.CompareAndSwap(false, true) {
		cc.q.close(nil)
		if cc.s != nil {
			cc.s.Close() // unblocks Recv (the Stream contract)
		}
	}
}

// dial opens stream conn to p on a goroutine; the core hears streamOpened or
// streamClosed.
func (r *Replica) dial(p Peer, conn uint64) {
	cc := &clientConn{q: newSendQueue[*AppendRequest]()}
	r.conns[conn] = cc
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		s, err := r.cfg.Transport.OpenStream(r.ctx, p.Addr)
		if err != nil {
			r.do(func() {
				delete(r.conns, conn)
				r.c.streamClosed(conn, err)
			})
			return
		}
		reg := make(chan bool, 1)
		if !r.do(func() {
			if r.conns[conn] != cc || cc.closed.Load() {
				reg <- false
				return
			}
			cc.s = s
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				if err := cc.q.drain(s.Send); err != nil {
					s.Close()
				}
			}()
			r.c.streamOpened(conn)
			reg <- true
		}) {
			s.Close()
			return
		}
		select {
		case ok := <-reg:
			if !ok {
				s.Close()
				return
			}
		case <-r.done:
			s.Close()
			return
		}
		for {
			resp, err := s.Recv()
			if err != nil {
				r.do(func() {
					if r.conns[conn] == cc {
						delete(r.conns, conn)
					}
					cc.close()
					r.c.streamClosed(conn, err)
				})
				return
			}
			if !r.do(func() { r.c.recvAppendResp(conn, resp) }) {
				return
			}
		}
	}()
}

// sendQueue hands messages from the loop to a sender goroutine without
// ever blocking the loop.
type sendQueue[T any] struct {
	mu     sync.Mutex
	items  []T
	wake   chan struct{}
	closed bool
	cause  error
}

func newSendQueue[T any]() *sendQueue[T] { return &sendQueue[T]{wake: make(chan struct{}, 1)} }

func (q *sendQueue[T]) push(m T) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, m)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close ends the queue once what it holds is sent.
func (q *sendQueue[T]) close(cause error) {
	q.mu.Lock()
	if !q.closed {
		q.closed, q.cause = true, cause
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *sendQueue[T]) err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cause
}

// drain sends until the queue is closed and empty, or send fails.
func (q *sendQueue[T]) drain(send func(T) error) error {
	for {
		q.mu.Lock()
		items, closed := q.items, q.closed
		q.items = nil
		q.mu.Unlock()
		for _, m := range items {
			if err := send(m); err != nil {
				q.close(err)
				return err
			}
		}
		if closed && len(items) == 0 {
			return q.err()
		}
		if len(items) == 0 {
			<-q.wake
		}
	}
}

// commitWaiters wakes each waiter only when its own Seq commits (not on every
// position change: with many concurrent writers that was most of the CPU).
type commitWaiters struct {
	h []commitWaiter // min-heap by seq
}

type commitWaiter struct {
	seq uint64
	ch  chan error
}

func (w *commitWaiters) push(x commitWaiter) {
	w.h = append(w.h, x)
	for i := len(w.h) - 1; i > 0; {
		p := (i - 1) / 2
		if w.h[p].seq <= w.h[i].seq {
			break
		}
		w.h[p], w.h[i] = w.h[i], w.h[p]
		i = p
	}
}

// release answers err to every waiter at or below c.
func (w *commitWaiters) release(c uint64, err error) {
	for len(w.h) > 0 && w.h[0].seq <= c {
		w.h[0].ch <- err
		last := len(w.h) - 1
		w.h[0] = w.h[last]
		w.h = w.h[:last]
		for i := 0; ; {
			l, r, m := 2*i+1, 2*i+2, i
			if l < len(w.h) && w.h[l].seq < w.h[m].seq {
				m = l
			}
			if r < len(w.h) && w.h[r].seq < w.h[m].seq {
				m = r
			}
			if m == i {
				break
			}
			w.h[m], w.h[i] = w.h[i], w.h[m]
			i = m
		}
	}
}
