// Package union merges read-only branches (squashfs images and plain
// directories) into one tree with aufs and overlayfs whiteout semantics,
// and serves it over FUSE. It is the one package that speaks syscall.Errno.
package union

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/livefs/livefs/fs/sqfs"
)

// Attr is what a layer reports about one of its entries.
type Attr struct {
	Mode     uint32 // S_IFMT type bits | 07777
	UID, GID uint32
	Size     uint64
	Blocks   uint64 // 512-byte blocks
	Nlink    uint32
	Mtime    int64
	MtimeNs  uint32
	Ctime    int64
	CtimeNs  uint32
	Atime    int64
	AtimeNs  uint32
	Rdev     uint32 // FUSE/Linux new_encode_dev encoding
	Ino      uint64 // the layer's own inode number
}

// IsDir reports whether the entry is a directory.
func (a *Attr) IsDir() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// isWhiteoutDevice reports whether the entry is an overlayfs whiteout: a
// character device with device number 0/0.
func (a *Attr) isWhiteoutDevice() bool {
	return a.Mode&syscall.S_IFMT == syscall.S_IFCHR && a.Rdev == 0
}

// Entry is a layer's handle for one of its files; only the layer that made
// it interprets it.
type Entry interface {
	Attr() *Attr
}

// DirEntry is a name in a layer directory with its type bits.
type DirEntry struct {
	Name string
	Mode uint32 // S_IFMT bits
	Ino  uint64
}

// FileReader reads a regular file of a layer.
type FileReader interface {
	io.ReaderAt
	io.Closer
}

// Layer is one read-only branch. Implementations return errors that wrap
// fs.ErrNotExist for missing names; other errors surface as EIO.
type Layer interface {
	// Name identifies the branch (its path) in messages.
	Name() string
	Root() Entry
	Lookup(dir Entry, name string) (Entry, error)
	ReadDir(dir Entry) ([]DirEntry, error)
	Open(e Entry) (FileReader, error)
	Readlink(e Entry) (string, error)
	// Xattrs lists the extended attribute names of e.
	ListXattr(e Entry) ([]string, error)
	// GetXattr returns one value, or an error wrapping ErrNoXattr.
	GetXattr(e Entry, name string) ([]byte, error)
	// Statfs reports the layer's size for statfs: bytes and inodes used.
	Statfs() (bytes, inodes uint64)
	Close() error
}

// ErrNoXattr is returned by GetXattr for a missing attribute.
var ErrNoXattr = errors.New("no such xattr")

// Whiteout conventions.
const (
	aufsWhiteoutPrefix = ".wh."
	aufsOpaqueMarker   = ".wh..wh..opq"
)

// overlayOpaqueXattrs mark an opaque directory in overlayfs layers.
var overlayOpaqueXattrs = []string{"trusted.overlay.opaque", "user.overlay.opaque"}

// isNotExist reports whether err means a missing name.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOENT)
}

// OpenBranch opens a branch: a directory, or else a squashfs image.
func OpenBranch(path string, opts *sqfs.Options) (Layer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return OpenDirLayer(path)
	}
	r, err := sqfs.Open(path, opts)
	if err != nil {
		return nil, err
	}
	return NewSquashfsLayer(r), nil
}
