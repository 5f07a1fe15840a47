package union

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/livefs/livefs/fs/sqfs"
)

// SquashfsLayer is a branch backed by a squashfs image.
type SquashfsLayer struct {
	r *sqfs.Reader
}

var _ Layer = (*SquashfsLayer)(nil)

// NewSquashfsLayer wraps an open image; Close closes it.
func NewSquashfsLayer(r *sqfs.Reader) *SquashfsLayer { return &SquashfsLayer{r: r} }

type sqfsEntry struct {
	ino  *sqfs.Inode
	attr Attr

	// Directories: the listing, read once on first use, so that the
	// lookups that follow a readdir (and the whiteout probes of a union)
	// are binary searches instead of scans.
	listOnce sync.Once
	list     []sqfs.DirEntry
	listErr  error
}

func (e *sqfsEntry) listing(r *sqfs.Reader) ([]sqfs.DirEntry, error) {
	e.listOnce.Do(func() { e.list, e.listErr = r.ReadDirInode(e.ino) })
	return e.list, e.listErr
}

func (e *sqfsEntry) Attr() *Attr { return &e.attr }

func (l *SquashfsLayer) entry(ino *sqfs.Inode) *sqfsEntry {
	e := &sqfsEntry{ino: ino}
	a := &e.attr
	a.Mode = ino.UnixMode()
	a.UID, a.GID = ino.UID, ino.GID
	a.Size = ino.Size
	a.Nlink = ino.Nlink
	a.Mtime = int64(ino.MTime)
	a.Ctime, a.Atime = a.Mtime, a.Mtime
	a.Rdev = ino.Rdev
	a.Ino = uint64(ino.Number)
	if ino.Type == sqfs.TypeFile {
		a.Blocks = (ino.Size + 511) / 512
	}
	return e
}

func (l *SquashfsLayer) Name() string { return l.r.Name() }
func (l *SquashfsLayer) Root() Entry  { return l.entry(l.r.Root()) }

func (l *SquashfsLayer) Lookup(dir Entry, name string) (Entry, error) {
	d := dir.(*sqfsEntry)
	if d.ino.Type != sqfs.TypeDir {
		return nil, syscall.ENOTDIR
	}
	ents, err := d.listing(l.r)
	if err != nil {
		return nil, err
	}
	i, found := slices.BinarySearchFunc(ents, name, func(e sqfs.DirEntry, name string) int { return strings.Compare(e.Name, name) })
	if !found {
		return nil, syscall.ENOENT
	}
	ino, err := l.r.EntryInode(ents[i])
	if err != nil {
		return nil, err
	}
	return l.entry(ino), nil
}

func (l *SquashfsLayer) ReadDir(dir Entry) ([]DirEntry, error) {
	ents, err := dir.(*sqfsEntry).listing(l.r)
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, len(ents))
	for i, e := range ents {
		out[i] = DirEntry{Name: e.Name, Mode: sqfsTypeBits[e.Type], Ino: uint64(e.InodeNumber)}
	}
	return out, nil
}

var sqfsTypeBits = [...]uint32{sqfs.TypeDir: syscall.S_IFDIR, sqfs.TypeFile: syscall.S_IFREG, sqfs.TypeSymlink: syscall.S_IFLNK,
	sqfs.TypeBlockDev: syscall.S_IFBLK, sqfs.TypeCharDev: syscall.S_IFCHR, sqfs.TypeFifo: syscall.S_IFIFO, sqfs.TypeSocket: syscall.S_IFSOCK}

type sqfsFile struct{ *sqfs.FileReader }

func (sqfsFile) Close() error { return nil }

func (l *SquashfsLayer) Open(e Entry) (FileReader, error) {
	fr, err := l.r.OpenFile(e.(*sqfsEntry).ino)
	if err != nil {
		return nil, err
	}
	return sqfsFile{fr}, nil
}

func (l *SquashfsLayer) Readlink(e Entry) (string, error) {
	ino := e.(*sqfsEntry).ino
	if ino.Type != sqfs.TypeSymlink {
		return "", syscall.EINVAL
	}
	return ino.Target, nil
}

func (l *SquashfsLayer) ListXattr(e Entry) ([]string, error) {
	xs, err := l.r.Xattrs(e.(*sqfsEntry).ino)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(xs))
	for i, x := range xs {
		names[i] = x.Name
	}
	return names, nil
}

func (l *SquashfsLayer) GetXattr(e Entry, name string) ([]byte, error) {
	v, err := l.r.Xattr(e.(*sqfsEntry).ino, name)
	if errors.Is(err, sqfs.ErrNoXattr) {
		return nil, ErrNoXattr
	}
	return v, err
}

func (l *SquashfsLayer) Statfs() (bytes, inodes uint64) {
	sb := l.r.Superblock()
	return sb.BytesUsed, uint64(sb.InodeCount)
}

func (l *SquashfsLayer) Close() error { return l.r.Close() }
