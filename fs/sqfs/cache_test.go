package sqfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/livefs/livefs/internal/sqfstest"
)

// filled returns a loader that takes a buffer from the pool, fills it with
// b and counts its calls.
func filled(pool *bufPool, b byte, calls *atomic.Int32) func() ([]byte, uint64, error) {
	return func() ([]byte, uint64, error) {
		calls.Add(1)
		buf := pool.get()
		for i := range buf {
			buf[i] = b
		}
		return buf, uint64(b), nil
	}
}

// TestCacheSingleDecode has many goroutines ask for one block at once: the
// loader must run once and every caller must see its result.
func TestCacheSingleDecode(t *testing.T) {
	pool := newBufPool(4096)
	c := newBlockCache(1<<20, pool)
	var calls atomic.Int32
	release := make(chan struct{})
	load := func() ([]byte, uint64, error) {
		calls.Add(1)
		<-release // hold the decode until every goroutine has asked
		b := pool.get()
		b[0] = 42
		return b, 7, nil
	}
	const n = 64
	var started, done sync.WaitGroup
	started.Add(n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			ref, err := c.get(100, load)
			if err != nil {
				errs <- err
				return
			}
			if ref.bytes()[0] != 42 || ref.aux() != 7 {
				errs <- fmt.Errorf("got block %d aux %d, want 42 and 7", ref.bytes()[0], ref.aux())
			}
			ref.release()
		}()
	}
	started.Wait()
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("loader ran %d times, want 1", got)
	}
	if c.hits+c.misses != n || c.misses != 1 {
		t.Errorf("hits %d misses %d, want %d and 1", c.hits, c.misses, n-1)
	}
	if e := c.entries[100]; e == nil || e.refs != 1 {
		t.Errorf("cached entry %+v, want one held only by the cache", e)
	}
}

// TestCacheEviction fills a cache past its bound: the bytes it holds stay
// within it and the most recently used blocks stay.
func TestCacheEviction(t *testing.T) {
	const bs, max = 4096, 10 * (4096 + bufSlack) // the cache counts capacity, slack included
	pool := newBufPool(bs)
	c := newBlockCache(max, pool)
	var calls atomic.Int32
	for i := 0; i < 100; i++ {
		ref, err := c.get(uint64(i), filled(pool, byte(i), &calls))
		if err != nil {
			t.Fatal(err)
		}
		ref.release()
		// Keep block 0 recently used.
		ref, err = c.get(0, filled(pool, 0, &calls))
		if err != nil {
			t.Fatal(err)
		}
		ref.release()
		if c.used > max || len(c.entries) > max/(bs+bufSlack) {
			t.Fatalf("after %d blocks: %d bytes in %d entries, want <= %d", i+1, c.used, len(c.entries), max)
		}
	}
	if got := calls.Load(); got != 100 {
		t.Errorf("loader ran %d times, want 100 (block 0 must never be evicted)", got)
	}
	for _, k := range []uint64{0, 99, 91} {
		if !c.contains(k) {
			t.Errorf("recent block %d was evicted", k)
		}
	}
	if c.contains(89) {
		t.Error("old block 89 is still cached")
	}
	// The LRU list holds exactly the map's entries.
	n := 0
	for e := c.lru.next; e != &c.lru; e = e.next {
		if c.entries[e.key] != e {
			t.Errorf("LRU entry %d is not in the map", e.key)
		}
		n++
	}
	if n != len(c.entries) {
		t.Errorf("LRU has %d entries, map %d", n, len(c.entries))
	}
}

// TestCacheHeldBuffers evicts blocks while references to them are held: a
// held buffer must not go back to the pool (and be overwritten by a later
// decode) until released. Run with -race.
func TestCacheHeldBuffers(t *testing.T) {
	const bs = 4096
	pool := newBufPool(bs)
	c := newBlockCache(2*bs, pool) // room for two blocks
	var calls atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			var held []blockRef
			for i := 0; i < 2000; i++ {
				k := rng.Intn(40)
				ref, err := c.get(uint64(k), filled(pool, byte(k), &calls))
				if err != nil {
					t.Error(err)
					return
				}
				held = append(held, ref)
				if len(held) > 5 || rng.Intn(3) == 0 {
					// Check a held block is intact, then let it go.
					j := rng.Intn(len(held))
					h := held[j]
					want := byte(h.aux())
					for _, b := range h.bytes() {
						if b != want {
							t.Errorf("held block %d was overwritten with %d", want, b)
							break
						}
					}
					h.release()
					held = append(held[:j], held[j+1:]...)
				}
			}
			for _, h := range held {
				h.release()
			}
		}()
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used > 2*bs {
		t.Errorf("cache holds %d bytes, want <= %d", c.used, 2*bs)
	}
	for k, e := range c.entries {
		if e.refs != 1 {
			t.Errorf("entry %d has %d references after every reader released it, want 1", k, e.refs)
		}
	}
}

