package union

import (
	"context"
	"errors"
	"path"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/internal/xattrat"
)

// The writable union: every change lands in the changes layer (see
// copyup.go for how entries get there); deletions of names that exist
// below leave whiteouts.

var (
	_ = (fs.NodeCreater)((*node)(nil))
	_ = (fs.NodeWriter)((*node)(nil))
	_ = (fs.NodeSetattrer)((*node)(nil))
	_ = (fs.NodeFsyncer)((*node)(nil))
	_ = (fs.NodeMkdirer)((*node)(nil))
	_ = (fs.NodeMknoder)((*node)(nil))
	_ = (fs.NodeSymlinker)((*node)(nil))
	_ = (fs.NodeLinker)((*node)(nil))
	_ = (fs.NodeUnlinker)((*node)(nil))
	_ = (fs.NodeRmdirer)((*node)(nil))
	_ = (fs.NodeRenamer)((*node)(nil))
	_ = (fs.NodeSetxattrer)((*node)(nil))
	_ = (fs.NodeRemovexattrer)((*node)(nil))
)

// handle is an open file of a writable union. fd is an open descriptor of
// the file in the changes layer, or -1 for a file opened for reading only
// while it is still below (reads then follow the node, so they see a later
// copy-up).
type handle struct {
	fd      int
	written bool // data went through Write (a sync on close then commits it)
	// passthrough offers fd to the kernel as the backing file: reads and
	// writes then bypass the server altogether.
	passthrough bool
	writable    bool
	ctime       unix.Timespec // the file's ctime at open: a later one means passthrough writes
}

var _ = (fs.FilePassthroughFder)((*handle)(nil))

// PassthroughFd offers the file in the changes layer to the kernel. go-fuse
// asks once per inode and shares the backing file among its opens.
func (h *handle) PassthroughFd() (int, bool) {
	return h.fd, h.passthrough && h.fd >= 0
}

func (h *handle) close() {
	if h.fd >= 0 {
		unix.Close(h.fd)
		h.fd = -1
	}
}

const writeFlags = syscall.O_WRONLY | syscall.O_RDWR | syscall.O_TRUNC

// openWritable opens a file of a writable union. The kernel puts each inode
// in one I/O mode at a time: all its opens use passthrough or none do
// (mixing fails the open with EIO). A file opened for reading while it is
// still below is served through the page cache; until the last such handle
// is released, the node's later opens are too, after a copy-up as well.
//
// O_TRUNC comes with the open (FUSE atomic_o_trunc: no SETATTR follows),
// and a lower file's data is then not copied up at all.
func (n *node) openWritable(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	p := n.path()
	f := int(flags) &^ (syscall.O_CREAT | syscall.O_EXCL | syscall.O_NOCTTY)
	fd := -1
	var err error
	if flags&writeFlags == 0 {
		if h := n.openBelow(); h != nil {
			return h, n.openFlags(h), 0
		}
	} else if p == "" && n.inBundle() {
		return nil, 0, syscall.EEXIST // an orphan (see orphan.go)
	} else if fd, err = n.u.copyUpFor(n, f, -1); err != nil {
		return nil, 0, toErrno(err)
	}
	switch {
	case fd >= 0: // the copy-up's own descriptor
		if f&syscall.O_APPEND == 0 {
			break
		}
		if _, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_APPEND); err != nil {
			unix.Close(fd)
		}
	case p == "":
		fd, err = n.reopenOrphan(f)
	default:
		fd, err = unix.Openat(n.u.changes.FD(), n.path(), f|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, 0, toErrno(err)
	}
	if f&syscall.O_TRUNC != 0 {
		err := dropSetidOnTruncate(ctx, fd)
		n.forgetPermAttr() // after the mode changed
		if err != nil {
			unix.Close(fd)
			return nil, 0, toErrno(err)
		}
	}
	h := &handle{fd: fd, writable: flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0}
	n.choosePassthrough(h)
	return h, n.openFlags(h), 0
}

