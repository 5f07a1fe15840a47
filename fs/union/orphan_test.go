package union_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/internal/sqfstest"
)

// orphanCase makes an entry in root, opens it, and takes its name away.
type orphanCase struct {
	name string
	make func(root string) (fd int, err error)
}

var orphanCases = []orphanCase{
	{"new file", func(root string) (int, error) {
		fd, err := unix.Open(filepath.Join(root, "new"), unix.O_RDWR|unix.O_CREAT, 0o644)
		if err == nil {
			_, err = unix.Write(fd, []byte("new data\n"))
		}
		if err == nil {
			err = unix.Unlink(filepath.Join(root, "new"))
		}
		return fd, err
	}},
	{"copied-up file", func(root string) (int, error) {
		fd, err := unix.Open(filepath.Join(root, "lower-a"), unix.O_RDWR|unix.O_APPEND, 0)
		if err == nil {
			_, err = unix.Write(fd, []byte("appended\n"))
		}
		if err == nil {
			err = unix.Unlink(filepath.Join(root, "lower-a"))
		}
		return fd, err
	}},
	{"bundle file", func(root string) (int, error) {
		fd, err := unix.Open(filepath.Join(root, "lower-b"), unix.O_RDONLY, 0)
		if err == nil {
			err = unix.Unlink(filepath.Join(root, "lower-b"))
		}
		return fd, err
	}},
	{"renamed over", func(root string) (int, error) {
		fd, err := unix.Open(filepath.Join(root, "victim"), unix.O_RDWR|unix.O_CREAT, 0o640)
		if err == nil {
			_, err = unix.Write(fd, []byte("victim\n"))
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(root, "winner"), []byte("winner\n"), 0o644)
		}
		if err == nil {
			err = unix.Rename(filepath.Join(root, "winner"), filepath.Join(root, "victim"))
		}
		return fd, err
	}},
	{"fifo", func(root string) (int, error) {
		// The kernel opens a fifo without a word to the server, and its
		// owner changes after it was made.
		p := filepath.Join(root, "fifo")
		if err := unix.Mkfifo(p, 0o640); err != nil {
			return -1, err
		}
		fd, err := unix.Open(p, unix.O_RDWR|unix.O_NONBLOCK, 0)
		if err == nil {
			err = unix.Chown(p, 1000, 2000)
		}
		if err == nil {
			err = unix.Unlink(p)
		}
		return fd, err
	}},
	{"removed directory", func(root string) (int, error) {
		if err := unix.Mkdir(filepath.Join(root, "gone"), 0o755); err != nil {
			return -1, err
		}
		fd, err := unix.Open(filepath.Join(root, "gone"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err == nil {
			err = unix.Rmdir(filepath.Join(root, "gone"))
		}
		return fd, err
	}},
}

// orphanOps applies what a program may do to an open entry whose name is
// gone, and describes the results.
func orphanOps(t *testing.T, root string, c orphanCase) []string {
	t.Helper()
	fd, err := c.make(root)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer unix.Close(fd)
	var out []string
	say := func(op string, err error, v ...any) {
		s := op + ": " + errStr(err)
		if err == nil && len(v) > 0 {
			s += " " + fmt.Sprint(v...)
		}
		out = append(out, s)
	}
	stat := func(op string, withTime bool) {
		var st unix.Stat_t
		err := unix.Fstat(fd, &st)
		v := fmt.Sprintf("mode %o size %d nlink %d uid %d", st.Mode, st.Size, st.Nlink, st.Uid)
		if withTime { // set explicitly; before, the two sides may straddle a second
			v += fmt.Sprintf(" mtime %d", st.Mtim.Sec)
		}
		say(op, err, v)
	}
	stat("fstat", false)
	_, err = unix.Write(fd, []byte("more\n"))
	say("write", err)
	buf := make([]byte, 256)
	k, err := unix.Pread(fd, buf, 0)
	say("pread", err, fmt.Sprintf("%q", buf[:max(k, 0)]))
	say("ftruncate", unix.Ftruncate(fd, 3))
	say("fchmod", unix.Fchmod(fd, 0o600))
	say("fchown", unix.Fchown(fd, 1000, 1000))
	say("futimens", unix.UtimesNanoAt(fd, "", []unix.Timespec{{Sec: 1000}, {Sec: 2000}}, unix.AT_EMPTY_PATH))
	stat("fstat after changes", true)
	say("fsetxattr", unix.Fsetxattr(fd, "user.k", []byte("v"), 0))
	k, err = unix.Fgetxattr(fd, "user.k", buf)
	say("fgetxattr", err, fmt.Sprintf("%q", buf[:max(k, 0)]))
	k, err = unix.Flistxattr(fd, buf)
	var names []string
	for _, n := range strings.Split(string(buf[:max(k, 0)]), "\x00") {
		if strings.HasPrefix(n, "user.") {
			names = append(names, n)
		}
	}
	say("flistxattr", err, names)
	say("fremovexattr", unix.Fremovexattr(fd, "user.k"))
	rfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY, 0)
	if err == nil {
		k, err = unix.Pread(rfd, buf, 0)
		unix.Close(rfd)
	}
	say("reopen", err, fmt.Sprintf("%q", buf[:max(k, 0)]))
	n, err := unix.Getdents(fd, buf)
	say("getdents", err, n > 0)
	return out
}

var sizeless = regexp.MustCompile(` size [0-9]+`)

// TestOrphansMatchOverlayfs: requests on open files (and a directory)
// whose names are gone act on them, as with the kernel's overlayfs, and
// never on anything else (go-fuse's path of such a node is the root's).
func TestOrphansMatchOverlayfs(t *testing.T) {
	sqfstest.RequireRoot(t)
	lower := t.TempDir()
	for _, f := range []string{"lower-a", "lower-b"} {
		if err := os.WriteFile(filepath.Join(lower, f), []byte("lower data of "+f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, format := range []cow.Format{cow.Aufs, cow.Overlay} {
		t.Run(fmt.Sprint(format), func(t *testing.T) {
			for _, c := range orphanCases {
				tmp := t.TempDir()
				kmnt := mountKernelOverlay(t, tmp, lower)
				mnt, _ := mountWritable(t, filepath.Join(tmp, "changes"), format, lower)
				var before unix.Stat_t
				if err := unix.Stat(mnt, &before); err != nil {
					t.Fatal(err)
				}
				want, got := orphanOps(t, kmnt, c), orphanOps(t, mnt, c)
				for i := range want {
					if c.name == "removed directory" && strings.HasPrefix(want[i], "fstat") {
						// A directory's size is the file system's own (and
						// livefs deletes it from the changes layer later).
						want[i], got[i] = sizeless.ReplaceAllString(want[i], ""), sizeless.ReplaceAllString(got[i], "")
					}
					if i >= len(got) || got[i] != want[i] {
						t.Errorf("%s: %q, overlayfs %q", c.name, got[i], want[i])
					}
				}
				var after unix.Stat_t
				if err := unix.Stat(mnt, &after); err != nil {
					t.Fatal(err)
				}
				if after.Mode != before.Mode || after.Uid != before.Uid {
					t.Errorf("%s: the root changed: mode %o uid %d, was %o %d", c.name, after.Mode, after.Uid, before.Mode, before.Uid)
				}
				if v, err := unix.Getxattr(mnt, "user.k", nil); err == nil {
					t.Errorf("%s: the root got the orphan's xattr (%d bytes)", c.name, v)
				}
			}
		})
	}
}
