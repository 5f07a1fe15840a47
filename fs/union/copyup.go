package union

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/xattrat"
)

// Copy-up moves an entry of a read-only branch into the changes layer
// before its first change.
//
// Preconditions: the entry's parent directory is already in the changes
// layer (copyUp does the parents first, root downwards). Lock order:
// u.copyMu, then a node's mu. The fast path (already in the changes layer)
// takes no lock; the slow path checks again under u.copyMu. The copy is
// built under a temporary name in the work directory, complete with data,
// owner, mode, xattrs and times, and renamed into place in one step: a
// crash leaves either the old lower file visible or the complete copy,
// never a torn one. On failure the temporary is removed (one undo path).

// inUpper reports whether the node's top layer is the changes layer.
func (n *node) inUpper() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.u.upper != nil && len(n.refs) > 0 && n.refs[0].b == n.u.upper
}

// parentNode returns the node's parent and its name in it.
func (n *node) parentNode() (string, *node) {
	name, p := n.Parent()
	if p == nil {
		return "", nil
	}
	pn, _ := p.Operations().(*node)
	return name, pn
}

// copyUp brings n (and its parents) into the changes layer.
func (u *Union) copyUp(n *node) error {
	_, err := u.copyUpFor(n, -1, -1)
	return err
}

// copyUpFor is copyUp for a change that keeps only the first keep bytes of
// a regular file's data (-1: all of them), or for an open with flags (-1:
// no open; its O_TRUNC keeps none). Data the change would cut at once is
// not copied (as overlayfs does): from the copy-up on, the file is that
// short, even if the change fails later. When it copies a regular file
// itself, it returns the copy's descriptor if that can serve the open (see
// copyServes), which spares the open a second walk of the path; otherwise
// -1, and the caller opens the file.
func (u *Union) copyUpFor(n *node, flags int, keep int64) (int, error) {
	if u.upper == nil {
		return -1, syscall.EROFS
	}
	if n.inUpper() {
		return -1, nil
	}
	if _, p := n.parentNode(); p != nil {
		if err := u.copyUp(p); err != nil {
			return -1, err
		}
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	if n.inUpper() {
		return -1, nil
	}
	p := n.path()
	if p == "" {
		return -1, syscall.EEXIST // an orphan from a bundle: as overlayfs's copy-up fails (see orphan.go)
	}
	if flags >= 0 && flags&unix.O_TRUNC != 0 {
		keep = 0
	}
	src := n.layers()[0]
	fd, err := u.copyEntry(src, p, n.id, flags, keep)
	if err != nil {
		return -1, err
	}
	if err := n.tookCopy(p, fd); err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, err
	}
	return fd, nil
}

// tookCopy points n, until now wholly below, at its copy at p in the
// changes layer; fd is the copy's open descriptor, or -1.
func (n *node) tookCopy(p string, fd int) error {
	e, err := n.u.upperLayer.statOpen(p, fd)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	refs := []layerRef{{n.u.upper, e}}
	if e.Attr().IsDir() {
		refs = append(refs, n.refs...) // the directory still merges with those below
	}
	n.moveUpLocked(refs)
	return nil
}

// moveUpLocked points n at refs, which start in the changes layer, once
// no push of its content from a bundle is under way: one that ended after
// a write to the copy would leave the bundle's data in the kernel's cache
// (see siblings.go). Reads continue from the copy. n.mu is held.
func (n *node) moveUpLocked(refs []layerRef) {
	n.waitPushLocked()
	n.refs = refs
	n.forgetPermAttr()
	if n.r != nil {
		n.r.Close()
		n.r = nil
	}
}