// dropSetidOnTruncate clears the setuid bit of fd, a regular file an open
// has just truncated, and its setgid bit where the kernel's truncate would
// (group-executable, or the caller not in its group), unless the caller
// has CAP_FSETID. The kernel leaves that to the server when OPEN carries
// O_TRUNC, and a server with CAP_FSETID keeps the bits in its own
// truncation. (The truncation itself drops security.capability; the
// kernel, seeing the bits in its cache, asks for the attributes again.)
func dropSetidOnTruncate(ctx context.Context, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&(syscall.S_ISUID|syscall.S_ISGID) == 0 || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil
	}
	c := callerFrom(ctx)
	if c == nil {
		return nil
	}
	drop := st.Mode & syscall.S_ISUID
	if st.Mode&syscall.S_ISGID != 0 && (st.Mode&syscall.S_IXGRP != 0 || !c.inGroup(st.Gid)) {
		drop |= syscall.S_ISGID
	}
	if drop == 0 || c.capable(capFsetid) {
		return nil
	}
	return unix.Fchmod(fd, st.Mode&0o7777&^drop)
}

// openFlags are the kernel's flags for an open of h: keep the page cache,
// and no FLUSH round trip at close where Flush would do nothing (handles
// that cannot write, and any handle of a changes layer in RAM).
func (n *node) openFlags(h *handle) uint32 {
	if !h.writable || !n.u.persistent() {
		return fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	}
	return fuse.FOPEN_KEEP_CACHE
}

// openBelow returns a handle that reads through the node, or nil if the
// node is in the changes layer (or passthrough is off, where reads through
// the node serve the changes layer as well).
func (n *node) openBelow() *handle {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.u.passthrough.Load() && len(n.refs) > 0 && n.refs[0].b == n.u.upper {
		return nil
	}
	n.waitPushLocked() // no READ while a push stores (see siblings.go)
	n.cachedOpens++
	n.opens++
	return &handle{fd: -1}
}

// choosePassthrough decides h's I/O mode (see openWritable) and counts it.
func (n *node) choosePassthrough(h *handle) {
	n.mu.Lock()
	if n.u.passthrough.Load() && n.cachedOpens == 0 {
		h.passthrough = true
	} else {
		n.cachedOpens++
	}
	n.opens++
	n.mu.Unlock()
	if h.passthrough && h.writable && n.u.persistent() {
		var st unix.Stat_t
		if unix.Fstat(h.fd, &st) == nil {
			h.ctime = st.Ctim
		}
	}
}

// released uncounts a handle the kernel has let go of.
func (n *node) released(h *handle) {
	n.mu.Lock()
	if !h.passthrough {
		n.cachedOpens--
	}
	n.opens--
	n.mu.Unlock()
}

// callerOwner is who a new file belongs to: the caller, with the group of
// a setgid parent directory.
func (n *node) callerOwner(ctx context.Context) (uid, gid int, ok bool) {
	caller, ok := fuse.FromContext(ctx)
	if !ok || !n.u.changes.Root {
		return 0, 0, false
	}
	uid, gid = int(caller.Uid), int(caller.Gid)
	if uid == 0 && gid == n.u.ownGid {
		// The server's own: the file system made it so, with a setgid
		// parent's group where there is one.
		return 0, 0, false
	}
	if a, err := n.attr(); err == nil && a.Mode&syscall.S_ISGID != 0 {
		gid = int(a.GID)
	}
	return uid, gid, true
}

// newUpperChild makes the node for an entry just made in the changes
// layer; fd, unless -1, is open on it (a stat of it walks no path). Its
// inode is new, so its inode number is its own: a record left for the
// number by a deleted copy goes.
func (n *node) newUpperChild(ctx context.Context, name string, fd int, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	rel := path.Join(n.path(), name)
	var e *dirEntry
	if fd >= 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, toErrno(err)
		}
		e = &dirEntry{rel: rel, attr: attrFromStat(&st)}
	} else {
		var err error
		if e, err = n.u.upperLayer.stat(rel); err != nil {
			return nil, toErrno(err)
		}
	}
	if _, stale := n.u.changes.RememberedIno(e.attr.Ino); stale {
		n.u.changes.ForgetIno(e.attr.Ino)
	}
	return n.newChildIno(ctx, []layerRef{{n.u.upper, e}}, ino(n.u.upper, e.attr.Ino), out), 0
}

