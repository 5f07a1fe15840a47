// Package cow is the writable changes layer of a livefs union: a directory
// (persistent, or private in RAM) that holds every file written or
// changed, whiteouts for names deleted from the read-only branches below,
// and opaque markers for directories that hide those below them.
//
// Two on-disk formats are written: aufs's (.wh.NAME files and .wh..wh..opq
// markers, the default, which works for ordinary users and on any file
// system) and overlayfs's (0/0 character devices and the
// trusted.overlay.opaque xattr), so that the kernel's overlayfs can mount a
// changes directory as its upperdir. Reading always accepts both.
package cow

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Format is a whiteout format.
type Format int

const (
	Aufs    Format = iota // .wh.NAME files, .wh..wh..opq markers
	Overlay               // 0/0 character devices, trusted.overlay.opaque=y
)

// ParseFormat reads "aufs" or "overlay".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "aufs", "":
		return Aufs, nil
	case "overlay":
		return Overlay, nil
	}
	return 0, fmt.Errorf("unknown whiteout format %q (want aufs or overlay)", s)
}

const (
	aufsWhiteoutPrefix = ".wh."
	aufsOpaque         = ".wh..wh..opq"
	// AufsWorkDir is where an aufs-format changes directory keeps livefs's
	// own files (its lock, copy-ups in progress). The .wh. prefix keeps it
	// out of every union listing, as aufs's own .wh..wh.plnk is.
	AufsWorkDir = ".wh..wh.livefs"
	lockName    = "livefs.lock"
)

// ErrLocked reports a changes directory another livefs already serves.
var ErrLocked = errors.New("changes directory is in use by another livefs process")

// Changes is an open changes layer.
type Changes struct {
	Dir    string // the changes (upper) directory
	Format Format
	// Root is true when files may get any owner and trusted.* xattrs.
	Root bool

	fd     int // O_PATH descriptor of Dir
	workFd int // directory for copy-ups in progress, on the same file system
	lock   *os.File
	inodes *inodeMap // overlay format: union inode numbers of copied-up files
	temp   string    // a RAM area this layer removes on Close
	seq    atomic.Uint64
}

