package union

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Orphans: entries whose every name is gone while they are still in use,
// a file unlinked (or renamed over) while open, a directory removed while
// a process is in it. The kernel still sends requests for them (fstat,
// fchmod, fsetxattr on the open file, a reopen through /proc/self/fd),
// but they have no path, and a request must not build one: go-fuse's
// path of a node without parents is the root's. So:
//   - an entry of the changes layer that may still be in use when its
//     name goes keeps an anchor, a descriptor of its own on it, and its
//     requests go through that; its link count shows 0, as the kernel
//     shows it;
//   - a file from a bundle reads on from the bundle; changing it fails
//     with EEXIST, as the kernel's overlayfs fails its copy-up;
//   - a removed directory lists empty; anything else is ENOENT.

// anchorIfHeld gives n, at p in the changes layer and about to lose a
// name there, an anchor if the kernel may use it afterwards: a regular
// file if it is open (readable, to read on from it), anything else always
// (by O_PATH, which opens no fifo or device), since the kernel opens
// fifos, devices and directories without a request the server sees.
// Anchoring every regular file would cost an open per removal.
func (n *node) anchorIfHeld(p string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.anchor != nil || n.refs[0].b != n.u.upper {
		return
	}
	flags := unix.O_PATH
	if n.refs[0].e.Attr().Mode&syscall.S_IFMT == syscall.S_IFREG {
		if n.opens == 0 {
			return
		}
		flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
	}
	fd, err := unix.Openat(n.u.changes.FD(), p, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		n.anchor = os.NewFile(uintptr(fd), p)
	}
}

// anchorFd returns the descriptor of n's anchor, or -1. It stays open
// until the kernel forgets the node.
func (n *node) anchorFd() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.anchor == nil {
		return -1
	}
	return int(n.anchor.Fd())
}

// anchorPath names n's anchor's file for calls that take a path (an
// O_PATH descriptor serves no fchmod or fsetxattr): the anchor's
// /proc/self/fd link, or "" without an anchor.
func (n *node) anchorPath() string {
	fd := n.anchorFd()
	if fd < 0 {
		return ""
	}
	return fmt.Sprintf("/proc/self/fd/%d", fd)
}

// inBundle reports whether n's top layer is a branch below the changes
// layer.
func (n *node) inBundle() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.refs[0].b != n.u.upper
}

// orphanAttr is attr for an orphan of the changes layer: its anchor's, or
// without one the last it was seen with.
func (n *node) orphanAttr() (*Attr, error) {
	var a Attr
	if fd := n.anchorFd(); fd >= 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, err
		}
		a = attrFromStat(&st)
	} else {
		n.mu.Lock()
		a = *n.refs[0].e.Attr()
		n.mu.Unlock()
	}
	a.Nlink = 0
	return &a, nil
}

// setOrphanAttr is Setattr for an orphan.
func (n *node) setOrphanAttr(f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.inBundle() {
		return syscall.EEXIST
	}
	anchor := n.anchorPath()
	if anchor == "" {
		return syscall.ENOENT
	}
	if sz, ok := in.GetSize(); ok {
		w := -1
		if h, ok := f.(*handle); ok && h.fd >= 0 && h.writable {
			w = h.fd
		} else {
			var err error
			if w, err = n.reopenOrphan(unix.O_WRONLY); err != nil {
				return toErrno(err)
			}
			defer unix.Close(w)
		}
		if err := unix.Ftruncate(w, int64(sz)); err != nil {
			return toErrno(err)
		}
	}
	if err := setAttrAt(unix.AT_FDCWD, anchor, 0, in); err != nil {
		return toErrno(err)
	}
	a, err := n.orphanAttr()
	if err != nil {
		return toErrno(err)
	}
	fillAttr(&out.Attr, a, n.id)
	return 0
}

// reopenAnchor is a reader of an orphan's file, through its anchor.
func reopenAnchor(anchor *os.File) (FileReader, error) {
	fd, err := unix.FcntlInt(anchor.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return osFile{os.NewFile(uintptr(fd), anchor.Name())}, nil
}

// reopenOrphan opens an orphan of the changes layer anew, as an open of
// /proc/self/fd does: through its anchor.
func (n *node) reopenOrphan(flags int) (int, error) {
	anchor := n.anchorPath()
	if anchor == "" {
		return -1, syscall.ENOENT
	}
	return unix.Open(anchor, flags|unix.O_CLOEXEC, 0)
}

// isOrphan reports whether t, n's top layer, is an orphan's in the changes
// layer (top names it by path, and an orphan has none).
func (n *node) isOrphan(t layerRef) bool {
	e, ok := t.e.(*dirEntry)
	return t.b == n.u.upper && ok && e.rel == ""
}

// orphanXattr reads an xattr of an orphan of the changes layer.
func (n *node) orphanXattr(name string) ([]byte, error) {
	anchor := n.anchorPath()
	if anchor == "" {
		return nil, syscall.ENOENT
	}
	v, err := xattrCall(func(b []byte) (int, error) { return unix.Getxattr(anchor, name, b) })
	if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
		return nil, ErrNoXattr
	}
	return v, err
}

// orphanXattrNames lists the xattrs of an orphan of the changes layer.
func (n *node) orphanXattrNames() ([]string, error) {
	anchor := n.anchorPath()
	if anchor == "" {
		return nil, syscall.ENOENT
	}
	buf, err := xattrCall(func(b []byte) (int, error) { return unix.Listxattr(anchor, b) })
	if err != nil {
		return nil, err
	}
	return splitXattrNames(buf), nil
}

// changeOrphanXattr runs an xattr change of an orphan on its anchor's
// path. name is the xattr's, for a removal, which fails on a bundle's file
// only if there is something to remove.
func (n *node) changeOrphanXattr(name string, call func(anchor string) error) syscall.Errno {
	if n.inBundle() {
		if name != "" {
			t := n.top()
			if _, err := t.b.layer.GetXattr(t.e, name); errors.Is(err, ErrNoXattr) {
				return syscall.ENODATA
			}
		}
		return syscall.EEXIST
	}
	anchor := n.anchorPath()
	if anchor == "" {
		return syscall.ENOENT
	}
	return toErrno(call(anchor))
}

// setAttrAt applies the owner, mode and times of in to p relative to
// dirfd; flags (AT_SYMLINK_NOFOLLOW, or 0 for an anchor's /proc link)
// apply to owner and times, as chmod is never asked of a symlink.
func setAttrAt(dirfd int, p string, flags int, in *fuse.SetAttrIn) error {
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := unix.Fchownat(dirfd, p, u, g, flags); err != nil {
			return err
		}
	}
	if mode, ok := in.GetMode(); ok {
		if err := unix.Fchmodat(dirfd, p, mode&0o7777, 0); err != nil {
			return err
		}
	}
	atime, aok := in.GetATime()
	mtime, mok := in.GetMTime()
	if aok || mok || in.Valid&(fuse.FATTR_ATIME_NOW|fuse.FATTR_MTIME_NOW) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
			ts[0] = unix.Timespec{Nsec: unix.UTIME_NOW}
		}
		if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
			ts[1] = unix.Timespec{Nsec: unix.UTIME_NOW}
		}
		if err := unix.UtimesNanoAt(dirfd, p, ts, flags); err != nil {
			return err
		}
	}
	return nil
}
