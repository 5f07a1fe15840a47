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
	ids := owner{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}
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

// owner is the extracting process's own uid and gid: files it creates get
// them already, so chown is needed only where the image says otherwise.
type owner struct{ uid, gid uint32 }

// writeFile writes a regular file, leaving holes where the image has sparse
// blocks, then restores its metadata through the open descriptor.
func writeFile(r *sqfs.Reader, it item, done *atomic.Int64, opts Options, ids owner) error {
	f, err := os.OpenFile(it.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		os.Remove(it.path)
		f, err = os.OpenFile(it.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return err
	}
	if err := writeData(r, it, f, done); err != nil {
		f.Close()
		return err
	}
	if err := applyFileMeta(r, it, f, opts, ids); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeData writes a file's blocks straight from the block cache, leaving
// holes where the image has sparse blocks.
func writeData(r *sqfs.Reader, it item, f *os.File, done *atomic.Int64) error {
	fr, err := r.OpenFile(it.ino)
	if err != nil {
		return err
	}
	holeAtEnd := false
	err = fr.Blocks(func(off int64, n int, data []byte) error {
		holeAtEnd = data == nil
		if data != nil {
			if _, err := f.WriteAt(data, off); err != nil {
				return err
			}
		}
		done.Add(int64(n))
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", it.path, err)
	}
	if holeAtEnd {
		return f.Truncate(fr.Size())
	}
	return nil
}

// applyFileMeta is applyMeta through an open file.
func applyFileMeta(r *sqfs.Reader, it item, f *os.File, opts Options, ids owner) error {
	ino := it.ino
	fd := int(f.Fd())
	if opts.Owners && (ino.UID != ids.uid || ino.GID != ids.gid) {
		if err := unix.Fchown(fd, int(ino.UID), int(ino.GID)); err != nil {
			return fmt.Errorf("%s: chown: %w", it.path, err)
		}
	}
	if err := unix.Fchmod(fd, uint32(ino.Perm)); err != nil {
		return fmt.Errorf("%s: chmod: %w", it.path, err)
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
