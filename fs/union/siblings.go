package union

import (
	"sync/atomic"
	"syscall"
)

// Cross-file readahead. Trees are mostly small files read one after the
// other in directory order (a tar, a cp -a, a build); each costs a FUSE
// READ round trip that the kernel's own squashfs does not pay. When a small
// file is read from its start, the next small siblings the kernel knows
// are decoded (their tails usually share the fragment block just decoded)
// and stored into the kernel's page cache with FUSE_NOTIFY_STORE, so
// their reads never reach the server.
//
// Only a bundle's content is pushed, and in a writable union a file can
// change once copied up: a push finishing after a write to the copy
// would leave the bundle's data in the cache. So a push marks its node
// (node.pushing), and a copy-up waits for it before the node moves to
// the copy (moveUpLocked). That wait runs in a request handler, which on
// a FUSE ring is the only thread of its CPU's queue: the push must never
// wait for the server. Its store waits only for the file's folios, which
// a READ of the file in flight holds locked; so a file is pushed only
// while no handle has it open, and an open waits for a push under way
// (openBelow): no READ of a file is in flight while it is pushed.
const (
	pushMaxFile  = 64 << 10  // files larger than this are left to ordinary readahead
	pushFiles    = 16        // siblings pushed per trigger
	pushMaxBytes = 256 << 10 // bytes pushed per trigger
)

// readaheadSiblings starts pushing the siblings after n, unless a push is
// already running (one at a time: this is opportunistic work).
func (u *Union) readaheadSiblings(n *node) {
	select {
	case u.pushing <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-u.pushing }()
		u.pushSiblings(n)
	}()
}

func (u *Union) pushSiblings(n *node) {
	name, parent := n.Parent()
	if parent == nil {
		return
	}
	p, ok := parent.Operations().(*node)
	if !ok {
		return
	}
	p.mu.Lock()
	names, i, found := p.names, 0, false
	if p.index != nil {
		i, found = p.index[name]
	}
	p.mu.Unlock()
	if !found {
		return
	}
	if u.pushBuf == nil {
		u.pushBuf = make([]byte, pushMaxFile)
	}
	buf := u.pushBuf
	files, bytes := 0, 0
	for _, sib := range names[i+1:] {
		if files >= pushFiles || bytes >= pushMaxBytes {
			return
		}
		child := parent.GetChild(sib)
		if child == nil {
			continue // the kernel has not looked it up: it cannot be stored
		}
		c, ok := child.Operations().(*node)
		if !ok || c.StableAttr().Mode != syscall.S_IFREG {
			continue
		}
		if k, ok := c.push(buf); ok {
			files++
			bytes += k
		}
	}
}

// waitPushLocked returns once no push of n's content is under way. n.mu
// is held, and let go while waiting.
func (n *node) waitPushLocked() {
	for n.pushing != nil {
		done := n.pushing
		n.mu.Unlock()
		<-done
		n.mu.Lock()
	}
}

// smallFile reports whether n is a file small enough to push.
func (n *node) smallFile() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.refs[0].e.Attr().Size <= pushMaxFile
}

// push stores the content of n, a bundle's small file not pushed before,
// into the kernel's cache, and returns its size.
func (n *node) push(buf []byte) (int, bool) {
	n.mu.Lock()
	t := n.refs[0]
	size := t.e.Attr().Size
	if n.pushed || n.opens > 0 || t.b == n.u.upper || size == 0 || size > uint64(len(buf)) {
		n.mu.Unlock()
		return 0, false
	}
	n.pushed = true
	done := make(chan struct{})
	n.pushing = done
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.pushing = nil
		n.mu.Unlock()
		close(done)
	}()
	r, err := n.reader() // a bundle's: the node cannot move up meanwhile
	if err != nil {
		return 0, false
	}
	k, _ := r.ReadAt(buf[:size], 0)
	if k != int(size) {
		return 0, false // errors surface when the file itself is read
	}
	if hook := beforeStore.Load(); hook != nil {
		(*hook)()
	}
	return k, n.WriteCache(0, buf[:k]) == 0
}

// beforeStore, if set, runs in every push between reading the file and
// storing it (tests).
var beforeStore atomic.Pointer[func()]
