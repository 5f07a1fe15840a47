package cow

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Crash safety of name changes. Each change of a name in the changes layer
// is one system call, or steps ordered so that a crash between them shows
// the old state of the name, never what lies below it:
//
//   - aufs form: the whiteout of NAME is the separate file .wh.NAME, and a
//     layer's own NAME wins over its .wh.NAME (the union looks a name up
//     before its whiteout). So a whiteout is made before the entry it
//     replaces goes, and removed only after the entry that replaces it is
//     in place.
//   - overlayfs form: the whiteout is NAME itself (a 0/0 character device),
//     so it is swapped with an entry prepared in the work directory: a
//     rename replaces a file, RENAME_EXCHANGE swaps a directory, and the
//     loser is removed from the work directory afterwards; a deletion
//     moves the entry there with RENAME_WHITEOUT, which leaves the
//     whiteout in the same step. A server killed in between leaves a
//     temporary there, which the next Open removes.

// HasWhiteout reports whether the changes layer whites out name in dir.
func (c *Changes) HasWhiteout(dir, name string) bool {
	var st unix.Stat_t
	if c.Format == Overlay {
		err := unix.Fstatat(c.fd, filepath.Join(rel(dir), name), &st, unix.AT_SYMLINK_NOFOLLOW)
		return err == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
	}
	return unix.Fstatat(c.fd, filepath.Join(rel(dir), aufsWhiteoutPrefix+name), &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// ReplaceWithWhiteout removes dir/name (a file, or a directory holding
// only whiteouts and markers) and leaves a whiteout in its place, as one
// step for whoever looks. What it removed goes to the work directory and
// is deleted there (see discard).
func (c *Changes) ReplaceWithWhiteout(dir, name string, h Holding) error {
	p := filepath.Join(rel(dir), name)
	if c.Format == Overlay {
		// One call, as overlayfs does it; RENAME_WHITEOUT needs
		// CAP_MKNOD and a file system that makes whiteouts.
		tmp := c.TempName()
		if unix.Renameat2(c.fd, p, c.workFd, tmp, unix.RENAME_WHITEOUT) == nil {
			c.dispose(tmp, h)
			return nil
		}
		if err := c.makeWhiteoutAt(c.workFd, tmp); err != nil {
			return err
		}
		if err := unix.Renameat2(c.workFd, tmp, c.fd, p, unix.RENAME_EXCHANGE); err != nil {
			unix.Unlinkat(c.workFd, tmp, 0)
			return err
		}
		c.dispose(tmp, h)
		return nil
	}
	if err := c.Whiteout(dir, name); err != nil {
		return err
	}
	return c.discard(c.fd, p, h)
}

// ReplaceWhiteout moves an entry made in the work directory at tmp to
// dir/name, where a whiteout stands, as one step for whoever looks.
func (c *Changes) ReplaceWhiteout(tmp, dir, name string, isDir bool) error {
	p := filepath.Join(rel(dir), name)
	if c.Format == Overlay {
		if !isDir {
			return unix.Renameat(c.workFd, tmp, c.fd, p)
		}
		if err := unix.Renameat2(c.workFd, tmp, c.fd, p, unix.RENAME_EXCHANGE); err != nil {
			return err
		}
		return unix.Unlinkat(c.workFd, tmp, 0) // the whiteout
	}
	if err := unix.Renameat2(c.workFd, tmp, c.fd, p, unix.RENAME_NOREPLACE); err != nil {
		return err
	}
	return c.removeAufsWhiteout(dir, name)
}

// MakeTempOpaque marks a directory being prepared in the work directory
// opaque, before it takes its place.
func (c *Changes) MakeTempOpaque(tmp string) error {
	return c.makeOpaqueAt(c.workFd, tmp)
}

// RemoveTemp removes a temporary from the work directory: a file, or a
// directory holding only non-directories. The inode number recorded for
// it goes too when its last name does (a new file may get the number).
func (c *Changes) RemoveTemp(tmp string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(c.workFd, tmp, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if err := c.forgetIfLastName(&st); err != nil {
		return err
	}
	return removeEntry(c.workFd, tmp, st.Mode&unix.S_IFMT == unix.S_IFDIR)
}

// forgetIfLastName drops the inode number record of an entry about to be
// deleted if no other name keeps its inode (directories have one name).
func (c *Changes) forgetIfLastName(st *unix.Stat_t) error {
	if st.Nlink <= 1 || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return c.ForgetIno(st.Ino)
	}
	return nil
}

// removeEntry unlinks a file, or empties a directory of its
// non-directories (whiteouts, markers) and removes it.
func removeEntry(dirfd int, p string, isDir bool) error {
	if !isDir {
		return unix.Unlinkat(dirfd, p, 0)
	}
	if err := clearDirAt(dirfd, p); err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, p, unix.AT_REMOVEDIR)
}

// clearDirAt removes the non-directories in directory p (relative to
// dirfd).
func clearDirAt(dirfd int, p string) error {
	fd, err := unix.Openat(dirfd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), p)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := unix.Unlinkat(dirfd, filepath.Join(p, n), 0); err != nil {
			return fmt.Errorf("clearing %s/%s: %w", p, n, err)
		}
	}
	return nil
}