// chownNew gives a new entry (p, relative to dirfd) to the caller.
func (n *node) chownNew(ctx context.Context, dirfd int, p string) error {
	if uid, gid, ok := n.callerOwner(ctx); ok {
		return unix.Fchownat(dirfd, p, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	fd := -1
	ch, errno := n.makeEntry(ctx, name, out, &fd, func(dirfd int, p string) error {
		var err error
		fd, err = unix.Openat(dirfd, p, int(flags)|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, mode&0o7777)
		return err
	})
	if errno != 0 {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, nil, 0, errno
	}
	h := &handle{fd: fd, writable: flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0}
	if cn, ok := ch.Operations().(*node); ok {
		cn.choosePassthrough(h)
	}
	return ch, h, n.openFlags(h), 0
}

// prepareNameLocked readies name in directory n for a new entry, with
// u.copyMu held: n is copied up (which takes that lock itself, so it runs
// with the lock let go). It reports whether a whiteout stands at name,
// which the new entry must then replace. A directory with nothing below
// the changes layer (made in the union, or opaque) is not asked: a
// whiteout there hides nothing, and one that has the entry's name
// (overlay form) makes the new entry fail with EEXIST, where placeNew
// asks after all.
func (n *node) prepareNameLocked(name string) (bool, syscall.Errno) {
	if n.u.upper == nil {
		return false, syscall.EROFS
	}
	if n.path() == "" {
		return false, syscall.ENOENT // a removed directory (the kernel says so first)
	}
	if !n.inUpper() {
		n.u.copyMu.Unlock()
		err := n.u.copyUp(n)
		n.u.copyMu.Lock()
		if err != nil {
			return false, toErrno(err)
		}
	}
	if n.onlyInUpper() {
		return false, 0
	}
	return n.u.changes.HasWhiteout(n.path(), name), 0
}

// onlyInUpper reports whether directory n has no layers below the changes
// layer.
func (n *node) onlyInUpper() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.refs) == 1 && n.refs[0].b == n.u.upper
}

// placeNew makes name in directory n with mk (given a directory
// descriptor and a path relative to it). Where a whiteout stands, the
// entry is made in the work directory (a directory opaque, so that it does
// not show what the deleted one held below) and takes the whiteout's place
// in one step: a crash leaves the whiteout or the whole new entry.
func (n *node) placeNew(name string, whiteout bool, mk func(dirfd int, p string) error) error {
	c := n.u.changes
	if !whiteout {
		err := mk(c.FD(), path.Join(n.path(), name))
		if !errors.Is(err, unix.EEXIST) || !c.HasWhiteout(n.path(), name) {
			return err
		}
	}
	tmp := c.TempName()
	if err := mk(c.WorkFD(), tmp); err != nil {
		return err
	}
	var st unix.Stat_t
	err := unix.Fstatat(c.WorkFD(), tmp, &st, unix.AT_SYMLINK_NOFOLLOW)
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if err == nil && isDir {
		err = c.MakeTempOpaque(tmp)
	}
	if err == nil {
		err = c.ReplaceWhiteout(tmp, n.path(), name, isDir)
	}
	if err != nil {
		c.RemoveTemp(tmp)
	}
	return err
}

// makeEntry creates name in directory n in the changes layer with mk
// (given the changes directory's descriptor and the entry's path), owned
// by the caller, and returns its node. fd, if not nil, is where mk leaves
// a descriptor open on the new entry. A directory made where a deleted
// one stood is made opaque, so that it does not show what the old one held
// below.
func (n *node) makeEntry(ctx context.Context, name string, out *fuse.EntryOut, fd *int, mk func(dirfd int, p string) error) (*fs.Inode, syscall.Errno) {
	if errno := n.permit(ctx, mayWrite|mayExec); errno != 0 {
		return nil, errno
	}
	n.u.copyMu.Lock()
	defer n.u.copyMu.Unlock()
	whiteout, errno := n.prepareNameLocked(name)
	if errno != 0 {
		return nil, errno
	}
	err := n.placeNew(name, whiteout, func(dirfd int, p string) error {
		if err := mk(dirfd, p); err != nil {
			return err
		}
		return n.chownNew(ctx, dirfd, p)
	})
	if err != nil {
		return nil, toErrno(err)
	}
	open := -1
	if fd != nil {
		open = *fd
	}
	return n.newUpperChild(ctx, name, open, out)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeEntry(ctx, name, out, nil, func(dirfd int, p string) error { return unix.Mkdirat(dirfd, p, mode&0o7777) })
}