// copyEntry copies the entry src to path p of the changes layer, recording
// id as its inode number, with no more than keep bytes of a regular file's
// data (-1: all). For an open with flags (-1: none) of a regular file it
// returns the copy's descriptor if it can serve the open, -1 otherwise.
func (u *Union) copyEntry(src layerRef, p string, id uint64, flags int, keep int64) (fd int, err error) {
	c := u.changes
	work := c.WorkFD()
	tmp := c.TempName()
	a := src.e.Attr()
	typ := a.Mode & syscall.S_IFMT
	fd = -1
	serves := copyServes(flags)
	defer func() {
		if err != nil {
			if fd >= 0 {
				unix.Close(fd)
				fd = -1
			}
			if typ == syscall.S_IFDIR {
				unix.Unlinkat(work, tmp, unix.AT_REMOVEDIR)
			} else {
				unix.Unlinkat(work, tmp, 0)
			}
			err = fmt.Errorf("copy-up of %s: %w", p, err)
		}
	}()
	switch typ {
	case syscall.S_IFDIR:
		if err := unix.Mkdirat(work, tmp, 0o700); err != nil {
			return -1, err
		}
	case syscall.S_IFREG:
		mode := unix.O_WRONLY
		if serves {
			mode = flags & unix.O_ACCMODE
		}
		size := a.Size
		if keep >= 0 {
			size = min(size, uint64(keep))
		}
		if fd, err = u.copyData(src, tmp, size, mode); err != nil {
			return fd, err
		}
	case syscall.S_IFLNK:
		target, err := src.b.layer.Readlink(src.e)
		if err != nil {
			return -1, err
		}
		if err := unix.Symlinkat(target, work, tmp); err != nil {
			return -1, err
		}
	default:
		major, minor := a.Rdev>>8&0xfff, a.Rdev&0xff|a.Rdev>>12&0xfff00
		if err := unix.Mknodat(work, tmp, typ|0o600, int(unix.Mkdev(major, minor))); err != nil {
			return -1, err
		}
	}
	if err := u.copyMeta(src, tmp, fd, a, id); err != nil {
		return fd, err
	}
	if err := unix.Renameat(work, tmp, c.FD(), p); err != nil {
		return fd, err
	}
	if fd >= 0 && !serves {
		unix.Close(fd)
		fd = -1
	}
	return fd, nil
}

// copyServes reports whether the descriptor a copy-up writes the copy
// through, opened with the access mode of flags, can serve an open with
// flags: one that writes, asks for O_APPEND at most (set afterwards) among
// what changes a descriptor, and does not truncate (which must set the
// file's times).
func copyServes(flags int) bool {
	if flags < 0 {
		return false
	}
	acc := flags & unix.O_ACCMODE
	rest := flags &^ (unix.O_ACCMODE | unix.O_APPEND | unix.O_LARGEFILE | unix.O_CLOEXEC | unix.O_NOFOLLOW)
	return rest == 0 && (acc == unix.O_WRONLY || acc == unix.O_RDWR)
}

// copyData writes a regular file's first size bytes to tmp in the work
// directory, leaving holes where the source has runs of zeros, syncs it,
// and returns its descriptor, opened with access mode mode.
func (u *Union) copyData(src layerRef, tmp string, size uint64, mode int) (int, error) {
	fd, err := unix.Openat(u.changes.WorkFD(), tmp, unix.O_CREAT|unix.O_EXCL|mode|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, err
	}
	return fd, copyInto(fd, src, size)
}

// copyInto writes src's first size bytes to fd, an empty file, and syncs
// it.
func copyInto(fd int, src layerRef, size uint64) error {
	if size == 0 {
		return nil
	}
	r, err := src.b.layer.Open(src.e)
	if err != nil {
		return err
	}
	defer r.Close()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	end := int64(0) // where the data written ends
	for off := int64(0); off < int64(size); {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), int64(size)-off)], off)
		if n == 0 {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if !allZero(buf[:n]) {
			if _, err := unix.Pwrite(fd, buf[:n], off); err != nil {
				return err
			}
			end = off + int64(n)
		}
		off += int64(n)
	}
	if end < int64(size) { // a hole at the end
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			return err
		}
	}
	return unix.Fdatasync(fd)
}

// copyBufs recycles copy-up buffers: a fresh megabyte for each small file
// copied up cost more in clearing it than the copy itself.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// copyMeta gives tmp the owner, mode, xattrs and times of src (in that
// order: chown clears setuid bits, and setting anything changes ctime),
// through fd, tmp's open descriptor, if it is not -1.
func (u *Union) copyMeta(src layerRef, tmp string, fd int, a *Attr, id uint64) error {
	f := tempFile{dir: u.changes.WorkFD(), name: tmp, fd: fd}
	isLink := a.Mode&syscall.S_IFMT == syscall.S_IFLNK
	if u.changes.Root {
		if err := f.chown(int(a.UID), int(a.GID)); err != nil {
			return err
		}
	}
	if !isLink {
		if err := f.chmod(a.Mode & 0o7777); err != nil {
			return err
		}
	}
	names, err := src.b.layer.ListXattr(src.e)
	if err != nil {
		return err
	}
	for _, x := range names {
		if strings.Contains(x, ".overlay.") || strings.Contains(x, ".livefs.") {
			continue // markers of the layer below, not of the file
		}
		v, err := src.b.layer.GetXattr(src.e, x)
		if err != nil {
			if errors.Is(err, ErrNoXattr) {
				continue
			}
			return err
		}
		if err := f.setxattr(x, v); err != nil {
			return fmt.Errorf("xattr %s: %w", x, err)
		}
	}
	switch {
	case u.inoXattr == "":
		var st unix.Stat_t
		if err := f.stat(&st); err != nil {
			return err
		}
		if err := u.changes.RememberIno(st.Ino, id); err != nil {
			return err
		}
	case !isLink || u.changes.Root:
		f.setxattr(u.inoXattr, []byte(strconv.FormatUint(id, 10)))
	}
	return f.setTimes([]unix.Timespec{
		{Sec: a.Atime, Nsec: int64(a.AtimeNs)},
		{Sec: a.Mtime, Nsec: int64(a.MtimeNs)},
	})
}