// Rename moves srcDir/srcName to dstDir/dstName within the changes layer,
// leaving a whiteout at the source when the layers below have that name
// (srcLower) and taking the place of a whiteout at the destination, as one
// step for whoever looks at either name.
func (c *Changes) Rename(srcDir, srcName, dstDir, dstName string, srcIsDir, srcLower bool) error {
	src, dst := filepath.Join(rel(srcDir), srcName), filepath.Join(rel(dstDir), dstName)
	if c.Format == Overlay {
		if srcIsDir && c.HasWhiteout(dstDir, dstName) {
			// A directory cannot replace the whiteout's device: swap them.
			// The whiteout that lands at the source is the one it needs.
			if err := unix.Renameat2(c.fd, src, c.fd, dst, unix.RENAME_EXCHANGE); err != nil {
				return err
			}
			if srcLower {
				return nil
			}
			return unix.Unlinkat(c.fd, src, 0)
		}
		var flags uint
		if srcLower {
			flags = unix.RENAME_WHITEOUT
		}
		return unix.Renameat2(c.fd, src, c.fd, dst, flags)
	}
	if srcLower {
		if err := c.Whiteout(srcDir, srcName); err != nil {
			return err
		}
	}
	if err := unix.Renameat(c.fd, src, c.fd, dst); err != nil {
		if srcLower {
			c.removeAufsWhiteout(srcDir, srcName)
		}
		return err
	}
	return c.removeAufsWhiteout(dstDir, dstName)
}

func (c *Changes) removeAufsWhiteout(dir, name string) error {
	err := unix.Unlinkat(c.fd, filepath.Join(rel(dir), aufsWhiteoutPrefix+name), 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// RenameOverDir moves directory srcDir/srcName onto dstDir/dstName, an
// existing directory of the changes layer that looks empty in the union
// but holds whiteouts (and perhaps an opaque marker), which rename(2)
// will not replace. Its whiteouts must not go before it does, or a crash
// in between would show what they hide.
func (c *Changes) RenameOverDir(srcDir, srcName, dstDir, dstName string, srcLower bool) error {
	src, dst := filepath.Join(rel(srcDir), srcName), filepath.Join(rel(dstDir), dstName)
	if c.Format == Overlay {
		// As overlayfs does: swap in an empty opaque directory first, then
		// rename onto it.
		var st unix.Stat_t
		if err := unix.Fstatat(c.fd, dst, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		tmp := c.TempName()
		if err := unix.Mkdirat(c.workFd, tmp, st.Mode&0o7777); err != nil {
			return err
		}
		err := unix.Fchownat(c.workFd, tmp, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
		if err == nil {
			err = c.makeOpaqueAt(c.workFd, tmp)
		}
		if err == nil {
			err = unix.Renameat2(c.workFd, tmp, c.fd, dst, unix.RENAME_EXCHANGE)
		}
		if rerr := c.RemoveTemp(tmp); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
		return c.Rename(srcDir, srcName, dstDir, dstName, true, srcLower)
	}
	// aufs form: an opaque marker is a file, so no empty stand-in exists.
	// Swap the two; until the old destination is gone from the source's
	// place, the source shows as an empty directory (with its whiteout
	// made first, nothing below it shows through).
	if srcLower {
		if err := c.Whiteout(srcDir, srcName); err != nil {
			return err
		}
	}
	if err := unix.Renameat2(c.fd, src, c.fd, dst, unix.RENAME_EXCHANGE); err != nil {
		if srcLower {
			c.removeAufsWhiteout(srcDir, srcName)
		}
		return err
	}
	return c.discard(c.fd, src, Holding{})
}
