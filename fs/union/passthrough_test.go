package union_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/fs/union"
	"github.com/livefs/livefs/internal/sqfstest"
)

// requirePassthroughKernel skips (loudly) where the kernel has no FUSE
// passthrough (before Linux 6.9).
func requirePassthroughKernel(t *testing.T) {
	t.Helper()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor)
	if major < 6 || major == 6 && minor < 9 {
		t.Skipf("SKIPPED, NOT PASSED: FUSE passthrough needs Linux 6.9, this is %d.%d", major, minor)
	}
}

func writeLower(t *testing.T, files map[string]string) string {
	t.Helper()
	lower := filepath.Join(t.TempDir(), "lower")
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(lower, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lower, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return lower
}

// mountModes are the two ways a writable union serves files of its changes
// layer.
var mountModes = []struct {
	name        string
	passthrough bool
}{{"passthrough", true}, {"server", false}}

// mountMode mounts lower writable in the given mode, checking that the
// mode is the one in effect.
func mountMode(t *testing.T, passthrough bool, lower string) (mnt, changes string, u *union.Union) {
	t.Helper()
	sqfstest.RequireRoot(t)
	if passthrough {
		requirePassthroughKernel(t)
	}
	changes = filepath.Join(t.TempDir(), "changes")
	mnt, u, _ = mountWritableUnion(t, changes, cow.Aufs, union.MountOptions{NoPassthrough: !passthrough}, lower)
	if got := union.Passthrough(u); got != passthrough {
		t.Fatalf("passthrough in effect: got %v, want %v", got, passthrough)
	}
	return mnt, changes, u
}

// TestPassthrough writes, appends to (copy-up), truncates and maps files
// of a writable union, and checks data and attributes through the mount
// against the changes layer. With passthrough the server sees no WRITE
// request; without it, it sees them all.
func TestPassthrough(t *testing.T) {
	for _, m := range mountModes {
		t.Run(m.name, func(t *testing.T) {
			lowerData := strings.Repeat("lower data\n", 5000)
			lower := writeLower(t, map[string]string{"lower.txt": lowerData, "d/map.bin": strings.Repeat("m", 3*4096+17)})
			mnt, changes, u := mountMode(t, m.passthrough, lower)
			writesBefore := union.ServerWrites(u)

			big := make([]byte, 3<<20+123)
			rand.New(rand.NewSource(1)).Read(big)
			if err := os.WriteFile(filepath.Join(mnt, "new.bin"), big, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(filepath.Join(mnt, "lower.txt"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("appended\n"); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			// A shared writable mapping of a file copied up by the open.
			mapped := []byte(strings.Repeat("m", 3*4096+17))
			copy(mapped[4090:], "written through a mapping")
			mf, err := os.OpenFile(filepath.Join(mnt, "d/map.bin"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			mem, err := unix.Mmap(int(mf.Fd()), 0, len(mapped), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				t.Fatal(err)
			}
			copy(mem[4090:], "written through a mapping")
			if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
				t.Fatal(err)
			}
			if err := unix.Munmap(mem); err != nil {
				t.Fatal(err)
			}
			mf.Close()
			if err := os.Truncate(filepath.Join(mnt, "new.bin"), 1<<20+5); err != nil {
				t.Fatal(err)
			}

			for _, c := range []struct {
				name string
				want []byte
			}{
				{"new.bin", big[:1<<20+5]},
				{"lower.txt", []byte(lowerData + "appended\n")},
				{"d/map.bin", mapped},
			} {
				got, err := os.ReadFile(filepath.Join(mnt, c.name))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, c.want) {
					t.Errorf("%s: read %d bytes, want %d (equal: %v)", c.name, len(got), len(c.want), bytes.Equal(got, c.want))
				}
				// Read through a mapping too.
				rf, err := os.Open(filepath.Join(mnt, c.name))
				if err != nil {
					t.Fatal(err)
				}
				mem, err := unix.Mmap(int(rf.Fd()), 0, len(c.want), unix.PROT_READ, unix.MAP_SHARED)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(mem, c.want) {
					t.Errorf("%s: mapped contents differ", c.name)
				}
				unix.Munmap(mem)
				rf.Close()
				var got1, want1 unix.Stat_t
				if err := unix.Stat(filepath.Join(mnt, c.name), &got1); err != nil {
					t.Fatal(err)
				}
				if err := unix.Stat(filepath.Join(changes, c.name), &want1); err != nil {
					t.Fatal(err)
				}
				if got1.Size != int64(len(c.want)) || got1.Size != want1.Size || got1.Mtim != want1.Mtim {
					t.Errorf("%s: size %d mtime %v through the mount, want %d and %v (the changes layer's)",
						c.name, got1.Size, got1.Mtim, want1.Size, want1.Mtim)
				}
			}
			writes := union.ServerWrites(u) - writesBefore
			if m.passthrough && writes != 0 {
				t.Errorf("server got %d WRITE requests, want none with passthrough", writes)
			}
			if !m.passthrough && writes == 0 {
				t.Errorf("server got no WRITE requests without passthrough")
			}
		})
	}
}

// TestOpenBeforeCopyUp keeps a file open for reading from a lower layer
// while another descriptor copies it up and writes, then reads through both
// and opens it again; the kernel's overlayfs answers the same sequence.
// With passthrough, the opens while the first one lasts go through the
// server (the kernel allows one I/O mode per inode at a time); once it is
// closed, opens are passthrough again.
func TestOpenBeforeCopyUp(t *testing.T) {
	sqfstest.RequireRoot(t)
	lower := writeLower(t, map[string]string{"f": "old contents of f"})
	sequence := func(t *testing.T, root string) []string {
		t.Helper()
		var out []string
		readAt := func(f *os.File) string {
			b := make([]byte, 100)
			n, err := f.ReadAt(b, 0)
			return fmt.Sprintf("%q %s", b[:max(n, 0)], errStr(unwrapEOF(err)))
		}
		p := filepath.Join(root, "f")
		first, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		out = append(out, "first: "+readAt(first))
		out = append(out, "write: "+writeOp(p, os.O_WRONLY|os.O_TRUNC, "new", -1))
		second, err := os.Open(p)
		out = append(out, "open again: "+errStr(err))
		if err == nil {
			out = append(out, "second: "+readAt(second))
			second.Close()
		}
		out = append(out, "first after copy-up: "+readAt(first))
		out = append(out, "append: "+writeOp(p, os.O_WRONLY|os.O_APPEND, " and more", -1))
		out = append(out, "first after append: "+readAt(first))
		return out
	}

	tmp := t.TempDir()
	kmnt := mountKernelOverlay(t, tmp, lower)
	want := sequence(t, kmnt)

	for _, m := range mountModes {
		t.Run(m.name, func(t *testing.T) {
			mnt, _, u := mountMode(t, m.passthrough, lower)
			got := sequence(t, mnt)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("livefs:\n%s\noverlayfs:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if !m.passthrough {
				return
			}
			// The first descriptor is closed: its RELEASE reaches the server
			// a moment later, after which opens are passthrough again.
			deadline := time.Now().Add(5 * time.Second)
			for {
				before := union.ServerWrites(u)
				if r := writeOp(filepath.Join(mnt, "f"), os.O_WRONLY|os.O_APPEND, "!", -1); r != "ok" {
					t.Fatalf("append: %s", r)
				}
				if union.ServerWrites(u) == before {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("writes still go through the server after every page-cache open was closed")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func unwrapEOF(err error) error {
	if err != nil && err.Error() == "EOF" {
		return nil
	}
	return err
}
