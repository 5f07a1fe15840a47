package xattrat_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/xattrat"
)

// TestCalls runs each call on a file, a directory and a symlink (whose own
// attributes are meant, never its target's), through the *xattrat calls
// and through /proc, and compares with the path calls.
func TestCalls(t *testing.T) {
	for _, viaProc := range []bool{false, true} {
		t.Run(map[bool]string{false: "xattrat", true: "proc"}[viaProc], func(t *testing.T) {
			xattrat.UseProc(viaProc)
			defer xattrat.UseProc(false)
			base := t.TempDir()
			if err := unix.Lsetxattr(base, "user.probe", []byte("x"), 0); errors.Is(err, unix.ENOTSUP) {
				t.Skipf("%s: no user xattrs on this file system", base)
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.MkdirAll(filepath.Join(base, "a/b"), 0o755))
			must(os.WriteFile(filepath.Join(base, "a/b/file"), nil, 0o644))
			must(os.Symlink("file", filepath.Join(base, "a/b/link")))
			dirfd, err := unix.Open(base, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			must(err)
			defer unix.Close(dirfd)

			for _, p := range []string{"a/b/file", "a/b", "."} {
				must(xattrat.Set(dirfd, p, "user.one", []byte("1"), 0))
				must(xattrat.Set(dirfd, p, "user.two", []byte("value two"), unix.XATTR_CREATE))
				if err := xattrat.Set(dirfd, p, "user.two", []byte("again"), unix.XATTR_CREATE); !errors.Is(err, unix.EEXIST) {
					t.Errorf("%s: second create: got %v, want EEXIST", p, err)
				}
				buf := make([]byte, 64)
				n, err := xattrat.Get(dirfd, p, "user.two", buf)
				if got := string(buf[:max(n, 0)]); err != nil || got != "value two" {
					t.Errorf("%s: Get: got %q, %v; want %q", p, got, err, "value two")
				}
				if n, err := xattrat.Get(dirfd, p, "user.two", nil); err != nil || n != len("value two") {
					t.Errorf("%s: Get size: got %d, %v; want %d", p, n, err, len("value two"))
				}
				if _, err := xattrat.Get(dirfd, p, "user.two", make([]byte, 2)); !errors.Is(err, unix.ERANGE) {
					t.Errorf("%s: Get into 2 bytes: got %v, want ERANGE", p, err)
				}
				if _, err := xattrat.Get(dirfd, p, "user.none", buf); !errors.Is(err, unix.ENODATA) {
					t.Errorf("%s: Get missing: got %v, want ENODATA", p, err)
				}
				n, err = xattrat.List(dirfd, p, buf)
				names := strings.Split(strings.TrimSuffix(string(buf[:max(n, 0)]), "\x00"), "\x00")
				slices.Sort(names)
				want := []string{"user.one", "user.two"}
				if p == "." {
					want = []string{"user.one", "user.probe", "user.two"}
				}
				if err != nil || !slices.Equal(names, want) {
					t.Errorf("%s: List: got %q, %v; want %q", p, names, err, want)
				}
				must(xattrat.Remove(dirfd, p, "user.one"))
				if _, err := unix.Lgetxattr(filepath.Join(base, p), "user.one", buf); !errors.Is(err, unix.ENODATA) {
					t.Errorf("%s: after Remove: got %v, want ENODATA", p, err)
				}
				if err := xattrat.Remove(dirfd, p, "user.one"); !errors.Is(err, unix.ENODATA) {
					t.Errorf("%s: second Remove: got %v, want ENODATA", p, err)
				}
			}
			// A symlink's own attributes: user.* are not allowed on
			// symlinks, and its target's are not looked at.
			if err := xattrat.Set(dirfd, "a/b/link", "user.one", []byte("1"), 0); !errors.Is(err, unix.EPERM) {
				t.Errorf("link: Set: got %v, want EPERM (the link's own attribute, not its target's)", err)
			}
			if _, err := xattrat.Get(dirfd, "a/b/link", "user.two", nil); !errors.Is(err, unix.ENODATA) {
				t.Errorf("link: Get: got %v, want ENODATA (the target's is not the link's)", err)
			}
			if _, err := xattrat.Get(dirfd, "a/missing", "user.two", nil); !errors.Is(err, unix.ENOENT) {
				t.Errorf("missing: Get: got %v, want ENOENT", err)
			}
		})
	}
}
