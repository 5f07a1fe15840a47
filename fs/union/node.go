package union

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/sqfs"
)

// node is a union inode served over FUSE.
type node struct {
	fs.Inode
	u  *Union
	id uint64 // union inode number, fixed when the node is made (copy-up keeps it)

	mu sync.Mutex
	// refs are the layers behind the node, top first. A ref to the changes
	// layer names its entry by path, which renames of any ancestor change:
	// layers() renews it from the node's place in the tree.
	refs   []layerRef
	r      FileReader // regular files: opened on first read
	pushed bool       // regular files: content already stored in the kernel's page cache
	// pushing is closed when a push of the node's content from a bundle
	// into the kernel's cache, under way, is done (see siblings.go).
	pushing chan struct{}
	names   []string       // directories: the last listing, for cross-file readahead
	index   map[string]int // directories: position of each name in names
	// cachedOpens counts the open handles that go through the kernel's
	// page cache (not passthrough); see openWritable.
	cachedOpens int
	opens       int      // open handles of every kind
	anchor      *os.File // an orphan's file in the changes layer (see orphan.go)

	dirPath atomic.Pointer[keptPath] // directories: path() between renames
	removed atomic.Bool              // directories: removed from the union (see orphan.go)
	perm    atomic.Pointer[Attr]     // attributes for permission checks (see permAttr)
}

// keptPath is a directory's path, valid while namespace.renames stays at
// gen.
type keptPath struct {
	gen  uint64
	path string
}

var (
	_ = (fs.NodeLookuper)((*node)(nil))
	_ = (fs.NodeReaddirer)((*node)(nil))
	_ = (fs.NodeGetattrer)((*node)(nil))
	_ = (fs.NodeOpener)((*node)(nil))
	_ = (fs.NodeReadlinker)((*node)(nil))
	_ = (fs.NodeGetxattrer)((*node)(nil))
	_ = (fs.NodeListxattrer)((*node)(nil))
	_ = (fs.NodeStatfser)((*node)(nil))
	_ = (fs.NodeAccesser)((*node)(nil))
	_ = (fs.NodeReader)((*node)(nil))
	_ = (fs.NodeFlusher)((*node)(nil))
	_ = (fs.NodeOnForgetter)((*node)(nil))
)

// layers returns the node's layers with the changes layer's entry named by
// the node's current path.
func (n *node) layers() []layerRef {
	n.mu.Lock()
	refs := n.refs
	n.mu.Unlock()
	if n.u.upper == nil || len(refs) == 0 || refs[0].b != n.u.upper {
		return refs
	}
	cp := append([]layerRef(nil), refs...)
	cp[0] = layerRef{refs[0].b, &dirEntry{rel: n.path(), attr: *refs[0].e.Attr()}}
	return cp
}

// path is the node's path in the union ("." for the root). Every request
// on the changes layer names its entry by path, and go-fuse builds one by
// walking up the tree, so a directory keeps its path until the next
// rename (a file may have several names, of which go-fuse picks one).
// Renames move alone (see namespace) and are counted after go-fuse has
// moved the node; the count is read before the walk, so a walk that
// raced one is kept under a count already passed.
//
// An orphan (see orphan.go) has no path: "".
func (n *node) path() string {
	if n.removed.Load() {
		return ""
	}
	gen := n.u.ns.renames.Load()
	if kept := n.dirPath.Load(); kept != nil && kept.gen == gen {
		return kept.path
	}
	p := n.Path(nil)
	if p == "" {
		if !n.IsRoot() {
			return "" // go-fuse's path of a node without parents
		}
		p = "."
	}
	if n.IsDir() {
		n.dirPath.Store(&keptPath{gen, p})
	}
	return p
}

// top is layers()[0], without copying the rest.
func (n *node) top() layerRef {
	n.mu.Lock()
	t := n.refs[0]
	n.mu.Unlock()
	if t.b == n.u.upper {
		return layerRef{t.b, &dirEntry{rel: n.path(), attr: *t.e.Attr()}}
	}
	return t
}

// attr returns the node's current attributes: those of the changes layer
// are read afresh, the branches below cannot change.
func (n *node) attr() (*Attr, error) {
	n.mu.Lock()
	t := n.refs[0]
	n.mu.Unlock()
	if t.b == n.u.upper {
		p := n.path()
		if p == "" {
			return n.orphanAttr()
		}
		e, err := n.u.upperLayer.stat(p)
		if err != nil {
			return nil, err
		}
		return e.Attr(), nil
	}
	return t.e.Attr(), nil
}

