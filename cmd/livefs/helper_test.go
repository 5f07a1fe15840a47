package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/sqfstest"
)

func TestParseMountHelperArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    *helperRequest
		wantErr string
	}{
		{
			args: []string{"livefs", "/mnt", "-o", "lowerdir=/a:/b.sb,upperdir=/u,workdir=/w"},
			want: &helperRequest{source: "livefs", mountpoint: "/mnt", lower: []string{"/a", "/b.sb"}, upper: "/u", work: "/w"},
		},
		{ // util-linux's flags, options split over two -o, the ones mount(8) passes
			args: []string{"src", "/mnt", "-s", "-n", "-v", "-o", "rw,lowerdir=/a", "-onosuid,nodev,noexec,allow_other,ro,defaults,noauto,nofail,_netdev,x-systemd.automount,index=off", "-t", "fuse.livefs"},
			want: &helperRequest{source: "src", mountpoint: "/mnt", lower: []string{"/a"}, readOnly: true, allowOther: true, noSuid: true, noDev: true, noExec: true, verbose: true,
				ignored: []string{"defaults", "noauto", "nofail", "_netdev", "x-systemd.automount", "index=off"}},
		},
		{ // overlayfs's escapes: \: inside a layer, \, inside an option value
			args: []string{"s", "/m", "-o", `lowerdir=/with\:colon:/with\,comma:/back\\slash,upperdir=/u\,1,workdir=/w`},
			want: &helperRequest{source: "s", mountpoint: "/m", lower: []string{"/with:colon", "/with,comma", `/back\slash`}, upper: "/u,1", work: "/w"},
		},
		{ // livefs's own options
			args: []string{"s", "/m", "-o", "lowerdir=/a,nouring,nopassthrough"},
			want: &helperRequest{source: "s", mountpoint: "/m", lower: []string{"/a"}, serverOptions: []string{"nouring", "nopassthrough"}},
		},
		{ // later options win; workdir without upperdir is ignored, as overlayfs does
			args: []string{"s", "/m", "-f", "-o", "ro,rw,nosuid,suid,lowerdir=/x,lowerdir=/y,workdir=/w,cache=64,log=/l"},
			want: &helperRequest{source: "s", mountpoint: "/m", lower: []string{"/y"}, fake: true, cacheMiB: 64, logFile: "/l", ignored: []string{"workdir=/w"}},
		},
		{args: []string{"s", "/m"}, wantErr: "missing lowerdir="},
		{args: []string{"s", "/m", "-o", "upperdir=/u"}, wantErr: "missing lowerdir="},
		{args: []string{"s", "/m", "-o", "lowerdir=/a,upperdir=/u"}, wantErr: "upperdir=/u needs workdir="},
		{args: []string{"s", "/m", "-o", "lowerdir=/a::/b"}, wantErr: "lowerdir=/a::/b: empty layer"},
		{args: []string{"s", "/m", "-o", "lowerdir=/a,cache=lots"}, wantErr: "cache=lots: want a size in MiB"},
		{args: []string{"/m", "-o", "lowerdir=/a"}, wantErr: "want SOURCE and MOUNTPOINT"},
		{args: []string{"s", "/m", "-o"}, wantErr: "-o needs an argument"},
		{args: []string{"s", "/m", "-x", "-o", "lowerdir=/a"}, wantErr: "unknown flag -x"},
		{args: []string{"s", "/m", "-N", "/proc/1/ns/mnt", "-o", "lowerdir=/a"}, wantErr: "-N /proc/1/ns/mnt: mounting in another mount namespace is not supported"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := parseMountHelperArgs(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error: got %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestHelperMountArgs(t *testing.T) {
	for _, tc := range []struct {
		req  helperRequest
		want string
	}{
		{helperRequest{source: "s", mountpoint: "/m", lower: []string{"/top", "/bottom.sb"}, upper: "/u", work: "/w", allowOther: true},
			"mount --daemon --fsname s -o allow_other --changes /u --workdir /w --whiteout overlay /bottom.sb /top /m"},
		{helperRequest{source: "s", mountpoint: "/m", lower: []string{"/a"}},
			"mount --daemon --fsname s --ro /a /m"},
		{helperRequest{source: "s", mountpoint: "/m", lower: []string{"/top", "/bottom"}, upper: "/u", work: "/w", readOnly: true, noSuid: true, noExec: true},
			"mount --daemon --fsname s -o nosuid,noexec --ro /bottom /top /u /m"},
		{helperRequest{source: "s", mountpoint: "/m", lower: []string{"/a"}, noDev: true, serverOptions: []string{"nouring"}},
			"mount --daemon --fsname s -o nodev,nouring --ro /a /m"},
	} {
		if got := strings.Join(tc.req.mountArgs(), " "); got != tc.want {
			t.Errorf("%+v:\ngot  %s\nwant %s", tc.req, got, tc.want)
		}
	}
}

// runHelper runs the livefs binary under the helper's name, as mount(8) does.
func runHelper(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	cmd := &exec.Cmd{Path: livefsBinary(t), Args: append([]string{name}, args...)}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// TestMountHelperErrors: bad input gives mount(8)'s exit statuses and a
// message naming the option or file.
func TestMountHelperErrors(t *testing.T) {
	sqfstest.RequireRoot(t)
	dir := t.TempDir()
	lower, upper, work, mnt := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "mnt")
	for _, d := range []string{lower, upper, work, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bad := filepath.Join(dir, "bad.sb")
	if err := os.WriteFile(bad, []byte(strings.Repeat("not squashfs ", 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts     string
		wantCode int
		wantMsg  string
	}{
		{"upperdir=" + upper + ",workdir=" + work, exitUsage, "missing lowerdir="},
		{"lowerdir=" + lower + ",upperdir=" + upper, exitUsage, "needs workdir="},
		{"lowerdir=" + dir + "/nope:" + lower, exitMount, dir + "/nope: no such file"},
		{"lowerdir=" + lower + ",upperdir=" + dir + "/nope,workdir=" + work, exitMount, "upperdir=" + dir + "/nope"},
		{"lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + bad, exitMount, "workdir=" + bad + ": not a directory"},
		{"lowerdir=" + bad, exitMount, bad},
	} {
		out, code := runHelper(t, mountHelperName, "livefs", mnt, "-o", tc.opts)
		if code != tc.wantCode || !strings.Contains(out, tc.wantMsg) {
			t.Errorf("-o %s: exit %d, %q; want exit %d and %q", tc.opts, code, out, tc.wantCode, tc.wantMsg)
		}
	}
	if entries, _ := os.ReadDir(upper); len(entries) != 0 {
		t.Errorf("failed mounts left %d entries in upperdir", len(entries))
	}
	if isMounted(t, mnt) {
		t.Error("a failed mount is mounted")
	}
}

// isMounted reports whether mountinfo lists mnt as a mount point.
func isMounted(t *testing.T, mnt string) bool {
	t.Helper()
	_, ok := sqfstest.MountDevice(t, mnt)
	return ok
}

// installHelpers installs the binary as /sbin/mount.fuse.livefs for the
// test (mount(8) looks only there), and puts back whatever was there when
// the test ends. A lock serialises
// tests of several checkouts that do the same.
func installHelpers(t *testing.T) {
	t.Helper()
	sqfstest.RequireRoot(t)
	lock, err := os.OpenFile("/run/livefs-helper-test.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var saved []string
	p := filepath.Join("/sbin", mountHelperName)
	if _, err := os.Lstat(p); err == nil {
		if err := os.Rename(p, p+".saved-by-test"); err != nil {
			t.Fatal(err)
		}
		saved = append(saved, p)
	}
	t.Cleanup(func() {
		if out, code := runBin(t, "install-helper", "--remove"); code != 0 {
			t.Errorf("install-helper --remove: %s", out)
		}
		for _, p := range saved {
			os.Rename(p+".saved-by-test", p)
		}
		lock.Close()
	})
	if out, code := runBin(t, "install-helper"); code != 0 {
		t.Fatalf("install-helper: exit %d: %s", code, out)
	}
	if fi, err := os.Lstat("/sbin/" + mountHelperName); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("/sbin/%s: %v %v; want an executable copy", mountHelperName, fi, err)
	}
}

// overlayCase is a stack of lowers for livefs and, the same, for the
// kernel's overlayfs, with an upper and work directory for each.
type overlayCase struct {
	liveLower, kernLower   string // lowerdir= values, highest first
	liveUpper, liveWork    string
	kernUpper, kernWork    string
	liveMnt, kernMnt, base string
}

// newOverlayCase makes a directory lower on top of a squashfs image (the
// kernel's overlayfs gets the image loop-mounted).
func newOverlayCase(t *testing.T) *overlayCase {
	t.Helper()
	base := t.TempDir()
	c := &overlayCase{base: base}
	top := filepath.Join(base, "top")
	files := map[string]string{
		"etc/hostname": "top\n", "etc/only-top": "t\n", "dir/sub/deep": "deep top\n", "shadowed": "file over a lower dir\n",
	}
	for p, data := range files {
		writeFile(t, filepath.Join(top, p), data, 0o644)
	}
	src := filepath.Join(base, "bottom-src")
	for p, data := range map[string]string{
		"etc/hostname": "bottom\n", "etc/passwd": "root:x:0:0\n", "dir/a": "a\n", "dir/sub/b": "b\n",
		"usr/bin/tool": "#!/bin/sh\n", "shadowed/hidden": "hidden\n", "big": strings.Repeat("0123456789abcdef", 1<<16),
		"rmdir/x": "x\n", "rmdir/y/z": "z\n",
	} {
		writeFile(t, filepath.Join(src, p), data, 0o644)
	}
	if err := os.Chmod(filepath.Join(src, "usr/bin/tool"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("etc/passwd", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(base, "bottom.sb")
	sqfstest.Mksquashfs(t, src, img, "-comp", "gzip")
	kimg := sqfstest.KernelMount(t, img)
	c.liveLower = top + ":" + img
	c.kernLower = top + ":" + kimg
	names := []string{"live-upper", "live-work", "kern-upper", "kern-work", "live-mnt", "kern-mnt"}
	for i, p := range []*string{&c.liveUpper, &c.liveWork, &c.kernUpper, &c.kernWork, &c.liveMnt, &c.kernMnt} {
		*p = filepath.Join(base, names[i])
		if err := os.Mkdir(*p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func writeFile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// umountAtEnd unmounts mnt when the test ends if it is still mounted.
func umountAtEnd(t *testing.T, mnt string) {
	t.Helper()
	t.Cleanup(func() {
		if isMounted(t, mnt) {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v %s", mnt, err, out)
				exec.Command("umount", "-l", mnt).Run()
			}
		}
	})
}

// comparableTree clears what legitimately differs between two mounts
// made at different moments: inode numbers, directory sizes and link
// counts, and times set during the test.
func comparableTree(tr sqfstest.Tree, since int64) sqfstest.Tree {
	for _, e := range tr {
		e.Ino = 0
		if e.Type == "dir" {
			e.Size, e.Nlink = 0, 0
		}
		if e.MTime >= since {
			e.MTime = 0
		}
	}
	return tr
}

// sameWrites applies one sequence of changes under root.
func sameWrites(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", root, err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("changed\n"), 0o644)) // copy-up of a top file
	f, err := os.OpenFile(filepath.Join(root, "big"), os.O_WRONLY, 0)                   // copy-up of a big image file
	must(err)
	_, err = f.WriteAt([]byte("PATCH"), 1<<19)
	must(err)
	must(f.Close())
	must(os.Chmod(filepath.Join(root, "usr/bin/tool"), 0o755))
	must(os.Remove(filepath.Join(root, "etc/passwd")))  // whiteout
	must(os.RemoveAll(filepath.Join(root, "rmdir")))    // whiteouts, then of the directory
	must(os.Mkdir(filepath.Join(root, "rmdir"), 0o750)) // opaque
	must(os.WriteFile(filepath.Join(root, "rmdir/new"), []byte("new\n"), 0o600))
	must(os.Rename(filepath.Join(root, "dir/a"), filepath.Join(root, "dir/sub/a2")))
	must(os.Symlink("../etc/hostname", filepath.Join(root, "dir/ln")))
	must(os.MkdirAll(filepath.Join(root, "new/deeper"), 0o755))
	must(os.WriteFile(filepath.Join(root, "new/deeper/file"), []byte("fresh\n"), 0o644))
	must(os.Link(filepath.Join(root, "new/deeper/file"), filepath.Join(root, "new/hardlink")))
}

// TestMountHelperMatchesOverlayfs mounts with mount(8) and overlayfs's
// syntax, a directory lower over a squashfs image, and compares the tree
// with the kernel's overlayfs over the same layers, before and after the
// same writes; then the kernel's overlayfs mounts the upperdir livefs
// wrote and must show the same tree again.
func TestMountHelperMatchesOverlayfs(t *testing.T) {
	installHelpers(t)
	since := time.Now().Unix() - 1
	c := newOverlayCase(t)
	sqfstest.Run(t, "mount", "-t", "overlay", "overlay", c.kernMnt, "-o",
		fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", c.kernLower, c.kernUpper, c.kernWork))
	umountAtEnd(t, c.kernMnt)
	out := sqfstest.Run(t, "mount", "-v", "-t", "fuse.livefs", "livefs-test", c.liveMnt, "-o",
		fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,defaults,nofail,x-test=1,index=off", c.liveLower, c.liveUpper, c.liveWork))
	umountAtEnd(t, c.liveMnt)
	t.Logf("mount -v: %s", strings.TrimSpace(out))
	if line := mountLine(t, c.liveMnt); !strings.HasPrefix(line, "livefs-test "+c.liveMnt+" fuse.livefs rw,") {
		t.Errorf("/proc/mounts: %q; want source livefs-test, type fuse.livefs, rw", line)
	}
	compare := func(stage string) sqfstest.Tree {
		t.Helper()
		want := comparableTree(sqfstest.SnapshotDir(t, c.kernMnt), since)
		got := comparableTree(sqfstest.SnapshotDir(t, c.liveMnt), since)
		if diff := sqfstest.Diff(want, got, sqfstest.Fields{}); len(diff) > 0 {
			t.Fatalf("%s: livefs differs from overlayfs:\n%s", stage, strings.Join(diff, "\n"))
		}
		return want
	}
	compare("before writes")
	sameWrites(t, c.kernMnt)
	sameWrites(t, c.liveMnt)
	want := compare("after writes")
	sqfstest.Run(t, "umount", c.liveMnt)
	if isMounted(t, c.liveMnt) {
		t.Fatal("still mounted after umount")
	}
	// Nothing of livefs's own in the upperdir; its records in the workdir.
	filepath.Walk(c.liveUpper, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		if strings.Contains(fi.Name(), "livefs") || strings.HasPrefix(fi.Name(), ".wh.") {
			t.Errorf("upperdir holds %s", p)
		}
		names, _ := listXattr(p)
		for _, n := range names {
			if strings.Contains(n, "livefs") {
				t.Errorf("%s has xattr %s", p, n)
			}
		}
		return nil
	})
	for _, n := range []string{"livefs.lock", "livefs.inodes"} {
		if _, err := os.Stat(filepath.Join(c.liveWork, n)); err != nil {
			t.Errorf("workdir: %v", err)
		}
	}
	// The kernel reads what livefs wrote (with livefs's workdir, which it shares).
	omnt := filepath.Join(c.base, "overlay-of-livefs")
	if err := os.Mkdir(omnt, 0o755); err != nil {
		t.Fatal(err)
	}
	sqfstest.Run(t, "mount", "-t", "overlay", "overlay", omnt, "-o",
		fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", c.kernLower, c.liveUpper, c.liveWork))
	umountAtEnd(t, omnt)
	got := comparableTree(sqfstest.SnapshotDir(t, omnt), since)
	if diff := sqfstest.Diff(want, got, sqfstest.Fields{}); len(diff) > 0 {
		t.Fatalf("overlayfs over livefs's upperdir differs:\n%s", strings.Join(diff, "\n"))
	}
}

func listXattr(p string) ([]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func mountLine(t *testing.T, mnt string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == mnt {
			return l
		}
	}
	return ""
}

// TestMountHelperFstab mounts from an fstab line (mount --fstab FILE MNT),
// read-write and read-only, and checks the options take effect.
func TestMountHelperFstab(t *testing.T) {
	installHelpers(t)
	c := newOverlayCase(t)
	fstab := filepath.Join(c.base, "fstab")
	line := fmt.Sprintf("livefs %s fuse.livefs lowerdir=%s,upperdir=%s,workdir=%s,noauto,nofail,_netdev,x-systemd.requires=/,nosuid,noexec,allow_other 0 0\n",
		c.liveMnt, c.liveLower, c.liveUpper, c.liveWork)
	if err := os.WriteFile(fstab, []byte("# livefs test\n"+line), 0o644); err != nil {
		t.Fatal(err)
	}
	sqfstest.Run(t, "mount", "--fstab", fstab, c.liveMnt)
	umountAtEnd(t, c.liveMnt)
	fields := strings.Fields(mountLine(t, c.liveMnt))
	if len(fields) < 4 || fields[0] != "livefs" || fields[2] != "fuse.livefs" {
		t.Fatalf("mount line %q", fields)
	}
	opts := map[string]bool{}
	for _, o := range strings.Split(fields[3], ",") {
		opts[o] = true
	}
	for _, o := range []string{"rw", "nosuid", "noexec", "allow_other"} {
		if !opts[o] {
			t.Errorf("mount options %s lack %s", fields[3], o)
		}
	}
	if err := os.WriteFile(filepath.Join(c.liveMnt, "etc/hostname"), []byte("fstab\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(c.liveUpper, "etc/hostname")); err != nil || string(b) != "fstab\n" {
		t.Errorf("upperdir etc/hostname: %q, %v", b, err)
	}
	// Already mounted: mount(8) says so.
	if out, err := exec.Command("mount", "--fstab", fstab, c.liveMnt).CombinedOutput(); err == nil {
		t.Errorf("second mount of %s succeeded: %s", c.liveMnt, out)
	}
	sqfstest.Run(t, "umount", c.liveMnt)

	// ro: the upperdir is the top layer, read-only; no upperdir: read-only too.
	for _, opts := range []string{
		fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,ro", c.liveLower, c.liveUpper, c.liveWork),
		fmt.Sprintf("lowerdir=%s", c.liveLower),
	} {
		sqfstest.Run(t, "mount", "-t", "fuse.livefs", "livefs", c.liveMnt, "-o", opts)
		want := "fstab\n"
		if !strings.Contains(opts, "upperdir") {
			want = "top\n"
		}
		if b, err := os.ReadFile(filepath.Join(c.liveMnt, "etc/hostname")); err != nil || string(b) != want {
			t.Errorf("-o %s: etc/hostname %q, %v; want %q", opts, b, err, want)
		}
		err := os.WriteFile(filepath.Join(c.liveMnt, "etc/hostname"), []byte("no\n"), 0o644)
		if !errorIs(err, syscall.EROFS) {
			t.Errorf("-o %s: write: %v; want EROFS", opts, err)
		}
		sqfstest.Run(t, "umount", c.liveMnt)
	}
}

func errorIs(err error, errno syscall.Errno) bool {
	var e syscall.Errno
	for err != nil {
		if x, ok := err.(syscall.Errno); ok {
			e = x
			break
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			break
		}
		err = u.Unwrap()
	}
	return e == errno
}
