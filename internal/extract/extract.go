// Package extract writes the contents of a squashfs image to a directory,
// restoring what the image records: modes, owners, times, xattrs, hard
// links, device nodes, fifos, sockets and holes in sparse files.
package extract

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/sqfs"
)

// Options control an extraction.
type Options struct {
	// Path is the subtree of the image to extract ("." or "" for all).
	Path string
	// Workers is the number of files written at once (default 2×GOMAXPROCS).
	Workers int
	// Owners restores uid/gid and creates device nodes (default: when root).
	Owners bool
	// Progress, if set, is called from time to time with bytes written so
	// far and the total.
	Progress func(done, total int64)
	// Warn receives problems that do not stop the extraction (an xattr the
	// target file system refuses, a device node an ordinary user cannot make).
	Warn func(error)
}

// Stats summarises an extraction.
type Stats struct {
	Files, Dirs, Symlinks, Links, Specials int
	Bytes                                  int64
}

type item struct {
	path string // destination path
	ino  *sqfs.Inode
}

// Extract writes the image (or opts.Path inside it) into dst, which is
// created if missing. Existing files in dst are replaced.
func Extract(r *sqfs.Reader, dst string, opts Options) (Stats, error) {
	var st Stats
	if opts.Path == "" {
		opts.Path = "."
	}
	if opts.Workers <= 0 {
		opts.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if opts.Warn == nil {
		opts.Warn = func(error) {}
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return st, err
	}
	// Workers write files while the walk goes on; the walk creates each
	// directory before it sends the files inside it.
	var done atomic.Int64
	var total atomic.Int64
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	jobs := make(chan item, 256)
	var wg sync.WaitGroup
	stopProgress := make(chan struct{})
	if opts.Progress != nil {
		go progressLoop(&done, &total, opts.Progress, stopProgress)
	}
	ids := owner{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), umask: processUmask()}
	for w := 0; w < opts.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range jobs {
				if err := writeFile(r, it, &done, opts, ids); err != nil {
					fail(err)
				}
			}
		}()
	}

	var dirs, others []item
	links := map[uint32]string{} // inode number -> first destination path
	var hardlinks [][2]string    // {existing, new}
	files := 0
	err := r.WalkFrom(opts.Path, func(p string, ino *sqfs.Inode, err error) error {
		if err != nil {
			return err
		}
		// Like unsquashfs, a subtree keeps its path inside the image.
		target := filepath.Join(dst, p)
		if p == opts.Path {
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
		}
		it := item{target, ino}
		if ino.Type == sqfs.TypeDir {
			if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			dirs = append(dirs, it)
			st.Dirs++
			return nil
		}
		if ino.Nlink > 1 {
			if first, ok := links[ino.Number]; ok {
				hardlinks = append(hardlinks, [2]string{first, target})
				return nil
			}
			links[ino.Number] = target
		}
		if ino.Type == sqfs.TypeFile {
			files++
			total.Add(int64(ino.Size))
			r.PrefetchStart(ino)
			jobs <- it
		} else {
			others = append(others, it)
		}
		return nil
	})
	close(jobs)
	wg.Wait()
	close(stopProgress)
	if err != nil {
		return st, err
	}
	if firstErr != nil {
		return st, firstErr
	}
	st.Files, st.Bytes = files, done.Load()

	for _, it := range others {
		if err := makeSpecial(it, opts); err != nil {
			return st, err
		}
		if it.ino.Type == sqfs.TypeSymlink {
			st.Symlinks++
		} else {
			st.Specials++
		}
		if err := applyMeta(r, it, opts); err != nil {
			return st, err
		}
	}
	for _, l := range hardlinks {
		os.Remove(l[1])
		if err := os.Link(l[0], l[1]); err != nil {
			return st, err
		}
		st.Links++
	}
	// Directory metadata last, deepest first, so that writing their
	// contents does not change their times or trip over their modes.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := applyMeta(r, dirs[i], opts); err != nil {
			return st, err
		}
	}
	if opts.Progress != nil {
		opts.Progress(total.Load(), total.Load())
	}
	return st, nil
}

func progressLoop(done, total *atomic.Int64, report func(done, total int64), stop chan struct{}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			report(done.Load(), total.Load())
		}
	}
}

// owner is the extracting process's own uid, gid and umask: files it
// creates get them already, so chown is needed only where the image says
// otherwise, and chmod only where the umask or a later chown would change
// the mode a file was created with.
type owner struct{ uid, gid, umask uint32 }

// processUmask reads the umask without changing it (umask(2) can only set
// it, and the process is multi-threaded). Where it cannot be read, every
// mode is set with chmod.
func processUmask() uint32 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o777
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 0o777
}

