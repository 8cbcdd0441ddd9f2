//go:build integration

package integration

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// This kernel may lack sch_netem (tc netem: "Specified qdisc kind is
// unknown"). Delay is then injected with an iptables NFQUEUE rule and this
// userspace delayer: a netlink socket opened inside the container's network
// namespace receives each queued packet's id (metadata only) and gives the
// kernel its ACCEPT verdict after the delay. Loss uses the iptables
// statistic match.

const (
	nfnlSubsysQueue  = 3
	nfqnlMsgPacket   = 0
	nfqnlMsgVerdict  = 1
	nfqnlMsgConfig   = 2
	nfqaPacketHdr    = 1
	nfqaVerdictHdr   = 2
	nfqaCfgCmd       = 1
	nfqaCfgParams    = 2
	nfqaCfgQueueMax  = 3
	nfqaCfgMask      = 4
	nfqaCfgFlags     = 5
	nfqnlCfgCmdBind  = 1
	nfqnlCopyMeta    = 1
	nfqaCfgFFailOpen = 1
	nfAccept         = 1
	netlinkNetfilter = 12
	solNetlink       = 270
	netlinkNoENOBUFS = 5
	cloneNewNet      = 0x40000000
	sysSetns         = 308 // setns(2) on linux/amd64
	nlmFRequest      = 1
	nlmFAck          = 4
	nlmsgError       = 2
	nlmsgHdrLen      = 16
	nfgenHdrLen      = 4
	delayQueueMaxLen = 1 << 16
	delayQueueRcvBuf = 16 << 20
)

// delayQueue holds the packets of one NFQUEUE for delay ± jitter each.
type delayQueue struct {
	fd      int
	num     uint16
	delay   time.Duration
	jitter  time.Duration
	mu      sync.Mutex // socket writes, rng, timers
	rng     *rand.Rand
	timers  map[uint32]*time.Timer
	closed  bool
	done    chan struct{}
	packets int64
}

// inNetns runs fn on an OS thread switched into the network namespace of
// pid; sockets fn creates stay in that namespace.
func inNetns(pid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/self/task/" + fmt.Sprint(syscall.Gettid()) + "/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if _, _, e := syscall.RawSyscall(sysSetns, target.Fd(), cloneNewNet, 0); e != 0 {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns: %w", e)
			return
		}
		ferr := fn()
		if _, _, e := syscall.RawSyscall(sysSetns, self.Fd(), cloneNewNet, 0); e != 0 {
			// Leave the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", e))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func nlAttr(typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b := make([]byte, (l+3)&^3)
	binary.LittleEndian.PutUint16(b[0:], uint16(l))
	binary.LittleEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

func nfqMsg(msg uint16, flags uint16, queue uint16, attrs ...[]byte) []byte {
	n := nlmsgHdrLen + nfgenHdrLen
	for _, a := range attrs {
		n += len(a)
	}
	b := make([]byte, nlmsgHdrLen+nfgenHdrLen, n)
	binary.LittleEndian.PutUint32(b[0:], uint32(n))
	binary.LittleEndian.PutUint16(b[4:], nfnlSubsysQueue<<8|msg)
	binary.LittleEndian.PutUint16(b[6:], nlmFRequest|flags)
	b[16] = syscall.AF_INET // nfgenmsg.family
	b[17] = 0               // version
	binary.BigEndian.PutUint16(b[18:], queue)
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

// openDelayQueue binds NFQUEUE num in pid's network namespace.
func openDelayQueue(pid int, num uint16, delay, jitter time.Duration) (*delayQueue, error) {
	q := &delayQueue{num: num, delay: delay, jitter: jitter, rng: rand.New(rand.NewSource(time.Now().UnixNano())),
		timers: map[uint32]*time.Timer{}, done: make(chan struct{})}
	err := inNetns(pid, func() error {
		fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, netlinkNetfilter)
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		q.fd = fd
		return syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK})
	})
	if err != nil {
		if q.fd > 0 {
			syscall.Close(q.fd)
		}
		return nil, err
	}
	syscall.SetsockoptInt(q.fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, delayQueueRcvBuf)
	tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
	syscall.SetsockoptTimeval(q.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	syscall.SetsockoptInt(q.fd, solNetlink, netlinkNoENOBUFS, 1)
	cmd := []byte{nfqnlCfgCmdBind, 0, 0, syscall.AF_INET}
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params, 0)
	params[4] = nfqnlCopyMeta
	maxlen := make([]byte, 4)
	binary.BigEndian.PutUint32(maxlen, delayQueueMaxLen)
	flags := make([]byte, 4)
	binary.BigEndian.PutUint32(flags, nfqaCfgFFailOpen)
	for _, m := range [][]byte{
		nfqMsg(nfqnlMsgConfig, nlmFAck, num, nlAttr(nfqaCfgCmd, cmd)),
		nfqMsg(nfqnlMsgConfig, nlmFAck, num, nlAttr(nfqaCfgParams, params)),
		nfqMsg(nfqnlMsgConfig, nlmFAck, num, nlAttr(nfqaCfgQueueMax, maxlen)),
		nfqMsg(nfqnlMsgConfig, nlmFAck, num, nlAttr(nfqaCfgFlags, flags), nlAttr(nfqaCfgMask, flags)),
	} {
		if err := q.request(m); err != nil {
			syscall.Close(q.fd)
			return nil, err
		}
	}
	go q.run()
	return q, nil
}

