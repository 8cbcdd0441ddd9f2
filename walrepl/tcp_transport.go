package walrepl

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// TCP wire protocol. A connection starts with one byte saying what it is:
//
//	'P' one PromiseRequest (gob), answered by one PromiseResponse (gob)
//	'F' one FetchRequest (gob), answered by one FetchResponse (gob)
//	'S' an append stream: length-prefixed binary AppendRequests from the
//	    leader, length-prefixed binary AppendResponses back
//
// Frames travel in their WAL encoding, so the follower checks every frame's
// CRC-32C end to end before it writes it.
const (
	connPromise = 'P'
	connFetch   = 'F'
	connStream  = 'S'

	maxMessage = 64 << 20
)

// TCPTransport dials peers over TCP (optionally TLS).
type TCPTransport struct {
	// DialTimeout bounds connecting to a peer.
	DialTimeout time.Duration
	// IdleTimeout: a stream with no message for this long is dead. Leaders
	// send heartbeats and followers answer them far more often.
	IdleTimeout time.Duration
	// TLS, when set, makes every connection mutual TLS.
	TLS *tls.Config

	refused refusals
}

// LastRefusal is the last time this node and a peer could not speak the
// same replication protocol version, either way (zero if never).
func (t *TCPTransport) LastRefusal() Refusal { return t.refused.get() }

// NewTCPTransport returns a transport with LAN timeouts.
func NewTCPTransport(tlsConf *tls.Config) *TCPTransport {
	return &TCPTransport{DialTimeout: time.Second, IdleTimeout: 2 * time.Second, TLS: tlsConf}
}

func (t *TCPTransport) dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	d := net.Dialer{Timeout: t.DialTimeout, KeepAlive: 5 * time.Second}
	var c net.Conn
	var err error
	if t.TLS != nil {
		td := tls.Dialer{NetDialer: &d, Config: t.TLS}
		c, err = td.DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c.SetWriteDeadline(time.Now().Add(t.IdleTimeout))
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	return c, nil
}

func (t *TCPTransport) roundTrip(ctx context.Context, addr string, kind byte, req, resp any) error {
	c, err := t.dial(ctx, addr, kind)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	c.SetDeadline(deadline)
	if err := gob.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	if err := gob.NewDecoder(bufio.NewReader(c)).Decode(resp); err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	return nil
}

// Promise implements Transport.
func (t *TCPTransport) Promise(ctx context.Context, addr string, req *PromiseRequest) (*PromiseResponse, error) {
	r := *req
	r.Proto = Protocol
	var resp PromiseResponse
	if err := t.roundTrip(ctx, addr, connPromise, &r, &resp); err != nil {
		return &resp, err
	}
	return &resp, t.speaks(addr, resp.Proto, resp.Refused)
}

// Fetch implements Transport.
func (t *TCPTransport) Fetch(ctx context.Context, addr string, req *FetchRequest) (*FetchResponse, error) {
	r := *req
	r.Proto = Protocol
	var resp FetchResponse
	if err := t.roundTrip(ctx, addr, connFetch, &r, &resp); err != nil {
		return &resp, err
	}
	return &resp, t.speaks(addr, resp.Proto, resp.Refused)
}

// speaks checks a peer's answer: it refused this node's version, or it
// speaks one this node does not. Either way the peer is as good as
// unreachable for the protocol, and the refusal is remembered for health.
func (t *TCPTransport) speaks(addr string, proto uint32, refused string) error {
	err := checkProto(proto)
	if refused != "" {
		err = fmt.Errorf("%w: peer %s refused this node's version %d: %s", ErrProtocolUnsupported, addr, Protocol, refused)
		proto = 0
	}
	if err == nil {
		return nil
	}
	t.refused.note(addr, proto, err)
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

// OpenStream implements Transport.
func (t *TCPTransport) OpenStream(ctx context.Context, addr string) (Stream, error) {
	c, err := t.dial(ctx, addr, connStream)
	if err != nil {
		return nil, err
	}
	s := &tcpStream{c: c, r: bufio.NewReaderSize(c, 256<<10), w: bufio.NewWriterSize(c, 256<<10), idle: t.IdleTimeout}
	s.stop = context.AfterFunc(ctx, func() { c.Close() })
	return s, nil
}

type tcpStream struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	wmu  sync.Mutex
	buf  []byte
	idle time.Duration
	stop func() bool
}

func (s *tcpStream) Send(req *AppendRequest) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.buf = encodeAppendRequest(s.buf[:0], req)
	return writeMsg(s.c, s.w, s.buf, s.idle)
}

