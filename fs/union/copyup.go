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
	if u.upper == nil {
		return syscall.EROFS
	}
	if n.inUpper() {
		return nil
	}
	if _, p := n.parentNode(); p != nil {
		if err := u.copyUp(p); err != nil {
			return err
		}
	}
	u.copyMu.Lock()
	defer u.copyMu.Unlock()
	if n.inUpper() {
		return nil
	}
	p := n.path()
	if p == "" {
		return syscall.EEXIST // an orphan from a bundle: as overlayfs's copy-up fails (see orphan.go)
	}
	src := n.layers()[0]
	if err := u.copyEntry(src, p, n.id); err != nil {
		return err
	}
	return n.tookCopy(p)
}

// tookCopy points n, until now wholly below, at its copy at p in the
// changes layer.
func (n *node) tookCopy(p string) error {
	e, err := n.u.upperLayer.stat(p)
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
// id as its inode number.
func (u *Union) copyEntry(src layerRef, p string, id uint64) (err error) {
	c := u.changes
	work := c.WorkFD()
	tmp := c.TempName()
	a := src.e.Attr()
	typ := a.Mode & syscall.S_IFMT
	defer func() {
		if err != nil {
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
			return err
		}
	case syscall.S_IFREG:
		if err := u.copyData(src, tmp, a.Size); err != nil {
			return err
		}
	case syscall.S_IFLNK:
		target, err := src.b.layer.Readlink(src.e)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, work, tmp); err != nil {
			return err
		}
	default:
		major, minor := a.Rdev>>8&0xfff, a.Rdev&0xff|a.Rdev>>12&0xfff00
		if err := unix.Mknodat(work, tmp, typ|0o600, int(unix.Mkdev(major, minor))); err != nil {
			return err
		}
	}
	if err := u.copyMeta(src, tmp, a, id); err != nil {
		return err
	}
	return unix.Renameat(work, tmp, c.FD(), p)
}

// copyData writes a regular file's data to tmp in the work directory,
// leaving holes where the source has runs of zeros, and syncs it.
func (u *Union) copyData(src layerRef, tmp string, size uint64) error {
	fd, err := unix.Openat(u.changes.WorkFD(), tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	r, err := src.b.layer.Open(src.e)
	if err != nil {
		return err
	}
	defer r.Close()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
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
		}
		off += int64(n)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return err
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
// order: chown clears setuid bits, and setting anything changes ctime).
func (u *Union) copyMeta(src layerRef, tmp string, a *Attr, id uint64) error {
	work := u.changes.WorkFD()
	isLink := a.Mode&syscall.S_IFMT == syscall.S_IFLNK
	if u.changes.Root {
		if err := unix.Fchownat(work, tmp, int(a.UID), int(a.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if !isLink {
		if err := unix.Fchmodat(work, tmp, a.Mode&0o7777, 0); err != nil {
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
		if err := xattrat.Set(work, tmp, x, v, 0); err != nil {
			return fmt.Errorf("xattr %s: %w", x, err)
		}
	}
	switch {
	case u.inoXattr == "":
		var st unix.Stat_t
		if err := unix.Fstatat(work, tmp, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if err := u.changes.RememberIno(st.Ino, id); err != nil {
			return err
		}
	case !isLink || u.changes.Root:
		xattrat.Set(work, tmp, u.inoXattr, []byte(strconv.FormatUint(id, 10)), 0)
	}
	ts := []unix.Timespec{
		{Sec: a.Atime, Nsec: int64(a.AtimeNs)},
		{Sec: a.Mtime, Nsec: int64(a.MtimeNs)},
	}
	return unix.UtimesNanoAt(work, tmp, ts, unix.AT_SYMLINK_NOFOLLOW)
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
		return n.tookCopy(p)
	}
	if n == nil {
		return u.copyEntry(src, p, u.inoOf(src))
	}
	if err := u.copyEntry(src, p, n.id); err != nil {
		return err
	}
	return n.tookCopy(p)
}
