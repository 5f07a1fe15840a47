package union

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/xattrat"
)

// DirLayer is a branch backed by a directory. It holds a descriptor of the
// directory opened at creation and resolves everything relative to it, so
// it keeps working when its path is no longer reachable (after a pivot).
type DirLayer struct {
	name     string
	fd       int
	borrowed bool // fd belongs to someone else (the changes layer)
}

var _ Layer = (*DirLayer)(nil)

// OpenDirLayer opens the directory at p as a branch.
func OpenDirLayer(p string) (*DirLayer, error) {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open branch", Path: p, Err: err}
	}
	return &DirLayer{name: p, fd: fd}, nil
}

type dirEntry struct {
	rel  string // path relative to the branch root; "." for the root
	attr Attr
}

func (e *dirEntry) Attr() *Attr { return &e.attr }

func (l *DirLayer) stat(rel string) (*dirEntry, error) { return l.statOpen(rel, -1) }

// statOpen is stat of rel, through fd, rel's open descriptor, if it is not
// -1.
func (l *DirLayer) statOpen(rel string, fd int) (*dirEntry, error) {
	var st unix.Stat_t
	var err error
	switch {
	case fd >= 0:
		err = unix.Fstat(fd, &st)
	case rel == ".":
		err = unix.Fstatat(l.fd, "", &st, unix.AT_SYMLINK_NOFOLLOW|unix.AT_EMPTY_PATH)
	default:
		err = unix.Fstatat(l.fd, rel, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return nil, &os.PathError{Op: "stat", Path: path.Join(l.name, rel), Err: err}
	}
	return &dirEntry{rel: rel, attr: attrFromStat(&st)}, nil
}

func attrFromStat(st *unix.Stat_t) Attr {
	return Attr{
		Mode: st.Mode, UID: st.Uid, GID: st.Gid, Size: uint64(st.Size), Blocks: uint64(st.Blocks),
		Nlink: uint32(st.Nlink), Ino: st.Ino,
		Mtime: st.Mtim.Sec, MtimeNs: uint32(st.Mtim.Nsec),
		Ctime: st.Ctim.Sec, CtimeNs: uint32(st.Ctim.Nsec),
		Atime: st.Atim.Sec, AtimeNs: uint32(st.Atim.Nsec),
		Rdev: uint32(unix.Major(st.Rdev))<<8 | unix.Minor(st.Rdev)&0xff | (unix.Minor(st.Rdev)&^0xff)<<12,
	}
}

func (l *DirLayer) Name() string { return l.name }

func (l *DirLayer) Root() Entry {
	e, err := l.stat(".")
	if err != nil {
		return &dirEntry{rel: ".", attr: Attr{Mode: syscall.S_IFDIR | 0o755, Nlink: 2}}
	}
	return e
}

func (l *DirLayer) Lookup(dir Entry, name string) (Entry, error) {
	return l.stat(path.Join(dir.(*dirEntry).rel, name))
}

// An entry of an orphan (see orphan.go) has the path "", which some calls
// (xattrs through /proc, say) would take for the branch's root: it is
// refused as absent.

func (l *DirLayer) open(rel string, flags int) (int, error) {
	if rel == "" {
		return -1, syscall.ENOENT
	}
	if rel == "." {
		return unix.Openat(l.fd, ".", flags|unix.O_CLOEXEC, 0)
	}
	return unix.Openat(l.fd, rel, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
}

// direntBuffers hold getdents results: an rmdir lists the directory it
// removes, and rm -rf makes one for each directory.
var direntBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (l *DirLayer) ReadDir(dir Entry) ([]DirEntry, error) {
	rel := dir.(*dirEntry).rel
	fd, err := l.open(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, &os.PathError{Op: "opendir", Path: path.Join(l.name, rel), Err: err}
	}
	defer unix.Close(fd)
	var out []DirEntry
	bp := direntBuffers.Get().(*[]byte)
	defer direntBuffers.Put(bp)
	buf := *bp
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, &os.PathError{Op: "getdents", Path: path.Join(l.name, rel), Err: err}
		}
		if n <= 0 {
			return out, nil
		}
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				return nil, fmt.Errorf("%s: malformed directory entry from getdents", path.Join(l.name, rel))
			}
			ino := binary.NativeEndian.Uint64(b[0:])
			typ := b[18]
			name := b[19:reclen]
			if i := strings.IndexByte(string(name), 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if s := string(name); s != "." && s != ".." {
				out = append(out, DirEntry{Name: s, Mode: uint32(typ) << 12, Ino: ino})
			}
		}
	}
}

type osFile struct{ *os.File }

func (l *DirLayer) Open(e Entry) (FileReader, error) {
	rel := e.(*dirEntry).rel
	fd, err := l.open(rel, unix.O_RDONLY)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path.Join(l.name, rel), Err: err}
	}
	return osFile{os.NewFile(uintptr(fd), path.Join(l.name, rel))}, nil
}

func (l *DirLayer) Readlink(e Entry) (string, error) {
	rel := e.(*dirEntry).rel
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(l.fd, rel, buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: path.Join(l.name, rel), Err: err}
	}
	return string(buf[:n]), nil
}

func (l *DirLayer) ListXattr(e Entry) ([]string, error) {
	rel := e.(*dirEntry).rel
	if rel == "" {
		return nil, syscall.ENOENT
	}
	buf, err := xattrCall(func(b []byte) (int, error) { return xattrat.List(l.fd, rel, b) })
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	return splitXattrNames(buf), nil
}

// splitXattrNames splits a listxattr result.
func splitXattrNames(buf []byte) []string {
	var names []string
	for _, s := range strings.Split(string(buf), "\x00") {
		if s != "" {
			names = append(names, s)
		}
	}
	return names
}

func (l *DirLayer) GetXattr(e Entry, name string) ([]byte, error) {
	rel := e.(*dirEntry).rel
	if rel == "" {
		return nil, syscall.ENOENT
	}
	v, err := xattrCall(func(b []byte) (int, error) { return xattrat.Get(l.fd, rel, name, b) })
	if err != nil {
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			return nil, ErrNoXattr
		}
		return nil, err
	}
	return v, nil
}

// xattrCall runs an xattr call with a small buffer first (most values and
// lists are short, and these calls come with every lookup of the changes
// layer), and with one of the size the kernel reports when that is short.
func xattrCall(call func([]byte) (int, error)) ([]byte, error) {
	var small [256]byte
	n, err := call(small[:])
	if err == nil {
		return append([]byte(nil), small[:n]...), nil
	}
	for errors.Is(err, unix.ERANGE) {
		if n, err = call(nil); err != nil {
			return nil, err
		}
		buf := make([]byte, n+64) // room for a value grown in between
		if n, err = call(buf); err == nil {
			return buf[:n], nil
		}
	}
	return nil, err
}

func (l *DirLayer) Statfs() (bytes, inodes uint64) {
	var st unix.Statfs_t
	if unix.Fstatfs(l.fd, &st) != nil {
		return 0, 0
	}
	return (st.Blocks - st.Bfree) * uint64(st.Bsize), st.Files - st.Ffree
}

func (l *DirLayer) Close() error {
	if l.borrowed {
		return nil
	}
	return unix.Close(l.fd)
}