// Open opens dir as a changes layer. work is the directory for copy-ups in
// progress and the lock; empty means AufsWorkDir inside dir (aufs format
// only: overlayfs would show it). The directory is locked against a second
// livefs.
func Open(dir, work string, format Format) (*Changes, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if work == "" {
		if format == Overlay {
			return nil, fmt.Errorf("%s: the overlay whiteout format needs a separate work directory", dir)
		}
		work = filepath.Join(dir, AufsWorkDir)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, err
	}
	c := &Changes{Dir: dir, Format: format, Root: os.Geteuid() == 0, fd: -1, workFd: -1}
	lock, err := os.OpenFile(filepath.Join(work, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("%s: locking: %w", dir, err)
	}
	c.lock = lock
	if c.fd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		c.Close()
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	if c.workFd, err = unix.Open(work, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		c.Close()
		return nil, &os.PathError{Op: "open", Path: work, Err: err}
	}
	var a, b unix.Stat_t
	if unix.Fstat(c.fd, &a) == nil && unix.Fstat(c.workFd, &b) == nil && a.Dev != b.Dev {
		c.Close()
		return nil, fmt.Errorf("%s and %s are on different file systems: copy-up renames between them", dir, work)
	}
	if format == Overlay {
		if c.inodes, err = openInodeMap(work, true); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.removeStaleTemps(work); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

const tempPrefix = "copyup."

// removeStaleTemps removes the copy-ups a killed server left half done in
// the work directory (the lock says no one else is using them), and the
// inode numbers it recorded for them, which new files may get.
func (c *Changes) removeStaleTemps(work string) error {
	f, err := os.Open(work)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", work, err)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, tempPrefix) {
			continue
		}
		// A new copy's inode record goes with it; a temporary hard link
		// to a file (nlink 2 or more) shares its inode with a name that
		// stays.
		var st unix.Stat_t
		if unix.Fstatat(c.workFd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && (st.Nlink <= 1 || st.Mode&unix.S_IFMT == unix.S_IFDIR) {
			if err := c.ForgetIno(st.Ino); err != nil {
				return err
			}
		}
		if err := os.RemoveAll(filepath.Join(work, n)); err != nil {
			return fmt.Errorf("removing an unfinished copy-up: %w", err)
		}
	}
	return nil
}

// OpenRAM makes a private changes layer in RAM (under /dev/shm, else the
// temporary directory) that Close removes.
func OpenRAM(format Format) (*Changes, error) {
	base := "/dev/shm"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = os.TempDir()
	}
	tmp, err := os.MkdirTemp(base, "livefs-changes-")
	if err != nil {
		return nil, err
	}
	work := ""
	if format == Overlay {
		work = filepath.Join(tmp, "work")
	}
	c, err := Open(filepath.Join(tmp, "upper"), work, format)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	c.temp = tmp
	return c, nil
}

// InodeXattr is the xattr an aufs-format layer records a copied-up file's
// union inode number in ("" for the overlay format, which keeps a map).
func (c *Changes) InodeXattr() string {
	switch {
	case c.Format == Overlay:
		return ""
	case c.Root:
		return "trusted.livefs.ino"
	}
	return "user.livefs.ino"
}

// RememberIno records that the file with inode number upperIno in the
// changes directory is union inode unionIno (overlay format).
func (c *Changes) RememberIno(upperIno, unionIno uint64) error {
	if c.inodes == nil {
		return nil
	}
	return c.inodes.set(upperIno, unionIno)
}

// ForgetIno drops a record when the last name of a file goes.
func (c *Changes) ForgetIno(upperIno uint64) error { return c.RememberIno(upperIno, 0) }

// RememberedIno returns the union inode number recorded for upperIno.
func (c *Changes) RememberedIno(upperIno uint64) (uint64, bool) {
	if c.inodes == nil {
		return 0, false
	}
	return c.inodes.get(upperIno)
}

// InRAM reports whether the layer is a private RAM area.
func (c *Changes) InRAM() bool { return c.temp != "" }

// FD returns the descriptor of the changes directory: paths of the union
// resolve relative to it.
func (c *Changes) FD() int { return c.fd }

// WorkFD returns the descriptor of the work directory.
func (c *Changes) WorkFD() int { return c.workFd }

// TempName returns a fresh name in the work directory.
func (c *Changes) TempName() string {
	return fmt.Sprintf("%s%d.%d", tempPrefix, os.Getpid(), c.seq.Add(1))
}

// Close releases the lock and the descriptors, and removes a RAM layer.
func (c *Changes) Close() error {
	if c.fd >= 0 {
		unix.Close(c.fd)
	}
	if c.workFd >= 0 {
		unix.Close(c.workFd)
	}
	if c.inodes != nil {
		c.inodes.close()
	}
	if c.lock != nil {
		c.lock.Close()
	}
	if c.temp != "" {
		return os.RemoveAll(c.temp)
	}
	return nil
}

// rel turns a union path ("" or "." for the root) into a path for *at calls.
func rel(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// Whiteout hides name in directory dir (a union path) from the branches
// below.
func (c *Changes) Whiteout(dir, name string) error {
	switch c.Format {
	case Overlay:
		return unix.Mknodat(c.fd, filepath.Join(rel(dir), name), unix.S_IFCHR|0o000, 0)
	default:
		fd, err := unix.Openat(c.fd, filepath.Join(rel(dir), aufsWhiteoutPrefix+name), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o444)
		if err != nil {
			return err
		}
		return unix.Close(fd)
	}
}

// MakeOpaque marks directory dir as hiding the directories below it.
func (c *Changes) MakeOpaque(dir string) error {
	return c.makeOpaqueAt(c.fd, rel(dir))
}

func (c *Changes) makeOpaqueAt(dirfd int, p string) error {
	switch c.Format {
	case Overlay:
		name := "user.overlay.opaque"
		if c.Root {
			name = "trusted.overlay.opaque"
		}
		return unix.Lsetxattr(procPathAt(dirfd, p), name, []byte("y"), 0)
	default:
		fd, err := unix.Openat(dirfd, filepath.Join(p, aufsOpaque), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o444)
		if err != nil {
			return err
		}
		return unix.Close(fd)
	}
}

// Remove removes dir/name from the changes layer where nothing below has
// that name: a file, or a directory that is empty as the union shows it
// (its leftover whiteouts and opaque marker go with it).
func (c *Changes) Remove(dir, name string, isDir bool) error {
	return removeEntry(c.fd, filepath.Join(rel(dir), name), isDir)
}

// procPath names an entry for path-only calls (xattrs) relative to the
// changes directory descriptor.
func (c *Changes) procPath(p string) string { return procPathAt(c.fd, rel(p)) }

// procPathAt names p, relative to the directory descriptor dirfd, for
// path-only calls.
func procPathAt(dirfd int, p string) string { return fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, p) }

// ProcPath is procPath for callers outside the package.
func (c *Changes) ProcPath(p string) string { return c.procPath(p) }