// tempFile is a copy under construction: name in directory dir, and its
// open descriptor fd, or -1. Its calls go through fd where there is one,
// sparing a lookup of the name each.
type tempFile struct {
	dir  int
	name string
	fd   int
}

func (f tempFile) chown(uid, gid int) error {
	if f.fd >= 0 {
		return unix.Fchown(f.fd, uid, gid)
	}
	return unix.Fchownat(f.dir, f.name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

func (f tempFile) chmod(mode uint32) error {
	if f.fd >= 0 {
		return unix.Fchmod(f.fd, mode)
	}
	return unix.Fchmodat(f.dir, f.name, mode, 0)
}

func (f tempFile) setxattr(name string, value []byte) error {
	if f.fd >= 0 {
		return unix.Fsetxattr(f.fd, name, value, 0)
	}
	return xattrat.Set(f.dir, f.name, name, value, 0)
}

func (f tempFile) stat(st *unix.Stat_t) error {
	if f.fd >= 0 {
		return unix.Fstat(f.fd, st)
	}
	return unix.Fstatat(f.dir, f.name, st, unix.AT_SYMLINK_NOFOLLOW)
}

func (f tempFile) setTimes(ts []unix.Timespec) error {
	if f.fd >= 0 {
		return unix.UtimesNanoAt(f.fd, "", ts, unix.AT_EMPTY_PATH)
	}
	return unix.UtimesNanoAt(f.dir, f.name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// copyUpTree copies a whole directory tree into the changes layer, so that
// it can be renamed there (aufs's way; overlayfs answers EXDEV instead).
// n is the directory's node, nil if the kernel knows none: the nodes of
// what it copies are pointed at the copies, as copyUp does. The caller
// holds u.copyMu.
func (u *Union) copyUpTree(refs []layerRef, p string, n *node) error {
	if refs[0].b != u.upper {
		if err := u.copyEntryOf(refs[0], p, n); err != nil {
			return err
		}
		e, err := u.upperLayer.stat(p)
		if err != nil {
			return err
		}
		refs = append([]layerRef{{u.upper, e}}, refs...)
	}
	ents, err := u.readDir(refs)
	if err != nil {
		return err
	}
	for _, de := range ents {
		child, err := u.lookup(refs, de.Name)
		if err != nil {
			return err
		}
		var cn *node
		if n != nil {
			cn = n.childNode(de.Name)
		}
		cp := path.Join(p, de.Name)
		if child[0].e.Attr().IsDir() {
			if err := u.copyUpTree(child, cp, cn); err != nil {
				return err
			}
		} else if child[0].b != u.upper {
			if err := u.copyEntryOf(child[0], cp, cn); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyEntryOf copies src, the top of node n (nil if the kernel knows
// none), to p in the changes layer, keeping n's inode number, and points
// n at the copy. The caller holds u.copyMu, and found src before it took
// it: if p is in the changes layer by now, a copy-up came in between (the
// kernel keeps the name itself from changing), and n takes that copy.
func (u *Union) copyEntryOf(src layerRef, p string, n *node) error {
	if _, err := u.upperLayer.stat(p); err == nil {
		if n == nil || n.inUpper() {
			return nil
		}
		return n.tookCopy(p, -1)
	}
	if n == nil {
		_, err := u.copyEntry(src, p, u.inoOf(src), -1, -1)
		return err
	}
	if _, err := u.copyEntry(src, p, n.id, -1, -1); err != nil {
		return err
	}
	return n.tookCopy(p, -1)
}