func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	major, minor := dev>>8&0xfff, dev&0xff|dev>>12&0xfff00
	return n.makeEntry(ctx, name, out, nil, func(dirfd int, p string) error {
		return unix.Mknodat(dirfd, p, mode, int(unix.Mkdev(major, minor)))
	})
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeEntry(ctx, name, out, nil, func(dirfd int, p string) error { return unix.Symlinkat(target, dirfd, p) })
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if n.u.upper == nil {
		return nil, syscall.EROFS
	}
	if errno := n.permit(ctx, mayWrite|mayExec); errno != 0 {
		return nil, errno
	}
	if err := n.u.copyUp(t); err != nil {
		return nil, toErrno(err)
	}
	n.u.copyMu.Lock()
	defer n.u.copyMu.Unlock()
	whiteout, errno := n.prepareNameLocked(name)
	if errno != 0 {
		return nil, errno
	}
	fd := n.u.changes.FD()
	err := n.placeNew(name, whiteout, func(dirfd int, p string) error { return unix.Linkat(fd, t.path(), dirfd, p, 0) })
	if err != nil {
		return nil, toErrno(err)
	}
	e, err := n.u.upperLayer.stat(path.Join(n.path(), name))
	if err != nil {
		return nil, toErrno(err)
	}
	t.sawAttr(&e.attr)
	fillAttr(&out.Attr, e.Attr(), t.id)
	return t.EmbeddedInode(), 0
}

// sawAttr keeps the attributes of file n, in the changes layer, as they
// are after a change that the node's entry does not show (a new link,
// writes): remove goes by its link count and size.
func (n *node) sawAttr(a *Attr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	top, ok := n.refs[0].e.(*dirEntry)
	if n.refs[0].b != n.u.upper || !ok || a.IsDir() {
		return
	}
	n.refs = []layerRef{{n.u.upper, &dirEntry{rel: top.rel, attr: *a}}} // not in place: readers hold the old slice
}

// lowerHas reports whether name is visible in directory n's layers below
// the changes layer: deleting it then needs a whiteout.
func (n *node) lowerHas(name string) bool {
	n.mu.Lock()
	refs := n.refs // below the changes layer: no path to renew
	n.mu.Unlock()
	if len(refs) > 0 && refs[0].b == n.u.upper {
		refs = refs[1:]
	}
	if len(refs) == 0 {
		return false
	}
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	_, err := n.u.lookup(refs, name)
	return err == nil
}

// removalRefs returns the layers behind name in directory n, for remove.
// An entry the kernel knows from a lookup has them in its node (every
// change of the layers goes through the nodes); a directory's with a
// fresh path for the changes layer (remove lists it), a file's as they are
// (remove needs only its kind). The rest are looked up.
func (n *node) removalRefs(name string) ([]layerRef, error) {
	if cn := n.childNode(name); cn != nil {
		var refs []layerRef
		if cn.IsDir() {
			refs = cn.layers()
		} else {
			cn.mu.Lock()
			refs = cn.refs
			cn.mu.Unlock()
		}
		if len(refs) > 0 {
			return refs, nil
		}
	}
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	return n.u.lookup(n.layers(), name)
}

func (n *node) remove(ctx context.Context, name string, dir bool) syscall.Errno {
	if n.u.upper == nil {
		return syscall.EROFS
	}
	if errno := n.permit(ctx, mayWrite|mayExec); errno != 0 {
		return errno
	}
	refs, err := n.removalRefs(name)
	if err != nil {
		return toErrno(err)
	}
	if errno := n.permitSticky(ctx, n.entryAttr(name, refs)); errno != 0 {
		return errno
	}
	isDir := refs[0].e.Attr().IsDir()
	switch {
	case dir && !isDir:
		return syscall.ENOTDIR
	case !dir && isDir:
		return syscall.EISDIR
	}
	if dir {
		ents, err := n.u.readDir(refs)
		if err != nil {
			return toErrno(err)
		}
		if len(ents) > 0 {
			return syscall.ENOTEMPTY
		}
	}
	if err := n.u.copyUp(n); err != nil {
		return toErrno(err)
	}
	n.u.copyMu.Lock()
	defer n.u.copyMu.Unlock()
	// What is removed from the changes layer is deleted later, its inode
	// number record with it (see cow.Changes.discard).
	dirPath := n.path()
	cn := n.childNode(name)
	if cn != nil {
		cn.anchorIfHeld(path.Join(dirPath, name)) // in use, it may become an orphan
	}
	if err := n.removeLocked(dirPath, name, refs); err != nil {
		return toErrno(err)
	}
	if cn != nil && isDir {
		cn.removed.Store(true)
	}
	return 0
}

