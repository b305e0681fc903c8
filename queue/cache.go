package queue

import (
	"sync"

	"github.com/evq/evq"
)

// blockCache keeps the events of recently read stored blocks decoded, for
// readers that share them (ReadShared). The subscribers of one event name
// read the same blocks at about the same time; with the cache each block is
// decoded once instead of once per subscriber.
//
// Cached events are never modified. A stored block changes only when
// retention trims or deletes it: retention empties the cache after its
// commit and bumps gen. A reader caches what it read only if gen has not
// moved since before its read transaction began, so that a block read
// before a retention commit is never served after it.
type blockCache struct {
	mu      sync.Mutex
	gen     uint64
	entries map[blockRef][]evq.Event // each block's events, in seq order
	order   []blockRef               // insertion order, a ring: the oldest entry goes first
	next    int                      // where in order the next entry goes
}

// blockCacheBlocks bounds the cache: about 60 KiB per 16 KiB block of
// 256-byte events decoded, so some 8 MiB, or the 7,000-odd events before
// and after the slowest and fastest of a name's subscribers.
const blockCacheBlocks = 128

type blockRef struct {
	name string
	key  uint64 // the block's key: the seq of its last event
}

func newBlockCache() *blockCache {
	return &blockCache{entries: make(map[blockRef][]evq.Event), order: make([]blockRef, blockCacheBlocks)}
}

// generation returns the generation a reader tags its entries with.
func (c *blockCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// invalidate empties the cache: stored blocks changed.
func (c *blockCache) invalidate() {
	c.mu.Lock()
	c.gen++
	clear(c.entries)
	clear(c.order)
	c.next = 0
	c.mu.Unlock()
}

// get returns the events of block ref, or nil.
func (c *blockCache) get(ref blockRef) []evq.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[ref]
}

// put caches the events of block ref, read at generation gen.
func (c *blockCache) put(ref blockRef, gen uint64, events []evq.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if _, ok := c.entries[ref]; ok {
		return // another reader was first
	}
	delete(c.entries, c.order[c.next])
	c.order[c.next] = ref
	c.next = (c.next + 1) % len(c.order)
	c.entries[ref] = events
}

// decodeBlock decodes every event of the stored value v under key k. The
// events' strings are cut from one copy of v.
func decodeBlock(name string, k, v []byte) ([]evq.Event, error) {
	str := string(v)
	it := newBlockIter(k, v)
	var evs []evq.Event
	ps := &params{hint: blockMax / headerLen}
	for {
		seq, enc, ok, err := it.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return evs, nil
		}
		if evs == nil {
			evs = make([]evq.Event, 0, max(1, len(v)/(len(enc)+2)))
		}
		evs = append(evs, evq.Event{})
		if err := decodeInto(ps, &evs[len(evs)-1], name, seq, enc, str[it.off:it.off+len(enc)]); err != nil {
			return nil, err
		}
	}
}
