package union

import (
	"syscall"
)

// Cross-file readahead. Trees are mostly small files read one after the
// other in directory order (a tar, a cp -a, a build); each costs a FUSE
// READ round trip that the kernel's own squashfs does not pay. When a small
// file is read from its start, the next small siblings the kernel knows
// are decoded (their tails usually share the fragment block just decoded)
// and stored into the kernel's page cache with FUSE_NOTIFY_STORE, so
// their reads never reach the server.
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
		size := c.top().e.Attr().Size
		if size == 0 || size > pushMaxFile {
			continue
		}
		c.mu.Lock()
		done := c.pushed
		c.pushed = true
		c.mu.Unlock()
		if done {
			continue
		}
		r, err := c.reader()
		if err != nil {
			continue
		}
		k, err := r.ReadAt(buf[:size], 0)
		if k != int(size) {
			continue // errors surface when the file itself is read
		}
		if child.WriteCache(0, buf[:k]) != 0 {
			continue
		}
		files++
		bytes += k
	}
}