// writeFile writes a regular file, leaving holes where the image has sparse
// blocks, then restores its metadata through the open descriptor. It uses
// the descriptor directly: an os.File would cost five more system calls per
// file (poller registration, blocking-mode changes), a tenth of a small
// file's extraction.
func writeFile(r *sqfs.Reader, it item, done *atomic.Int64, opts Options, ids owner) error {
	ino := it.ino
	perm := uint32(ino.Perm) & 0o7777
	chown := opts.Owners && (ino.UID != ids.uid || ino.GID != ids.gid)
	// Created with its final mode where nothing changes it later: no bit
	// the umask strips, no setuid/setgid/sticky bit, no chown (which
	// clears setuid and setgid). Otherwise 0600 and chmod at the end.
	mode, chmod := uint32(0o600), true
	if perm&^0o777 == 0 && perm&ids.umask == 0 && !chown {
		mode, chmod = perm, false
	}
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC
	fd, err := unix.Open(it.path, flags, mode)
	if err == unix.EEXIST {
		os.Remove(it.path)
		fd, err = unix.Open(it.path, flags, mode)
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: it.path, Err: err}
	}
	err = writeData(r, it, fd, done)
	if err == nil {
		err = applyFileMeta(r, it, fd, opts, chown, chmod)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = &os.PathError{Op: "close", Path: it.path, Err: cerr}
	}
	return err
}

// writeData writes a file's blocks straight from the block cache, leaving
// holes where the image has sparse blocks.
func writeData(r *sqfs.Reader, it item, fd int, done *atomic.Int64) error {
	fr, err := r.OpenFile(it.ino)
	if err != nil {
		return err
	}
	holeAtEnd := false
	err = fr.Blocks(func(off int64, n int, data []byte) error {
		holeAtEnd = data == nil
		for len(data) > 0 {
			k, err := unix.Pwrite(fd, data, off)
			if err != nil {
				return &os.PathError{Op: "write", Path: it.path, Err: err}
			}
			data, off = data[k:], off+int64(k)
		}
		done.Add(int64(n))
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", it.path, err)
	}
	if holeAtEnd {
		if err := unix.Ftruncate(fd, fr.Size()); err != nil {
			return &os.PathError{Op: "truncate", Path: it.path, Err: err}
		}
	}
	return nil
}

// applyFileMeta is applyMeta through an open file, with the owner and the
// mode set only where writeFile found them needed.
func applyFileMeta(r *sqfs.Reader, it item, fd int, opts Options, chown, chmod bool) error {
	ino := it.ino
	if chown {
		if err := unix.Fchown(fd, int(ino.UID), int(ino.GID)); err != nil {
			return fmt.Errorf("%s: chown: %w", it.path, err)
		}
	}
	if chmod {
		if err := unix.Fchmod(fd, uint32(ino.Perm)); err != nil {
			return fmt.Errorf("%s: chmod: %w", it.path, err)
		}
	}
	if ino.HasXattrs() {
		xs, err := r.Xattrs(ino)
		if err != nil {
			return err
		}
		for _, x := range xs {
			if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
				opts.Warn(fmt.Errorf("%s: xattr %s: %w", it.path, x.Name, err))
			}
		}
	}
	tv := unix.NsecToTimeval(int64(ino.MTime) * 1e9)
	return unix.Futimes(fd, []unix.Timeval{tv, tv})
}

func makeSpecial(it item, opts Options) error {
	os.Remove(it.path)
	ino := it.ino
	switch ino.Type {
	case sqfs.TypeSymlink:
		return os.Symlink(ino.Target, it.path)
	case sqfs.TypeFifo:
		return unix.Mkfifo(it.path, 0o600)
	case sqfs.TypeSocket:
		return unix.Mknod(it.path, unix.S_IFSOCK|0o600, 0)
	case sqfs.TypeBlockDev, sqfs.TypeCharDev:
		mode := uint32(unix.S_IFCHR)
		if ino.Type == sqfs.TypeBlockDev {
			mode = unix.S_IFBLK
		}
		err := unix.Mknod(it.path, mode|0o600, int(unix.Mkdev(ino.Major(), ino.Minor())))
		if err != nil && !opts.Owners {
			opts.Warn(fmt.Errorf("%s: cannot create device node: %w", it.path, err))
			return nil
		}
		return err
	}
	return nil
}

// applyMeta restores owner, mode, xattrs and times, in that order: chown
// clears setuid bits and times must be set last.
func applyMeta(r *sqfs.Reader, it item, opts Options) error {
	ino, p := it.ino, it.path
	if opts.Owners {
		if err := os.Lchown(p, int(ino.UID), int(ino.GID)); err != nil {
			return err
		}
	}
	if ino.Type != sqfs.TypeSymlink {
		if err := unix.Chmod(p, uint32(ino.Perm)); err != nil {
			if errors.Is(err, os.ErrNotExist) && ino.Type != sqfs.TypeFile && ino.Type != sqfs.TypeDir {
				return nil // a device node we were not allowed to make
			}
			return err
		}
	}
	xs, err := r.Xattrs(ino)
	if err != nil {
		return err
	}
	for _, x := range xs {
		if err := unix.Lsetxattr(p, x.Name, x.Value, 0); err != nil {
			opts.Warn(fmt.Errorf("%s: xattr %s: %w", p, x.Name, err))
		}
	}
	ts := unix.NsecToTimespec(int64(ino.MTime) * 1e9)
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