// toErrno maps layer errors to what the kernel gets.
func toErrno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &errno):
		return errno
	case isNotExist(err):
		return syscall.ENOENT
	}
	return syscall.EIO
}

func fillAttr(out *fuse.Attr, a *Attr, ino uint64) {
	out.Ino = ino
	out.Mode = a.Mode
	out.Size = a.Size
	out.Blocks = a.Blocks
	out.Nlink = a.Nlink
	out.Owner = fuse.Owner{Uid: a.UID, Gid: a.GID}
	out.Rdev = a.Rdev
	out.Mtime, out.Mtimensec = uint64(a.Mtime), a.MtimeNs
	out.Ctime, out.Ctimensec = uint64(a.Ctime), a.CtimeNs
	out.Atime, out.Atimensec = uint64(a.Atime), a.AtimeNs
	out.Blksize = 4096
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.permit(ctx, mayExec); errno != 0 {
		return nil, errno
	}
	n.u.mu.RLock()
	refs, err := n.u.lookup(n.layers(), name)
	n.u.mu.RUnlock()
	if err != nil {
		if errno := toErrno(err); errno != syscall.ENOENT {
			n.u.logOnce(n.Path(nil)+"/"+name, err)
			return nil, errno
		}
		return nil, syscall.ENOENT
	}
	return n.newChild(ctx, refs, out), 0
}

// newChild makes (or finds, for a hard link) the inode for refs.
func (n *node) newChild(ctx context.Context, refs []layerRef, out *fuse.EntryOut) *fs.Inode {
	return n.newChildIno(ctx, refs, n.u.inoOf(refs[0]), out)
}

// newChildIno is newChild with the inode number already known.
func (n *node) newChildIno(ctx context.Context, refs []layerRef, id uint64, out *fuse.EntryOut) *fs.Inode {
	a := refs[0].e.Attr()
	fillAttr(&out.Attr, a, id)
	child := &node{u: n.u, refs: refs, id: id}
	return n.NewInode(ctx, child, fs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: id})
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a, err := n.attr()
	if err != nil {
		return toErrno(err)
	}
	fillAttr(&out.Attr, a, n.id)
	return 0
}

// Access answers access(2) and chdir where the kernel does not check
// permissions itself (see perm.go).
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	if mask&mayWrite != 0 && n.u.upper == nil {
		return syscall.EROFS
	}
	return n.permit(ctx, mask&(mayRead|mayWrite|mayExec))
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if errno := n.permit(ctx, mayRead); errno != 0 {
		return nil, errno
	}
	if n.u.upper != nil && n.path() == "" {
		return fs.NewListDirStream(nil), 0 // removed (see orphan.go)
	}
	n.u.mu.RLock()
	ents, err := n.u.readDir(n.layers())
	n.u.mu.RUnlock()
	if err != nil {
		n.u.logOnce(n.Path(nil), err)
		return nil, toErrno(err)
	}
	list := make([]fuse.DirEntry, len(ents))
	names := make([]string, len(ents))
	index := make(map[string]int, len(ents))
	for i, e := range ents {
		list[i] = fuse.DirEntry{Name: e.Name, Mode: e.Mode, Ino: e.Ino}
		names[i] = e.Name
		index[e.Name] = i
	}
	n.mu.Lock()
	n.names, n.index = names, index
	n.mu.Unlock()
	return fs.NewListDirStream(list), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t := n.top()
	s, err := t.b.layer.Readlink(t.e)
	if err != nil {
		return nil, toErrno(err)
	}
	return []byte(s), 0
}

