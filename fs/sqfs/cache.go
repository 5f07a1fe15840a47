package sqfs

import (
	"sync"
)

// blockCache is a byte-bounded LRU of decoded blocks keyed by their position
// in the image. Concurrent requests for one block share a single decode
// (the first caller decodes, the others wait for it). Entries are reference
// counted so that a buffer evicted while a reader still copies from it is
// returned to its pool only when the last reader releases it.
type blockCache struct {
	mu       sync.Mutex
	maxBytes int64
	used     int64
	entries  map[uint64]*cacheEntry
	lru      cacheEntry // sentinel of the circular LRU list; lru.next is the most recent
	pool     *bufPool   // where evicted buffers go; nil to let the GC have them

	hits, misses uint64 // statistics, guarded by mu
}

type cacheEntry struct {
	key        uint64
	data       []byte
	aux        uint64 // loader-defined extra value (the on-disk size of a metadata block)
	err        error
	ready      chan struct{} // closed when data/err are set
	refs       int           // the cache's own reference counts as one while cached
	cached     bool
	prev, next *cacheEntry
}

func newBlockCache(maxBytes int64, pool *bufPool) *blockCache {
	c := &blockCache{maxBytes: maxBytes, entries: make(map[uint64]*cacheEntry), pool: pool}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// blockRef is a held reference to a decoded block; call release when done.
type blockRef struct {
	c *blockCache
	e *cacheEntry
}

func (b blockRef) bytes() []byte { return b.e.data }

func (b blockRef) aux() uint64 { return b.e.aux }

func (b blockRef) release() {
	b.c.mu.Lock()
	b.c.unref(b.e)
	b.c.mu.Unlock()
}

// get returns the block at key, decoding it with load on a miss. load returns
// a buffer the cache then owns.
func (c *blockCache) get(key uint64, load func() ([]byte, uint64, error)) (blockRef, error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		e.refs++
		c.hits++
		if e.cached {
			c.moveFront(e)
		}
		c.mu.Unlock()
		<-e.ready
		if e.err != nil {
			ref := blockRef{c, e}
			ref.release()
			return blockRef{}, e.err
		}
		return blockRef{c, e}, nil
	}
	c.misses++
	e := &cacheEntry{key: key, ready: make(chan struct{}), refs: 2} // the loader's and the map's
	c.entries[key] = e
	c.mu.Unlock()

	data, aux, err := load()

	c.mu.Lock()
	e.data, e.aux, e.err = data, aux, err
	close(e.ready)
	if err != nil {
		// Failed decodes are not cached: a later read tries again (and fails
		// again, but a transient I/O error may pass).
		delete(c.entries, key)
		e.refs -= 2
		c.mu.Unlock()
		return blockRef{}, err
	}
	e.cached = true
	c.pushFront(e)
	c.used += int64(cap(data))
	c.evict()
	c.mu.Unlock()
	return blockRef{c, e}, nil
}

// contains reports whether key is cached or being decoded.
func (c *blockCache) contains(key uint64) bool {
	c.mu.Lock()
	_, ok := c.entries[key]
	c.mu.Unlock()
	return ok
}

func (c *blockCache) evict() {
	for c.used > c.maxBytes && c.lru.prev != &c.lru {
		e := c.lru.prev
		c.unlink(e)
		e.cached = false
		delete(c.entries, e.key)
		c.used -= int64(cap(e.data))
		c.unref(e)
	}
}

func (c *blockCache) unref(e *cacheEntry) {
	e.refs--
	if e.refs == 0 && c.pool != nil && e.data != nil {
		c.pool.put(e.data)
		e.data = nil
	}
}

func (c *blockCache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.lru, c.lru.next
	e.prev.next, e.next.prev = e, e
}

func (c *blockCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *blockCache) moveFront(e *cacheEntry) {
	c.unlink(e)
	c.pushFront(e)
}

// bufPool pools buffers of one length. Their capacity has a little slack
// beyond it: decoders such as zstd's take a faster path when they may
// overwrite a few bytes past the end of the output.
type bufPool struct {
	size int
	p    sync.Pool
}

const bufSlack = 64

func newBufPool(size int) *bufPool {
	bp := &bufPool{size: size}
	bp.p.New = func() any { b := make([]byte, size, size+bufSlack); return &b }
	return bp
}

func (bp *bufPool) get() []byte { return (*bp.p.Get().(*[]byte))[:bp.size] }

func (bp *bufPool) put(b []byte) {
	if cap(b) != bp.size+bufSlack {
		return
	}
	b = b[:bp.size]
	bp.p.Put(&b)
}
