package sqfstest

import (
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TreeOptions select the optional parts of the sample tree.
type TreeOptions struct {
	// WideDir is the number of entries in wide/ (0 for none). Listings over
	// 8 KiB get a directory index.
	WideDir int
	// Special adds device nodes, a fifo and a socket, and sets owners and
	// trusted/security xattrs: it needs root.
	Special bool
}

// MakeTree fills dir with a tree that exercises every kind of entry
// squashfs stores: all file types, holes, duplicates, fragments, tails of
// every size class, hard links, odd modes, owners, times and xattrs.
func MakeTree(t testing.TB, dir string, o TreeOptions) {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	text := func(n int) []byte {
		words := []string{"squashfs", "fragment", "inode", "livefs", "block", "union", "the", "a", "of", "\n"}
		var sb strings.Builder
		for sb.Len() < n {
			sb.WriteString(words[rng.Intn(len(words))])
			sb.WriteByte(' ')
		}
		return []byte(sb.String()[:n])
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(name string, data []byte, perm os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, perm))
		must(unix.Chmod(p, uint32(perm))) // raw mode: os.Chmod drops 07000 bits given this way, and umask masks WriteFile's
	}
	for _, d := range []string{"etc", "usr/bin", "usr/lib/deep/deeper/deepest", "empty", "var/tmp", "private"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(unix.Chmod(filepath.Join(dir, "var/tmp"), 0o1777))
	must(unix.Chmod(filepath.Join(dir, "private"), 0o700))

	// Sizes around the block sizes the tests use (4K, 128K, 1M).
	for _, n := range []int{0, 1, 100, 4095, 4096, 4097, 65536, 131071, 131072, 131073, 1048575, 1048576, 1048577, 3*131072 + 17} {
		write(fmt.Sprintf("usr/lib/size-%d.bin", n), random(n), 0o644)
	}
	write("etc/text.txt", text(500_000), 0o644)
	write("etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644)
	write("usr/lib/deep/deeper/deepest/leaf", text(3000), 0o600)
	// Duplicates: whole files and tails that mksquashfs shares.
	dup := random(300_000)
	write("usr/lib/dup-a", dup, 0o644)
	write("usr/lib/dup-b", dup, 0o644)
	small := text(777)
	write("usr/lib/small-a", small, 0o644)
	write("usr/lib/small-b", small, 0o644)
	write("usr/lib/zeros", make([]byte, 2<<20), 0o644)
	// Modes that must survive.
	write("usr/bin/setuid", text(5000), 0o4755)
	write("usr/bin/setgid", text(5000), 0o2755)
	write("usr/bin/nothing", text(10), 0o000)
	write("usr/bin/sticky", text(10), 0o1644)
	// A sparse file: data, a hole of 3 MiB, data, and a trailing hole.
	sp, err := os.Create(filepath.Join(dir, "var/sparse"))
	must(err)
	_, err = sp.Write(random(10_000))
	must(err)
	_, err = sp.WriteAt(random(5_000), 3<<20)
	must(err)
	must(sp.Truncate(5 << 20))
	must(sp.Close())
	// Hard links.
	write("usr/bin/busybox", random(200_000), 0o755)
	for _, l := range []string{"usr/bin/sh", "usr/bin/ls"} {
		must(os.Link(filepath.Join(dir, "usr/bin/busybox"), filepath.Join(dir, l)))
	}
	write("etc/shared", text(50), 0o644)
	must(os.Link(filepath.Join(dir, "etc/shared"), filepath.Join(dir, "var/shared-link")))
	// Symlinks.
	for name, target := range map[string]string{
		"usr/bin/vi":    "busybox",
		"etc/abs":       "/etc/hosts",
		"etc/dangling":  "no/such/file",
		"etc/long-link": strings.Repeat("long/", 200) + "end",
		"lib":           "usr/lib",
		"usr/lib/up":    "../../etc",
	} {
		must(os.Symlink(target, filepath.Join(dir, name)))
	}
	// Names that sort and encode awkwardly.
	write("etc/name with spaces", nil, 0o644)
	write("etc/ünïcødé", []byte("x"), 0o644)
	write("etc/"+strings.Repeat("n", 255), []byte("long name"), 0o644)
	if o.WideDir > 0 {
		for i := 0; i < o.WideDir; i++ {
			write(fmt.Sprintf("wide/entry-%05d-%s", i, strings.Repeat("x", i%40)), nil, 0o644)
		}
	}
	// xattrs: user.* everywhere; a value shared by several files (stored out
	// of line by mksquashfs); a large value.
	shared := random(300)
	for _, p := range []string{"etc/hosts", "usr/lib/dup-a", "usr/bin/setuid", "empty"} {
		must(unix.Lsetxattr(filepath.Join(dir, p), "user.shared", shared, 0))
	}
	must(unix.Lsetxattr(filepath.Join(dir, "etc/text.txt"), "user.comment", []byte("hello"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "etc/text.txt"), "user.big", random(3000), 0))
	if o.Special {
		must(unix.Lsetxattr(filepath.Join(dir, "usr/bin/setuid"), "security.capability",
			[]byte{1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0))
		must(unix.Lsetxattr(filepath.Join(dir, "private"), "trusted.overlay.opaque", []byte("y"), 0))
		must(unix.Lsetxattr(filepath.Join(dir, "usr/lib/deep/deeper"), "trusted.overlay.opaque", []byte("y"), 0))
		must(os.MkdirAll(filepath.Join(dir, "dev"), 0o755))
		for _, d := range []struct {
			name   string
			mode   uint32
			ma, mi uint32
		}{
			{"dev/null", unix.S_IFCHR | 0o666, 1, 3},
			{"dev/sda1", unix.S_IFBLK | 0o660, 8, 1},
			{"dev/bigdev", unix.S_IFCHR | 0o600, 300, 70000},
			{"dev/whiteout", unix.S_IFCHR | 0o000, 0, 0},
			{"dev/fifo", unix.S_IFIFO | 0o640, 0, 0},
		} {
			must(unix.Mknod(filepath.Join(dir, d.name), d.mode, int(unix.Mkdev(d.ma, d.mi))))
			must(unix.Chmod(filepath.Join(dir, d.name), d.mode&0o7777))
		}
		sockPath := filepath.Join(dir, "dev/socket")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
		must(err)
		l.SetUnlinkOnClose(false)
		must(l.Close())
		for p, ids := range map[string][2]int{
			"etc/hosts": {1000, 1000}, "usr/bin/setgid": {0, 50}, "private": {123456, 654321},
			"etc/dangling": {65534, 65534}, "dev/sda1": {0, 6},
		} {
			must(os.Lchown(filepath.Join(dir, p), ids[0], ids[1]))
		}
		// chown clears setuid/setgid: restore them.
		must(unix.Chmod(filepath.Join(dir, "usr/bin/setgid"), 0o2755))
	}
	// Times last, deepest first, so that creating entries does not move them.
	var paths []string
	must(filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		ts := time.Unix(int64(1_000_000_000+i*7919), 0)
		if i%17 == 3 {
			ts = time.Unix(0, 0)
		}
		if i%23 == 5 {
			ts = time.Unix(1<<31-1, 0)
		}
		tv := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], tv, unix.AT_SYMLINK_NOFOLLOW))
	}
}
