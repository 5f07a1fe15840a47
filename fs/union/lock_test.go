package union_test

import (
	"github.com/livefs/livefs/internal/fuseuring"

	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/internal/sqfstest"
)

// lockChildEnv makes the test binary a helper process that tries one POSIX
// lock and prints the outcome (see lockChild): POSIX locks belong to a
// process, so a conflict needs a second one.
const lockChildEnv = "LIVEFS_LOCK_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(lockChildEnv); spec != "" {
		fmt.Print(lockChild(spec))
		os.Exit(0)
	}
	// As livefs does when run by root: serve over io_uring where the
	// kernel can (TestMountMatchesKernel also mounts without).
	if on, exists := fuseuring.KernelSwitch(); exists && !on && os.Geteuid() == 0 {
		if err := fuseuring.EnableKernelSwitch(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// lockChild runs "PATH OPENFLAGS CMD TYPE": it opens PATH and calls fcntl
// CMD (F_SETLK or F_GETLK) for the whole file with lock TYPE, and returns
// the errno, plus for F_GETLK the type and pid of the conflicting lock.
func lockChild(spec string) string {
	f := strings.Fields(spec)
	if len(f) != 4 {
		return "bad spec " + spec
	}
	flags, _ := strconv.Atoi(f[1])
	cmd, _ := strconv.Atoi(f[2])
	typ, _ := strconv.Atoi(f[3])
	fd, err := unix.Open(f[0], flags, 0)
	if err != nil {
		return "open: " + errStr(err)
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: int16(typ), Whence: 0}
	err = unix.FcntlFlock(uintptr(fd), cmd, &lk)
	if cmd == unix.F_GETLK && err == nil {
		return fmt.Sprintf("ok type=%d pid=%d", lk.Type, lk.Pid)
	}
	return errStr(err)
}

// inChild runs lockChild in a new process.
func inChild(t *testing.T, path string, flags, cmd, typ int) string {
	t.Helper()
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d", lockChildEnv, path, flags, cmd, typ))
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("lock helper: %v: %s", err, out)
	}
	return string(out)
}

// TestLocks takes flock, POSIX and open-file-description locks on files of
// a mount and checks that a second open file description (or process) is
// refused while they are held and granted after. livefs leaves locking to
// the kernel (no lock capabilities are negotiated), which is right for a
// file system served by one mount: this test checks the kernel does.
func TestLocks(t *testing.T) {
	sqfstest.RequireRoot(t)
	flockTool := sqfstest.RequireTool(t, "flock")
	lower := writeLower(t, map[string]string{"ro": "read only", "rw": "to be written", "plain": "x"})
	img := filepath.Join(t.TempDir(), "lower.sb")
	sqfstest.Mksquashfs(t, lower, img, "-comp", "lz4")
	roMnt := mountUnion(t, img)
	rwMnt, _ := mountWritable(t, filepath.Join(t.TempDir(), "changes"), cow.Aufs, img)
	if err := os.WriteFile(filepath.Join(rwMnt, "new"), []byte("upper"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		path  string
		flags int // how both sides open the file
	}{
		{"read-only union", filepath.Join(roMnt, "ro"), unix.O_RDONLY},
		{"lower file read-only", filepath.Join(rwMnt, "ro"), unix.O_RDONLY},
		{"lower file copied up by the open", filepath.Join(rwMnt, "rw"), unix.O_RDWR},
		{"upper file", filepath.Join(rwMnt, "new"), unix.O_RDWR},
	} {
		t.Run(c.name, func(t *testing.T) {
			open := func() int {
				t.Helper()
				fd, err := unix.Open(c.path, c.flags|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { unix.Close(fd) })
				return fd
			}
			fd1, fd2 := open(), open()
			// The lock a holder of the file takes, and the one that then conflicts.
			held, conflicting := int16(unix.F_RDLCK), int16(unix.F_WRLCK)
			if c.flags != unix.O_RDONLY {
				held = unix.F_WRLCK
			}
			check := func(what string, got error, want error) {
				t.Helper()
				if !errors.Is(got, want) && !(got == nil && want == nil) {
					t.Errorf("%s: got %v, want %v", what, got, want)
				}
			}

			// flock: per open file description.
			check("flock fd1", unix.Flock(fd1, unix.LOCK_EX|unix.LOCK_NB), nil)
			check("flock fd2 while fd1 holds it", unix.Flock(fd2, unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
			if out := runFlock(t, flockTool, c.path); out != 1 {
				t.Errorf("flock(1) in another process while fd1 holds it: exit %d, want 1", out)
			}
			check("unlock fd1", unix.Flock(fd1, unix.LOCK_UN), nil)
			check("flock fd2 after unlock", unix.Flock(fd2, unix.LOCK_EX|unix.LOCK_NB), nil)
			check("unlock fd2", unix.Flock(fd2, unix.LOCK_UN), nil)
			if out := runFlock(t, flockTool, c.path); out != 0 {
				t.Errorf("flock(1) in another process after unlock: exit %d, want 0", out)
			}

			// Open file description locks: per open file description too.
			ofd := func(fd, cmd int, typ int16) (unix.Flock_t, error) {
				lk := unix.Flock_t{Type: typ, Whence: 0}
				err := unix.FcntlFlock(uintptr(fd), cmd, &lk)
				return lk, err
			}
			_, err := ofd(fd1, unix.F_OFD_SETLK, held)
			check("F_OFD_SETLK fd1", err, nil)
			if c.flags != unix.O_RDONLY {
				_, err = ofd(fd2, unix.F_OFD_SETLK, unix.F_WRLCK)
				check("F_OFD_SETLK fd2 while fd1 holds it", err, unix.EAGAIN)
			}
			lk, err := ofd(fd2, unix.F_OFD_GETLK, conflicting)
			check("F_OFD_GETLK fd2", err, nil)
			if lk.Type != held {
				t.Errorf("F_OFD_GETLK fd2 while fd1 holds a lock: type %d, want %d", lk.Type, held)
			}
			_, err = ofd(fd1, unix.F_OFD_SETLK, unix.F_UNLCK)
			check("F_OFD_SETLK unlock fd1", err, nil)
			lk, err = ofd(fd2, unix.F_OFD_GETLK, conflicting)
			if err != nil || lk.Type != unix.F_UNLCK {
				t.Errorf("F_OFD_GETLK fd2 after unlock: type %d (%v), want F_UNLCK", lk.Type, err)
			}

			// POSIX locks: per process, so the other side is a child.
			lk = unix.Flock_t{Type: held, Whence: 0}
			check("F_SETLK", unix.FcntlFlock(uintptr(fd1), unix.F_SETLK, &lk), nil)
			wantGet := fmt.Sprintf("ok type=%d pid=%d", held, os.Getpid())
			if got := inChild(t, c.path, c.flags, unix.F_GETLK, int(conflicting)); got != wantGet {
				t.Errorf("F_GETLK in a child while held: %q, want %q", got, wantGet)
			}
			if c.flags != unix.O_RDONLY {
				if got := inChild(t, c.path, c.flags, unix.F_SETLK, unix.F_WRLCK); got != errStr(unix.EAGAIN) {
					t.Errorf("F_SETLK in a child while held: %q, want EAGAIN", got)
				}
			} else if got := inChild(t, c.path, c.flags, unix.F_SETLK, unix.F_RDLCK); got != "ok" {
				t.Errorf("shared F_SETLK in a child while a read lock is held: %q, want ok", got)
			}
			lk = unix.Flock_t{Type: unix.F_UNLCK, Whence: 0}
			check("F_SETLK unlock", unix.FcntlFlock(uintptr(fd1), unix.F_SETLK, &lk), nil)
			if got := inChild(t, c.path, c.flags, unix.F_GETLK, int(conflicting)); got != fmt.Sprintf("ok type=%d pid=0", unix.F_UNLCK) {
				t.Errorf("F_GETLK in a child after unlock: %q, want none", got)
			}
		})
	}
}

// runFlock runs util-linux flock(1) -n on path and returns its exit code
// (1: the lock is held elsewhere).
func runFlock(t *testing.T, tool, path string) int {
	t.Helper()
	err := exec.Command(tool, "-n", "-x", path, "true").Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}