// TestCacheFailedLoad checks that a failed decode is reported to every
// waiter and not cached: the next get decodes again.
func TestCacheFailedLoad(t *testing.T) {
	pool := newBufPool(4096)
	c := newBlockCache(1<<20, pool)
	errBad := errors.New("bad block")
	var calls atomic.Int32
	release := make(chan struct{})
	failing := func() ([]byte, uint64, error) {
		calls.Add(1)
		<-release
		return nil, 0, errBad
	}
	const n = 16
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.get(5, failing); errors.Is(err, errBad) {
				failed.Add(1)
			}
		}()
	}
	for !c.contains(5) {
		// wait for the decode to start
	}
	close(release)
	wg.Wait()
	// Goroutines that asked after the failure started a decode of their own.
	if failed.Load() != n {
		t.Errorf("%d of %d gets failed, want all", failed.Load(), n)
	}
	if c.contains(5) {
		t.Fatal("failed block is cached")
	}
	before := calls.Load()
	ref, err := c.get(5, filled(pool, 5, &calls))
	if err != nil {
		t.Fatal(err)
	}
	if ref.bytes()[0] != 5 || calls.Load() != before+1 {
		t.Errorf("second get: block %d after %d loads, want a new decode", ref.bytes()[0], calls.Load()-before)
	}
	ref.release()
	if c.used != 4096+bufSlack || len(c.entries) != 1 {
		t.Errorf("cache holds %d bytes in %d entries, want one block", c.used, len(c.entries))
	}
}

// TestConcurrentFileReads reads a large file from many goroutines at random
// offsets and sizes, and sequentially (with readahead), through a small
// cache, comparing every byte with the source. Run with -race.
func TestConcurrentFileReads(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	data := make([]byte, 3<<20+1234)
	for i := 0; i < len(data); {
		// Runs of random and repeated bytes: compressed and raw blocks.
		n := min(len(data)-i, 1+rng.Intn(20000))
		if rng.Intn(2) == 0 {
			rng.Read(data[i : i+n])
		} else {
			for j := range n {
				data[i+j] = byte(j % 7)
			}
		}
		i += n
	}
	if err := os.WriteFile(filepath.Join(src, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "img.sqfs")
	sqfstest.Mksquashfs(t, src, img, "-b", "4096", "-comp", "zstd")
	r, err := Open(img, &Options{CacheBytes: 16 * 4096, Readahead: 8, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ino, err := r.Lookup(r.Root(), "big")
	if err != nil {
		t.Fatal(err)
	}
	fr, err := r.OpenFile(ino)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			buf := make([]byte, 64<<10)
			if g < 2 {
				// Sequential readers on their own FileReader: readahead.
				own, _ := r.OpenFile(ino)
				got, err := io.ReadAll(io.NewSectionReader(own, 0, own.Size()))
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("sequential read: %d bytes, %v; want the source's %d", len(got), err, len(data))
				}
				return
			}
			for i := 0; i < 300; i++ {
				off := rng.Int63n(int64(len(data)) + 100)
				p := buf[:rng.Intn(len(buf))+1]
				n, err := fr.ReadAt(p, off)
				want := data[min(off, int64(len(data))):min(off+int64(len(p)), int64(len(data)))]
				if (err != nil && err != io.EOF) || (err == nil && n != len(p)) || !bytes.Equal(p[:n], want) {
					t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d bytes of the source", len(p), off, n, err, len(want))
					return
				}
			}
		}()
	}
	wg.Wait()
	if hits, misses := r.CacheStats(); misses == 0 || hits == 0 {
		t.Errorf("cache hits %d misses %d: the test should exercise both", hits, misses)
	}
}