// request sends a config message and waits for its ack.
func (q *delayQueue) request(m []byte) error {
	if err := syscall.Sendto(q.fd, m, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("nfqueue config: %w", err)
	}
	buf := make([]byte, 8192)
	n, _, err := syscall.Recvfrom(q.fd, buf, 0)
	if err != nil {
		return fmt.Errorf("nfqueue config ack: %w", err)
	}
	if n >= nlmsgHdrLen+4 && binary.LittleEndian.Uint16(buf[4:]) == nlmsgError {
		if code := int32(binary.LittleEndian.Uint32(buf[nlmsgHdrLen:])); code != 0 {
			return fmt.Errorf("nfqueue config: %w", syscall.Errno(-code))
		}
	}
	return nil
}

func (q *delayQueue) run() {
	defer close(q.done)
	buf := make([]byte, 1<<20)
	for {
		n, _, err := syscall.Recvfrom(q.fd, buf, 0)
		q.mu.Lock()
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return
		}
		if err != nil {
			if err == syscall.EINTR || err == syscall.ENOBUFS || err == syscall.EAGAIN {
				continue
			}
			return
		}
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.LittleEndian.Uint32(b[0:]))
			if l < nlmsgHdrLen || l > len(b) {
				break
			}
			typ := binary.LittleEndian.Uint16(b[4:])
			if typ == nfnlSubsysQueue<<8|nfqnlMsgPacket {
				if id, ok := packetID(b[nlmsgHdrLen+nfgenHdrLen : l]); ok {
					q.hold(id)
				}
			}
			b = b[(l+3)&^3:]
		}
	}
}

func packetID(attrs []byte) (uint32, bool) {
	for len(attrs) >= 4 {
		l := int(binary.LittleEndian.Uint16(attrs[0:]))
		typ := binary.LittleEndian.Uint16(attrs[2:]) & 0x7fff
		if l < 4 || l > len(attrs) {
			return 0, false
		}
		if typ == nfqaPacketHdr && l >= 8 {
			return binary.BigEndian.Uint32(attrs[4:]), true
		}
		attrs = attrs[(l+3)&^3:]
	}
	return 0, false
}

func (q *delayQueue) hold(id uint32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.verdictLocked(id)
		return
	}
	q.packets++
	d := q.delay
	if q.jitter > 0 {
		d += time.Duration(q.rng.Int63n(int64(2*q.jitter))) - q.jitter
	}
	if d < 0 {
		d = 0
	}
	q.timers[id] = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if _, ok := q.timers[id]; ok {
			delete(q.timers, id)
			q.verdictLocked(id)
		}
	})
}

func (q *delayQueue) verdictLocked(id uint32) {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v[0:], nfAccept)
	binary.BigEndian.PutUint32(v[4:], id)
	syscall.Sendto(q.fd, nfqMsg(nfqnlMsgVerdict, 0, q.num, nlAttr(nfqaVerdictHdr, v)), 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK})
}

// close accepts every held packet and closes the socket. Remove the
// NFQUEUE rule first, or new packets are dropped meanwhile (or, with
// --queue-bypass, accepted once nobody listens).
func (q *delayQueue) close() int64 {
	q.mu.Lock()
	q.closed = true
	for id, t := range q.timers {
		t.Stop()
		q.verdictLocked(id)
	}
	q.timers = map[uint32]*time.Timer{}
	n := q.packets
	q.mu.Unlock()
	<-q.done // the reader stops within its receive timeout
	syscall.Close(q.fd)
	return n
}
