// Package sqfstest builds squashfs images with the real tools at test time
// and captures file trees as comparable snapshots, so that tests can hold
// livefs's view of an image against the kernel's.
package sqfstest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// InCI reports whether tests run under CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") != "" }

// RequireTool returns the path of an external tool, or skips the test with
// a loud reason (fails under CI, where every tool must be installed).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "tool %q not found in PATH (install it: see .ci/run)", name)
	}
	return p
}

// RequireRoot skips (or fails under CI) when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "test needs root (loop mounts, device nodes, ownership)")
	}
}

// Missing skips a test whose tool or kernel feature is absent, loudly, or
// fails it under CI, where nothing may be missing.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI: %s", msg)
	}
	t.Skipf("SKIPPED, NOT PASSED: %s", msg)
}

// MountDevice returns the device ("major:minor") of the mount at mnt as
// /proc/self/mountinfo lists it, and whether it is a mount point. It never
// touches the mount itself, which may hang.
func MountDevice(t testing.TB, mnt string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == mnt {
			return f[2], true
		}
	}
	return "", false
}

// Run runs a command and fails the test with its output on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// Mksquashfs packs src into img with mksquashfs and extra args.
func Mksquashfs(t testing.TB, src, img string, args ...string) {
	t.Helper()
	RequireTool(t, "mksquashfs")
	Run(t, "mksquashfs", append([]string{src, img, "-noappend", "-no-progress", "-quiet"}, args...)...)
}

// Gensquashfs packs src into img with squashfs-tools-ng's gensquashfs.
func Gensquashfs(t testing.TB, src, img string, args ...string) {
	t.Helper()
	RequireTool(t, "gensquashfs")
	Run(t, "gensquashfs", append([]string{"--pack-dir", src, "--keep-time", "--keep-xattr", "--force", "--quiet"}, append(args, img)...)...)
}

// KernelMount loop-mounts img read-only with the kernel's squashfs and
// returns the mount point; the mount is removed when the test ends.
func KernelMount(t testing.TB, img string) string {
	t.Helper()
	RequireRoot(t)
	mnt := t.TempDir()
	Run(t, "mount", "-t", "squashfs", "-o", "loop,ro", img, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	return mnt
}

// Entry is what a test compares about one file.
type Entry struct {
	Type         string // dir, file, symlink, blockdev, chardev, fifo, socket
	Perm         uint32 // 07777
	UID, GID     uint32
	Size         int64
	Nlink        uint32
	MTime        int64
	Major, Minor uint32
	Target       string
	Xattrs       string // "name=hexvalue" sorted, comma separated
	Digest       string // sha256 of file content
	Ino          uint64
	LinkGroup    string // first path (sorted) sharing this inode, for hard links
}

// Tree maps slash-separated paths relative to the root ("." is the root) to entries.
type Tree map[string]*Entry

// Fields lists comparisons to skip.
type Fields struct {
	DirSize, Ino, DirNlink, RootMeta bool
}

// Diff returns human-readable differences between want and got.
func Diff(want, got Tree, skip Fields) []string {
	var out []string
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		w, g := want[k], got[k]
		switch {
		case w == nil:
			out = append(out, fmt.Sprintf("%s: unexpected entry %+v", k, *g))
			continue
		case g == nil:
			out = append(out, fmt.Sprintf("%s: missing, want %+v", k, *w))
			continue
		}
		wc, gc := *w, *g
		if skip.Ino {
			wc.Ino, gc.Ino = 0, 0
		}
		if wc.Type == "dir" {
			if skip.DirSize {
				wc.Size, gc.Size = 0, 0
			}
			if skip.DirNlink {
				wc.Nlink, gc.Nlink = 0, 0
			}
		}
		if k == "." && skip.RootMeta {
			wc, gc = Entry{}, Entry{}
		}
		if wc != gc {
			out = append(out, fmt.Sprintf("%s:\n   got %+v\n  want %+v", k, gc, wc))
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("... and %d more", len(out)-20))
	}
	return out
}

// FinishLinks fills LinkGroup from Ino for non-directories with nlink > 1.
func (tr Tree) FinishLinks() {
	first := map[uint64]string{}
	paths := make([]string, 0, len(tr))
	for p := range tr {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		e := tr[p]
		if e.Type == "dir" || e.Nlink < 2 {
			continue
		}
		if f, ok := first[e.Ino]; ok {
			e.LinkGroup = f
		} else {
			first[e.Ino] = p
			e.LinkGroup = p
		}
	}
}

// FormatXattrs renders xattrs the way Entry.Xattrs holds them.
func FormatXattrs(names []string, value func(string) ([]byte, error)) (string, error) {
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		v, err := value(n)
		if err != nil {
			return "", fmt.Errorf("xattr %s: %w", n, err)
		}
		parts = append(parts, n+"="+hex.EncodeToString(v))
	}
	return strings.Join(parts, ","), nil
}

// Digest hashes a reader's content.
func Digest(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SnapshotDir captures a directory tree as the operating system shows it.
func SnapshotDir(t testing.TB, root string) Tree {
	t.Helper()
	tr := Tree{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			if p != root && errors.Is(err, os.ErrNotExist) {
				// Listed but not there: overlayfs lists the whiteouts of a
				// lower directory it does not merge, and lookups deny them.
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e, err := statEntry(p)
		if err != nil {
			return err
		}
		tr[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	tr.FinishLinks()
	return tr
}

func statEntry(p string) (*Entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, err
	}
	e := &Entry{
		Perm: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Size: st.Size,
		Nlink: uint32(st.Nlink), MTime: st.Mtim.Sec, Ino: st.Ino,
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		e.Type = "dir"
	case syscall.S_IFREG:
		e.Type = "file"
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		e.Digest, err = Digest(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	case syscall.S_IFLNK:
		e.Type = "symlink"
		t, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		e.Target = t
	case syscall.S_IFBLK:
		e.Type = "blockdev"
	case syscall.S_IFCHR:
		e.Type = "chardev"
	case syscall.S_IFIFO:
		e.Type = "fifo"
	case syscall.S_IFSOCK:
		e.Type = "socket"
	}
	if e.Type == "blockdev" || e.Type == "chardev" {
		e.Major, e.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	}
	names, err := listXattrs(p)
	if err != nil {
		return nil, err
	}
	e.Xattrs, err = FormatXattrs(names, func(n string) ([]byte, error) { return getXattr(p, n) })
	return e, err
}

func listXattrs(p string) ([]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if err == unix.ENOTSUP {
			return nil, nil
		}
		return nil, fmt.Errorf("llistxattr %s: %w", p, err)
	}
	var names []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			names = append(names, s)
		}
	}
	return names, nil
}

func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 64<<10+1)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// DropXattrs removes the named-prefix xattrs from every entry (e.g. the
// overlay markers a union hides).
func (tr Tree) DropXattrs(prefixes ...string) {
	for _, e := range tr {
		if e.Xattrs == "" {
			continue
		}
		var keep []string
		for _, kv := range strings.Split(e.Xattrs, ",") {
			drop := false
			for _, p := range prefixes {
				if strings.HasPrefix(kv, p) {
					drop = true
				}
			}
			if !drop {
				keep = append(keep, kv)
			}
		}
		e.Xattrs = strings.Join(keep, ",")
	}
}