func (s *tcpStream) Recv() (*AppendResponse, error) {
	b, err := readMsg(s.c, s.r, s.idle)
	if err != nil {
		return nil, err
	}
	return decodeAppendResponse(b)
}

func (s *tcpStream) Close() error {
	s.stop()
	return s.c.Close()
}

func writeMsg(c net.Conn, w *bufio.Writer, b []byte, idle time.Duration) error {
	var l [4]byte
	binary.LittleEndian.PutUint32(l[:], uint32(len(b)))
	c.SetWriteDeadline(time.Now().Add(idle))
	w.Write(l[:])
	w.Write(b)
	return w.Flush()
}

func readMsg(c net.Conn, r *bufio.Reader, idle time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(idle))
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(l[:])
	if n > maxMessage {
		return nil, fmt.Errorf("walrepl: message of %d bytes exceeds %d", n, maxMessage)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

// Serve accepts replication connections on ln and hands them to h until ctx
// ends. It closes ln when it returns.
func (t *TCPTransport) Serve(ctx context.Context, ln net.Listener, h Handler, log logrus.FieldLogger) error {
	idle := t.IdleTimeout
	var wg sync.WaitGroup
	conns := map[net.Conn]struct{}{}
	var mu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			err := t.serveConn(ctx, c, h, idle)
			switch {
			case err == nil || ctx.Err() != nil || errors.Is(err, io.EOF):
			case errors.Is(err, ErrProtocolUnsupported):
				t.refused.note(c.RemoteAddr().String(), 0, err)
				log.WithFields(logrus.Fields{"peer": c.RemoteAddr().String(), "protocol": fmt.Sprintf("%d..%d", MinProtocol, Protocol), "error": err.Error()}).
					Error("REPL_PROTOCOL_UNSUPPORTED: a peer speaks a replication protocol version this node does not; it is refused")
			case errors.Is(err, ErrPeerRejected):
				log.WithFields(logrus.Fields{"peer": c.RemoteAddr().String(), "error": err.Error()}).
					Warn("REPL_PEER_REJECTED: a peer connected without a certificate signed by --peer-tls-ca")
			default:
				log.WithFields(logrus.Fields{"peer": c.RemoteAddr().String(), "error": err.Error()}).Debug("REPL_CONN_CLOSED")
			}
		}()
	}
}

// ErrPeerRejected marks a connection refused by mutual TLS: the peer's
// certificate is missing or not signed by the cluster CA.
var ErrPeerRejected = errors.New("walrepl: peer rejected by mutual TLS")

func (t *TCPTransport) serveConn(ctx context.Context, c net.Conn, h Handler, idle time.Duration) error {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c.SetReadDeadline(time.Now().Add(idle))
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
				// The peer closed the connection mid-handshake, as a restarting
				// or probing peer does: not a certificate problem.
				return fmt.Errorf("walrepl: peer closed the connection during the TLS handshake: %w", err)
			}
			return fmt.Errorf("%w: %v", ErrPeerRejected, err)
		}
	}
	r := bufio.NewReaderSize(c, 256<<10)
	kind, err := r.ReadByte()
	if err != nil {
		return err
	}
	switch kind {
	case connPromise, connFetch:
		c.SetDeadline(time.Now().Add(30 * time.Second))
		dec, enc := gob.NewDecoder(r), gob.NewEncoder(c)
		if kind == connPromise {
			var req PromiseRequest
			if err := dec.Decode(&req); err != nil {
				return err
			}
			if err := checkProto(req.Proto); err != nil {
				return errors.Join(err, enc.Encode(&PromiseResponse{Proto: Protocol, Refused: err.Error()}))
			}
			resp := h.HandlePromise(ctx, &req)
			resp.Proto = Protocol
			return enc.Encode(resp)
		}
		var req FetchRequest
		if err := dec.Decode(&req); err != nil {
			return err
		}
		if err := checkProto(req.Proto); err != nil {
			return errors.Join(err, enc.Encode(&FetchResponse{Proto: Protocol, Refused: err.Error()}))
		}
		resp := h.HandleFetch(ctx, &req)
		resp.Proto = Protocol
		return enc.Encode(resp)
	case connStream:
		ss := &tcpServerStream{c: c, r: r, w: bufio.NewWriterSize(c, 64<<10), idle: idle}
		return h.HandleStream(ctx, ss)
	}
	// A connection byte this node does not know is a stream format of a
	// later protocol version.
	return fmt.Errorf("%w: connection kind %q (a later version's stream format); this node speaks %d to %d: "+
		"upgrade this node: docs/operations.md \"Upgrades\"", ErrProtocolUnsupported, kind, MinProtocol, Protocol)
}

type tcpServerStream struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	wmu  sync.Mutex
	buf  []byte
	idle time.Duration
}

