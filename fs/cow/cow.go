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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/xattrat"
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

// String is the name ParseFormat reads.
func (f Format) String() string {
	if f == Overlay {
		return "overlay"
	}
	return "aufs"
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

	hasWhiteoutBase atomic.Bool // whiteouts are links to whiteoutBase
	inMemoryFS      bool        // Dir is on tmpfs or ramfs

	// Entries removed from the layer wait in the work directory for
	// a sweeper goroutine to delete them (see discard).
	discardMu    sync.Mutex
	discards     []string // waiting for the sweeper
	pendingBytes int64    // the data they hold, as far as known
	sweeping     bool     // a sweeper is running
	closing      bool     // Close has begun: the sweeper stops
	sweeper      sync.WaitGroup
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
	c.setUpWhiteoutBase()
	var fsStat unix.Statfs_t
	if unix.Fstatfs(c.fd, &fsStat) == nil {
		c.inMemoryFS = fsStat.Type == unix.TMPFS_MAGIC || fsStat.Type == unix.RAMFS_MAGIC
	}
	return c, nil
}

const tempPrefix = "copyup."

// tempStem starts this process's temporaries: another server's (killed)
// cannot have the same names.
var tempStem = tempPrefix + strconv.Itoa(os.Getpid()) + "."

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
		// A new copy's or a discarded entry's inode record goes with it;
		// a temporary hard link to a file shares its inode with a name
		// that stays.
		var st unix.Stat_t
		if unix.Fstatat(c.workFd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			if err := c.forgetIfLastName(&st); err != nil {
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

// Durable reports whether syncing the layer commits anything: not for a
// RAM area, nor for a directory on tmpfs or ramfs, which keep nothing
// across a reboot (their fsync does nothing).
func (c *Changes) Durable() bool { return !c.InRAM() && !c.inMemoryFS }

// FD returns the descriptor of the changes directory: paths of the union
// resolve relative to it.
func (c *Changes) FD() int { return c.fd }

// WorkFD returns the descriptor of the work directory.
func (c *Changes) WorkFD() int { return c.workFd }

// TempName returns a fresh name in the work directory.
func (c *Changes) TempName() string {
	return tempStem + strconv.FormatUint(c.seq.Add(1), 10)
}

// Holding is what an entry being removed holds in the layer, as the
// caller last saw it. It decides whether the entry is deleted at once or
// later (see discard).
type Holding struct {
	Links uint32 // a file's link count: its other names show it
	Bytes int64  // the space its data takes
}

// discard removes p (relative to dirfd): a file, or a directory holding
// only non-directories (whiteouts, markers). It moves it into the work
// directory, where a goroutine deletes it later: deleting a directory's
// whiteouts, or the data of a file, was most of the time of an rmdir or
// an unlink. A server killed before the goroutine got to it leaves a
// temporary, which the next Open removes. Some are deleted at once (see
// dispose).
func (c *Changes) discard(dirfd int, p string, h Holding) error {
	tmp := c.TempName()
	if err := unix.Renameat(dirfd, p, c.workFd, tmp); err != nil {
		return err
	}
	c.dispose(tmp, h)
	return nil
}

// Discarded entries are deleted in batches, sweepDelay apart: waking a
// goroutine for each would cost a wake-up of a thread on another CPU per
// removal. Deleted at once are: a file with other names, whose link count
// they show; a file of bigFileBytes or more, and any entry once the
// waiting ones hold pendingBytesMax, so that space freed to make room is
// free when the removal returns (as with the kernel's file systems); and
// any past maxDiscards waiting.
const (
	sweepDelay      = 5 * time.Millisecond
	maxDiscards     = 1 << 14
	bigFileBytes    = 1 << 20
	pendingBytesMax = 64 << 20
)

// dispose deletes a discarded entry, at once or by the sweeper. The
// entry is gone from the layer either way: a failure to delete it leaves
// it for the next Open, as the sweeper's do.
func (c *Changes) dispose(tmp string, h Holding) {
	if h.Links > 1 || h.Bytes >= bigFileBytes || !c.removeLater(tmp, h.Bytes) {
		c.RemoveTemp(tmp)
	}
}

// removeLater has the sweeper remove tmp from the work directory, and
// reports whether it will.
func (c *Changes) removeLater(tmp string, bytes int64) bool {
	c.discardMu.Lock()
	if c.closing || len(c.discards) >= maxDiscards || c.pendingBytes+bytes > pendingBytesMax {
		c.discardMu.Unlock()
		return false
	}
	c.discards = append(c.discards, tmp)
	c.pendingBytes += bytes
	start := !c.sweeping
	c.sweeping = true
	if start {
		c.sweeper.Add(1)
	}
	c.discardMu.Unlock()
	if start {
		go c.sweep()
	}
	return true
}

// sweep deletes discarded entries until none are left, or the layer
// closes: what is left then stays for the next Open to delete (a RAM layer
// goes whole), so that an unmount is not held up by a large rm -rf.
func (c *Changes) sweep() {
	defer c.sweeper.Done()
	for {
		time.Sleep(sweepDelay)
		c.discardMu.Lock()
		batch, bytes := c.discards, c.pendingBytes
		if len(batch) == 0 || c.closing {
			c.sweeping = false
			c.discardMu.Unlock()
			return
		}
		c.discards = nil
		c.discardMu.Unlock()
		for _, tmp := range batch {
			if c.isClosing() {
				return
			}
			c.RemoveTemp(tmp) // a failure leaves it for the next Open
		}
		c.discardMu.Lock()
		c.pendingBytes -= bytes // what was added since stays counted
		c.discardMu.Unlock()
	}
}

// isClosing reports whether Close has begun.
func (c *Changes) isClosing() bool {
	c.discardMu.Lock()
	defer c.discardMu.Unlock()
	return c.closing
}

// Close releases the lock and the descriptors, and removes a RAM layer.
// Call it once nothing uses the layer any more. Discarded entries not yet
// deleted stay in the work directory for the next Open.
func (c *Changes) Close() error {
	c.discardMu.Lock()
	c.closing = true
	c.discardMu.Unlock()
	c.sweeper.Wait()
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
	if c.Format == Overlay {
		return c.makeWhiteoutAt(c.fd, filepath.Join(rel(dir), name))
	}
	err := c.makeWhiteoutAt(c.fd, filepath.Join(rel(dir), aufsWhiteoutPrefix+name))
	if errors.Is(err, unix.EEXIST) {
		return nil // already whited out
	}
	return err
}

// whiteoutBase is the file in the work directory that whiteouts are hard
// links to, as aufs and overlayfs (since Linux 5.8) make them: a link
// allocates no inode, and removing one frees none, which made up most of
// the time of an unlink of a file below and of the rmdir after it.
const whiteoutBase = "whiteout"

// whiteoutMode is the type and mode of a whiteout.
func (c *Changes) whiteoutMode() uint32 {
	if c.Format == Overlay {
		return unix.S_IFCHR | 0o000 // device 0/0
	}
	return unix.S_IFREG | 0o444 // empty; mknod makes it in one call
}

// makeWhiteoutAt makes a whiteout at p (relative to dirfd): a link to the
// whiteout base where the file system allows, else a file of its own.
func (c *Changes) makeWhiteoutAt(dirfd int, p string) error {
	if c.hasWhiteoutBase.Load() {
		err := unix.Linkat(c.workFd, whiteoutBase, dirfd, p, 0)
		if errors.Is(err, unix.EMLINK) && c.renewWhiteoutBase() == nil {
			err = unix.Linkat(c.workFd, whiteoutBase, dirfd, p, 0)
		}
		if err == nil || errors.Is(err, unix.EEXIST) {
			return err
		}
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
			c.hasWhiteoutBase.Store(false) // no hard links here (vfat, say)
		}
	}
	return unix.Mknodat(dirfd, p, c.whiteoutMode(), 0)
}

// setUpWhiteoutBase makes sure the whiteout base is in the work directory.
// Without one (a file system without hard links, say) every whiteout is a
// file of its own.
func (c *Changes) setUpWhiteoutBase() {
	var st unix.Stat_t
	err := unix.Fstatat(c.workFd, whiteoutBase, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil && st.Mode == c.whiteoutMode() && st.Rdev == 0 && st.Size == 0 {
		c.hasWhiteoutBase.Store(true)
		return
	}
	c.hasWhiteoutBase.Store(c.renewWhiteoutBase() == nil)
}

// renewWhiteoutBase puts a fresh whiteout base in place (the old one may
// have reached the file system's limit of links).
func (c *Changes) renewWhiteoutBase() error {
	tmp := c.TempName()
	if err := unix.Mknodat(c.workFd, tmp, c.whiteoutMode(), 0); err != nil {
		return err
	}
	if err := unix.Renameat(c.workFd, tmp, c.workFd, whiteoutBase); err != nil {
		unix.Unlinkat(c.workFd, tmp, 0)
		return err
	}
	return nil
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
		return xattrat.Set(dirfd, p, name, []byte("y"), 0)
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
func (c *Changes) Remove(dir, name string, h Holding) error {
	return c.discard(c.fd, filepath.Join(rel(dir), name), h)
}