// hiddenXattr reports the union's own markers, which overlayfs hides too,
// and livefs's own records.
func hiddenXattr(name string) bool {
	for _, p := range []string{"trusted.overlay.", "user.overlay.", "trusted.livefs.", "user.livefs."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if hiddenXattr(attr) {
		return 0, syscall.ENODATA
	}
	if errno := n.permitXattr(ctx, attr, mayRead); errno != 0 {
		return 0, errno
	}
	t := n.top()
	var v []byte
	var err error
	if n.isOrphan(t) {
		v, err = n.orphanXattr(attr)
	} else {
		v, err = t.b.layer.GetXattr(t.e, attr)
	}
	if err != nil {
		if errors.Is(err, ErrNoXattr) {
			return 0, syscall.ENODATA
		}
		return 0, toErrno(err)
	}
	if len(v) > len(dest) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	t := n.top()
	var names []string
	var err error
	if n.isOrphan(t) {
		names, err = n.orphanXattrNames()
	} else {
		names, err = t.b.layer.ListXattr(t.e)
	}
	if err != nil {
		return 0, toErrno(err)
	}
	var buf []byte
	for _, x := range names {
		if !hiddenXattr(x) {
			buf = append(append(buf, x...), 0)
		}
	}
	if len(buf) > len(dest) {
		return uint32(len(buf)), syscall.ERANGE
	}
	return uint32(copy(dest, buf)), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if n.u.upper != nil {
		// A writable union has the room and limits of its changes layer.
		var st unix.Statfs_t
		if err := unix.Fstatfs(n.u.changes.FD(), &st); err != nil {
			return toErrno(err)
		}
		out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
		out.Files, out.Ffree = st.Files, st.Ffree
		out.Bsize, out.Frsize = uint32(st.Bsize), uint32(st.Frsize)
		out.NameLen = uint32(st.Namelen)
		return 0
	}
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	var bytes, inodes uint64
	for _, b := range n.u.branches {
		by, in := b.layer.Statfs()
		bytes += by
		inodes += in
	}
	const bsize = 4096
	out.Bsize = bsize
	out.Frsize = bsize
	out.Blocks = (bytes + bsize - 1) / bsize
	out.Files = inodes
	out.NameLen = 255
	return 0
}

// Open declines with ENOSYS: the kernel then stops sending OPEN and
// RELEASE for regular files of this mount altogether (FUSE no_open), which
// saves two round trips per file; reads arrive at Read with no handle.
//
// A writable union opens for real: writes need the file in the changes
// layer, and its descriptor.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.u.upper != nil {
		if errno := n.permitOpen(ctx, flags); errno != 0 {
			return nil, 0, errno
		}
		return n.openWritable(ctx, flags)
	}
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, 0, syscall.ENOSYS
}

// Flush makes data written through a handle durable in a persistent
// changes layer (close after write is a commit point). A read-only union
// declines with ENOSYS, so the kernel stops sending FLUSH on close.
func (n *node) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	if n.u.upper == nil {
		return syscall.ENOSYS
	}
	h, ok := f.(*handle)
	if !ok || h.fd < 0 || !n.u.persistent() {
		return 0
	}
	if !h.written && h.passthrough && h.writable {
		// Passthrough writes bypass Write: the ctime tells whether any came.
		var st unix.Stat_t
		h.written = unix.Fstat(h.fd, &st) != nil || st.Ctim != h.ctime
	}
	if h.written {
		return toErrno(unix.Fdatasync(h.fd))
	}
	return 0
}

// reader returns the node's file reader, opened on first use and kept
// until the kernel forgets the node. One reader per node keeps the
// sequential-read detection that drives readahead. A bundle's file opens
// without the namespace lock: a push into the kernel's cache may wait for
// a read of it (see siblings.go).
func (n *node) reader() (FileReader, error) {
	n.mu.Lock()
	if r := n.r; r != nil {
		n.mu.Unlock()
		return r, nil
	}
	if t := n.refs[0]; t.b != n.u.upper {
		defer n.mu.Unlock()
		r, err := t.b.layer.Open(t.e)
		if err != nil {
			return nil, err
		}
		n.r = r
		return r, nil
	}
	n.mu.Unlock()
	// A file of the changes layer opens by path (see namespace). READ is
	// not among the requests namespaceFS holds back: reads of bundles go
	// on while a rename moves.
	n.u.ns.mu.RLock()
	defer n.u.ns.mu.RUnlock()
	t := n.top()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.r == nil {
		var r FileReader
		var err error
		if n.isOrphan(t) && n.anchor != nil {
			r, err = reopenAnchor(n.anchor)
		} else {
			r, err = t.b.layer.Open(t.e)
		}
		if err != nil {
			return nil, err
		}
		n.r = r
	}
	return n.r, nil
}

func (n *node) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := f.(*handle); ok && h.fd >= 0 {
		k, err := unix.Pread(h.fd, dest, off)
		if err != nil {
			return nil, toErrno(err)
		}
		return fuse.ReadResultData(dest[:k]), 0
	}
	r, err := n.reader()
	if err != nil {
		return nil, toErrno(err)
	}
	k, err := r.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		n.u.logOnce(n.Path(nil), err)
		if errors.Is(err, sqfs.ErrCorrupt) {
			return nil, syscall.EIO
		}
		return nil, toErrno(err)
	}
	if off == 0 && n.smallFile() {
		n.u.readaheadSiblings(n)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// OnForget closes the node's reader when the kernel drops the inode.
func (n *node) OnForget() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.r != nil {
		n.r.Close()
		n.r = nil
	}
	if n.anchor != nil {
		n.anchor.Close()
		n.anchor = nil
	}
}