func (s *tcpServerStream) Recv() (*AppendRequest, error) {
	b, err := readMsg(s.c, s.r, s.idle)
	if err != nil {
		return nil, err
	}
	return decodeAppendRequest(b)
}

func (s *tcpServerStream) Send(resp *AppendResponse) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.buf = encodeAppendResponse(s.buf[:0], resp)
	return writeMsg(s.c, s.w, s.buf, s.idle)
}

// Binary codecs of the stream messages. Little-endian, fixed fields first.

func encodeAppendRequest(b []byte, r *AppendRequest) []byte {
	b = binary.LittleEndian.AppendUint64(b, r.Epoch)
	b = binary.LittleEndian.AppendUint64(b, r.Gen)
	b = binary.LittleEndian.AppendUint64(b, r.PrevSeq)
	b = binary.LittleEndian.AppendUint64(b, r.PrevEpoch)
	b = binary.LittleEndian.AppendUint64(b, r.SafeSeq)
	b = appendString(b, r.Leader)
	var flags byte
	if r.Rebase {
		flags |= 1
	}
	if r.EpochStarted {
		flags |= 2
	}
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Frames)))
	for i := range r.Frames {
		b = AppendEncoded(b, &r.Frames[i])
	}
	return b
}

func decodeAppendRequest(b []byte) (*AppendRequest, error) {
	d := decoder{b: b}
	r := &AppendRequest{Epoch: d.u64(), Gen: d.u64(), PrevSeq: d.u64(), PrevEpoch: d.u64(), SafeSeq: d.u64(), Leader: d.str()}
	fl := d.byte()
	r.Rebase, r.EpochStarted = fl&1 != 0, fl&2 != 0
	n := d.u32()
	if d.err != nil {
		return nil, d.err
	}
	r.Frames = make([]Frame, 0, n)
	for i := uint32(0); i < n; i++ {
		f, size, err := DecodeFrame(d.b, maxMessage)
		if err != nil {
			return nil, fmt.Errorf("walrepl: frame %d of an append message: %w", i, err)
		}
		r.Frames = append(r.Frames, f)
		d.b = d.b[size:]
	}
	return r, nil
}

func encodeAppendResponse(b []byte, r *AppendResponse) []byte {
	b = binary.LittleEndian.AppendUint64(b, r.Epoch)
	b = binary.LittleEndian.AppendUint64(b, r.Gen)
	var flags byte
	for i, v := range []bool{r.OK, r.Mismatch, r.Learner} {
		if v {
			flags |= 1 << i
		}
	}
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint64(b, r.Promised)
	b = binary.LittleEndian.AppendUint64(b, r.LastSeq)
	b = binary.LittleEndian.AppendUint64(b, r.DurableSeq)
	b = binary.LittleEndian.AppendUint64(b, r.Base)
	b = binary.LittleEndian.AppendUint64(b, r.BaseEpoch)
	b = append(b, r.WALID[:]...)
	b = appendString(b, r.Error)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Epochs)))
	for _, e := range r.Epochs {
		b = binary.LittleEndian.AppendUint64(b, e.Epoch)
		b = binary.LittleEndian.AppendUint64(b, e.FirstSeq)
	}
	return b
}

func decodeAppendResponse(b []byte) (*AppendResponse, error) {
	d := decoder{b: b}
	r := &AppendResponse{Epoch: d.u64(), Gen: d.u64()}
	flags := d.byte()
	r.OK, r.Mismatch, r.Learner = flags&1 != 0, flags&2 != 0, flags&4 != 0
	r.Promised, r.LastSeq, r.DurableSeq, r.Base, r.BaseEpoch = d.u64(), d.u64(), d.u64(), d.u64(), d.u64()
	copy(r.WALID[:], d.bytes(16))
	r.Error = d.str()
	n := d.u32()
	if d.err == nil && uint64(n)*16 > uint64(len(d.b)) {
		d.err = errors.New("walrepl: truncated epoch history")
	}
	for i := uint32(0); i < n && d.err == nil; i++ {
		r.Epochs = append(r.Epochs, EpochStart{Epoch: d.u64(), FirstSeq: d.u64()})
	}
	return r, d.err
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = errors.New("walrepl: truncated message")
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte  { return d.bytes(1)[0] }
func (d *decoder) u32() uint32 { return binary.LittleEndian.Uint32(d.bytes(4)) }
func (d *decoder) u64() uint64 { return binary.LittleEndian.Uint64(d.bytes(8)) }
func (d *decoder) str() string { return string(d.bytes(int(binary.LittleEndian.Uint16(d.bytes(2))))) }