// removeLocked removes name, whose layers are refs, from directory n (at
// dirPath in the changes layer), with u.copyMu held.
func (n *node) removeLocked(dirPath, name string, refs []layerRef) error {
	c := n.u.changes
	if refs[0].b != n.u.upper {
		return c.Whiteout(dirPath, name)
	}
	var held cow.Holding
	if a := refs[0].e.Attr(); !a.IsDir() {
		held = cow.Holding{Links: a.Nlink, Bytes: int64(a.Blocks) * 512}
	}
	if len(refs) > 1 || n.lowerHas(name) { // a directory merged with ones below, or hiding some
		return c.ReplaceWithWhiteout(dirPath, name, held)
	}
	return c.Remove(dirPath, name, held)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, false)
}
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, true)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if n.u.upper == nil {
		return syscall.EROFS
	}
	if errno := n.permitRename(ctx, np); errno != 0 {
		return errno
	}
	switch flags {
	case 0, unix.RENAME_NOREPLACE:
	case unix.RENAME_EXCHANGE:
		return n.exchange(ctx, name, np, newName)
	default:
		return syscall.EINVAL // RENAME_WHITEOUT is not offered
	}
	n.u.mu.RLock()
	src, err := n.u.lookup(n.layers(), name)
	var dst []layerRef
	var dstErr error
	if err == nil {
		dst, dstErr = n.u.lookup(np.layers(), newName)
	}
	n.u.mu.RUnlock()
	if err != nil {
		return toErrno(err)
	}
	if errno := n.permitLeaving(ctx, np, src[0].e.Attr()); errno != 0 {
		return errno
	}
	if dstErr == nil {
		if errno := np.permitSticky(ctx, dst[0].e.Attr()); errno != 0 {
			return errno
		}
	}
	srcDir := src[0].e.Attr().IsDir()
	if dstErr == nil {
		if flags&unix.RENAME_NOREPLACE != 0 {
			return syscall.EEXIST
		}
		dstDir := dst[0].e.Attr().IsDir()
		switch {
		case srcDir && !dstDir:
			return syscall.ENOTDIR
		case !srcDir && dstDir:
			return syscall.EISDIR
		case dstDir:
			ents, err := n.u.readDir(dst)
			if err != nil {
				return toErrno(err)
			}
			if len(ents) > 0 {
				return syscall.ENOTEMPTY
			}
		}
	} else if toErrno(dstErr) != syscall.ENOENT {
		return toErrno(dstErr)
	}
	if err := n.u.copyUp(n); err != nil {
		return toErrno(err)
	}
	if err := n.u.copyUp(np); err != nil {
		return toErrno(err)
	}
	child := n.childNode(name)
	srcPath := path.Join(n.path(), name)
	n.u.copyMu.Lock()
	defer n.u.copyMu.Unlock()
	if err := n.u.moveUpLocked(src, srcPath, child); err != nil {
		return toErrno(err)
	}
	if n.u.ns.preparingRename() {
		return errPrepared
	}
	c := n.u.changes
	dstPath := path.Join(np.path(), newName)
	dstLower := np.lowerHas(newName)
	srcLower := n.lowerHas(name)
	// A directory landing where the layers below have the name must not
	// merge with it. Its tree is wholly in the changes layer by now, so it
	// is marked opaque before the move, which then does all in one step.
	if srcDir && dstLower {
		if err := c.MakeOpaque(srcPath); err != nil {
			return toErrno(err)
		}
	}
	replaced := np.childNode(newName) // an orphan after this if in use
	if replaced != nil && dstErr == nil {
		replaced.anchorIfHeld(dstPath)
	}
	if dstErr == nil && dst[0].b == n.u.upper && dst[0].e.Attr().IsDir() {
		err = c.RenameOverDir(n.path(), name, np.path(), newName, srcLower)
	} else {
		err = c.Rename(n.path(), name, np.path(), newName, srcDir, srcLower)
	}
	if err != nil {
		return toErrno(err)
	}
	if replaced != nil && dstErr == nil && dst[0].e.Attr().IsDir() {
		replaced.removed.Store(true)
	}
	if child != nil {
		n.u.renewMoved(child, dstPath)
	}
	return 0
}

// childNode returns the node of name in directory n if the kernel knows it.
func (n *node) childNode(name string) *node {
	if ci := n.GetChild(name); ci != nil {
		c, _ := ci.Operations().(*node)
		return c
	}
	return nil
}

