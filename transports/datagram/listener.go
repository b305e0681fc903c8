package datagram

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/transports/stream"
)

// ListenerStats count what a listener stored and refused.
type ListenerStats struct {
	Accepted, Rejected, StoreFailed atomic.Uint64
}

// Listener receives the datagrams OpenSIPS's event_datagram sends, one
// JSON-RPC notification each, and stores their events. Datagrams carry no
// answer: one that is malformed, oversize or cannot be stored is counted
// and logged (at most one line every 10 seconds), and the next is read.
type Listener struct {
	pc         net.PacketConn
	network    string
	path       string // unix: the socket file, removed at Close
	r          evq.Raiser
	eventParam string
	logger     *slog.Logger
	stats      ListenerStats
	lastLog    atomic.Int64
	wg         sync.WaitGroup
}

// Listen starts a datagram listener on a udp:host:port or unix:/path socket.
// eventParam, if set, names the param holding the event name.
func Listen(socket string, r evq.Raiser, eventParam string, logger *slog.Logger) (*Listener, error) {
	sock, err := evq.ParseSocket(socket)
	if err != nil {
		return nil, err
	}
	var pc net.PacketConn
	switch sock.Scheme {
	case "udp":
		pc, err = net.ListenPacket("udp", sock.Addr())
	case "unix":
		os.Remove(sock.Path) // a socket file left by an earlier run
		pc, err = net.ListenPacket("unixgram", sock.Path)
	default:
		return nil, fmt.Errorf("datagram listener: %w: scheme %q (want udp: or unix:)", evq.ErrInvalidSocket, sock.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", socket, err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	l := &Listener{pc: pc, network: sock.Scheme, path: sock.Path, r: r, eventParam: eventParam, logger: logger}
	queue := make(chan *evq.Event, 4096)
	l.wg.Add(2)
	go l.read(queue)
	go l.store(queue)
	return l, nil
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.pc.LocalAddr() }

// Stats returns the listener's counters.
func (l *Listener) Stats() *ListenerStats { return &l.stats }

func (l *Listener) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	if last := l.lastLog.Load(); now-last > int64(10*time.Second) && l.lastLog.CompareAndSwap(last, now) {
		l.logger.Warn(msg, append(args, "rejected_so_far", l.stats.Rejected.Load(), "store_failed_so_far", l.stats.StoreFailed.Load())...)
	}
}

func (l *Listener) read(queue chan<- *evq.Event) {
	defer l.wg.Done()
	defer close(queue)
	buf := make([]byte, MaxPayload+1)
	for {
		n, from, err := l.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n > MaxPayload {
			l.stats.Rejected.Add(1)
			l.warn("dropped an oversize datagram", "listener", l.network, "from", fmt.Sprint(from), "limit", MaxPayload)
			continue
		}
		req, err := stream.ParseRequest(buf[:n], l.eventParam)
		if err != nil {
			l.stats.Rejected.Add(1)
			l.warn("dropped a malformed datagram", "listener", l.network, "from", fmt.Sprint(from), "err", err)
			continue
		}
		queue <- req.Event
	}
}

// store raises everything waiting in one batch, in arrival order.
func (l *Listener) store(queue <-chan *evq.Event) {
	defer l.wg.Done()
	batch := make([]*evq.Event, 0, 256)
	failed := make(map[*evq.Event]error)
	for ev := range queue {
		batch = append(batch[:0], ev)
	drain:
		for len(batch) < 1024 {
			select {
			case ev, ok := <-queue:
				if !ok {
					break drain
				}
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		stream.StoreEach(context.Background(), l.r, batch, failed)
		for ev, err := range failed {
			l.warn("a datagram's event was not stored", "listener", l.network, "event", ev.Name, "err", err)
		}
		l.stats.StoreFailed.Add(uint64(len(failed)))
		l.stats.Accepted.Add(uint64(len(batch) - len(failed)))
	}
}

// Close stops reading; events already read are stored before it returns.
func (l *Listener) Close() error {
	err := l.pc.Close()
	l.wg.Wait()
	if l.network == "unix" {
		os.Remove(l.path)
	}
	return err
}