// exchange swaps two names atomically (renameat2 RENAME_EXCHANGE). Both
// entries are brought wholly into the changes layer first (directories
// with their trees, as a plain rename of a directory does) and swapped
// there; a directory that lands on a name the layers below also have is
// made opaque, so that it does not merge with what is below. Both names
// stay, so no whiteout is needed.
func (n *node) exchange(ctx context.Context, name string, np *node, newName string) syscall.Errno {
	n.u.mu.RLock()
	a, err := n.u.lookup(n.layers(), name)
	var b []layerRef
	if err == nil {
		b, err = n.u.lookup(np.layers(), newName)
	}
	n.u.mu.RUnlock()
	if err != nil {
		return toErrno(err)
	}
	if errno := n.permitLeaving(ctx, np, a[0].e.Attr()); errno != 0 {
		return errno
	}
	if errno := np.permitLeaving(ctx, n, b[0].e.Attr()); errno != 0 {
		return errno
	}
	if err := n.u.copyUp(n); err != nil {
		return toErrno(err)
	}
	if err := n.u.copyUp(np); err != nil {
		return toErrno(err)
	}
	childA, childB := n.childNode(name), np.childNode(newName)
	pathA, pathB := path.Join(n.path(), name), path.Join(np.path(), newName)
	n.u.copyMu.Lock()
	defer n.u.copyMu.Unlock()
	if err := n.u.moveUpLocked(a, pathA, childA); err != nil {
		return toErrno(err)
	}
	if err := n.u.moveUpLocked(b, pathB, childB); err != nil {
		return toErrno(err)
	}
	if n.u.ns.preparingRename() {
		return errPrepared
	}
	// A directory landing on a name the layers below have must not merge
	// with it; both trees are wholly in the changes layer now, so each is
	// marked before the swap, which then does all in one step.
	c := n.u.changes
	if b[0].e.Attr().IsDir() && n.lowerHas(name) {
		if err := c.MakeOpaque(pathB); err != nil {
			return toErrno(err)
		}
	}
	if a[0].e.Attr().IsDir() && np.lowerHas(newName) {
		if err := c.MakeOpaque(pathA); err != nil {
			return toErrno(err)
		}
	}
	if err := unix.Renameat2(c.FD(), pathA, c.FD(), pathB, unix.RENAME_EXCHANGE); err != nil {
		return toErrno(err)
	}
	if childA != nil {
		n.u.renewMoved(childA, pathB)
	}
	if childB != nil {
		n.u.renewMoved(childB, pathA)
	}
	return 0
}

// moveUpLocked brings the entry refs, at path p, wholly into the changes
// layer before it is renamed there: a directory with its whole tree (what
// is below stays at the old name), anything else by a copy-up that keeps
// the inode number of its node (child, nil if the kernel has none). The
// caller holds u.copyMu.
func (u *Union) moveUpLocked(refs []layerRef, p string, child *node) error {
	if refs[0].e.Attr().IsDir() {
		return u.copyUpTree(refs, p, child)
	}
	if refs[0].b == u.upper {
		return nil
	}
	return u.copyEntryOf(refs[0], p, child)
}

// renewMoved points a node moved to p in the changes layer, and every node
// under it, at the changes layer alone: a moved directory was copied up
// whole, and what is below its new name is hidden or absent. Without this,
// a node under it would still name the old place below, and its copy-up
// would collide with the copy already made.
func (u *Union) renewMoved(n *node, p string) {
	e, err := u.upperLayer.stat(p)
	if err != nil {
		return
	}
	n.mu.Lock()
	n.moveUpLocked([]layerRef{{u.upper, e}})
	n.mu.Unlock()
	if !e.Attr().IsDir() {
		return
	}
	for name, ci := range n.Children() {
		if c, ok := ci.Operations().(*node); ok {
			u.renewMoved(c, path.Join(p, name))
		}
	}
}

func (n *node) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	h, ok := f.(*handle)
	if !ok || h.fd < 0 {
		return 0, syscall.EBADF
	}
	k, err := unix.Pwrite(h.fd, data, off)
	if err != nil {
		return 0, toErrno(err)
	}
	h.written = true
	n.u.serverWrites.Add(1)
	return uint32(k), 0
}

var _ = (fs.NodeCopyFileRanger)((*node)(nil))

// CopyFileRange declines with ENOSYS, after which the kernel copies ranges
// itself for the whole mount (through the page cache, or straight between
// the backing files of passthrough opens) without asking the server, which
// saves two round trips per copied file: the request, and the
// security.capability check the kernel makes before it.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := f.(*handle); ok && h.fd >= 0 {
		return toErrno(unix.Fsync(h.fd))
	}
	return 0
}

func (n *node) Release(ctx context.Context, f fs.FileHandle) syscall.Errno {
	if h, ok := f.(*handle); ok {
		var st unix.Stat_t
		if h.writable && h.fd >= 0 && unix.Fstat(h.fd, &st) == nil {
			a := attrFromStat(&st)
			n.sawAttr(&a) // writes the server did not see (passthrough) change its size
		}
		n.released(h)
		h.close()
	}
	return 0
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.u.upper == nil {
		return syscall.EROFS
	}
	if errno := n.permitSetattr(ctx, f, in); errno != 0 {
		return errno
	}
	defer n.forgetPermAttr()
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID) != 0 {
		defer n.dropCachedNames(n.searchersOf())
	}
	if n.path() == "" {
		return n.setOrphanAttr(f, in, out)
	}
	keep := int64(-1)
	if sz, ok := in.GetSize(); ok {
		keep = int64(min(sz, 1<<63-1))
	}
	if _, err := n.u.copyUpFor(n, -1, keep); err != nil {
		return toErrno(err)
	}
	c := n.u.changes
	p := n.path()
	if sz, ok := in.GetSize(); ok {
		var err error
		if h, ok := f.(*handle); ok && h.fd >= 0 {
			err = unix.Ftruncate(h.fd, int64(sz))
		} else {
			var fd int
			if fd, err = unix.Openat(c.FD(), p, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0); err == nil {
				err = unix.Ftruncate(fd, int64(sz))
				unix.Close(fd)
			}
		}
		if err != nil {
			return toErrno(err)
		}
	}
	if err := setAttrAt(c.FD(), p, unix.AT_SYMLINK_NOFOLLOW, in); err != nil {
		return toErrno(err)
	}
	a, err := n.attr()
	if err != nil {
		return toErrno(err)
	}
	fillAttr(&out.Attr, a, n.id)
	return 0
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.u.upper == nil {
		return syscall.EROFS
	}
	if hiddenXattr(attr) {
		return syscall.EPERM
	}
	if errno := n.permitXattr(ctx, attr, mayWrite); errno != 0 {
		return errno
	}
	// An access ACL sets the mode too, and the reply carries no
	// attributes: unless the mode stays, the kernel is told to drop those it
	// keeps (before the reply: a stat right after the change must see it).
	newMode := false
	if attr == aclAccess {
		newMode = !n.aclKeepsMode(data)
		defer n.dropCachedNames(n.aclSearchers(data))
	}
	defer n.forgetPermAttr()
	var errno syscall.Errno
	if n.path() == "" {
		errno = n.changeOrphanXattr("", func(anchor string) error { return unix.Setxattr(anchor, attr, data, int(flags)) })
	} else if err := n.u.copyUp(n); err != nil {
		return toErrno(err)
	} else {
		errno = toErrno(xattrat.Set(n.u.changes.FD(), n.path(), attr, data, int(flags)))
	}
	if errno == 0 && newMode {
		n.NotifyContent(-1, 0)
	}
	return errno
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.u.upper == nil {
		return syscall.EROFS
	}
	if hiddenXattr(attr) {
		return syscall.ENODATA
	}
	if errno := n.permitXattr(ctx, attr, mayWrite); errno != 0 {
		return errno
	}
	defer n.forgetPermAttr()
	if attr == aclAccess {
		defer n.dropCachedNames(nil) // its named entries may have let callers in; the mode stays
	}
	if n.path() == "" {
		return n.changeOrphanXattr(attr, func(anchor string) error { return unix.Removexattr(anchor, attr) })
	}
	if !n.inUpper() {
		// Nothing to remove is no change, and no reason for a copy-up (as
		// overlayfs; the changes layer's file system may not even say
		// ENODATA for an ACL).
		t := n.top()
		if _, err := t.b.layer.GetXattr(t.e, attr); errors.Is(err, ErrNoXattr) {
			return syscall.ENODATA
		}
	}
	if err := n.u.copyUp(n); err != nil {
		return toErrno(err)
	}
	return toErrno(xattrat.Remove(n.u.changes.FD(), n.path(), attr))
}
