package union_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/fs/union"
	"github.com/livefs/livefs/internal/sqfstest"
)

// mountWritable serves lowers (bottom first) with a changes layer at
// changes, and returns the mount point and a function that unmounts it.
func mountWritable(t *testing.T, changes string, format cow.Format, lowers ...string) (string, func()) {
	t.Helper()
	mnt, _, unmount := mountWritableUnion(t, changes, format, union.MountOptions{}, lowers...)
	return mnt, unmount
}

// mountWritableUnion is mountWritable with mount options, also returning
// the union.
func mountWritableUnion(t *testing.T, changes string, format cow.Format, mo union.MountOptions, lowers ...string) (string, *union.Union, func()) {
	t.Helper()
	sqfstest.RequireRoot(t)
	var layers []union.Layer
	for _, b := range lowers {
		l, err := union.OpenBranch(b, &sqfs.Options{CacheBytes: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	work := ""
	if format == cow.Overlay {
		work = changes + ".work"
	}
	c, err := cow.Open(changes, work, format)
	if err != nil {
		t.Fatal(err)
	}
	u := union.New(layers, union.Options{Changes: c})
	mnt := t.TempDir()
	server, err := union.Mount(mnt, u, mo)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	done := false
	unmount := func() {
		if done {
			return
		}
		done = true
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			exec.Command("umount", "-l", mnt).Run()
		}
		u.Close()
	}
	t.Cleanup(unmount)
	return mnt, u, unmount
}

// op is one file system operation applied to a root; it returns a result
// string (the errno, plus any value read) to compare between roots.
type op struct {
	desc string
	do   func(root string) string
}

func errStr(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// writeOp opens p with flags (non-blocking, so that a fifo answers at
// once) and writes data, at off unless off is -1.
func writeOp(p string, flags int, data string, off int64) string {
	fd, err := unix.Open(p, flags|unix.O_NONBLOCK, 0o644)
	if err != nil {
		return errStr(err)
	}
	defer unix.Close(fd)
	if off >= 0 {
		_, err = unix.Pwrite(fd, []byte(data), off)
	} else {
		_, err = unix.Write(fd, []byte(data))
	}
	return errStr(err)
}

// openSlots holds, per root, the descriptors the "open" operations left
// open, so that later operations act on files whose names may since have
// been removed, renamed or copied up.
type openSlots map[string]*[2]int

// closeAll closes every descriptor left open: a failed test must not
// leave any on a mount it unmounts.
func (s openSlots) closeAll() {
	for root := range s {
		for slot := range 2 {
			s.set(root, slot, -1)
		}
	}
}

func (s openSlots) fd(root string, slot int) int {
	if s[root] == nil {
		s[root] = &[2]int{-1, -1}
	}
	return s[root][slot]
}

func (s openSlots) set(root string, slot, fd int) {
	if old := s.fd(root, slot); old >= 0 {
		unix.Close(old)
	}
	s[root][slot] = fd
}

// fdStat is what fstat reports that both sides must agree on; a
// directory's size and link count are left out as in comparable.
func fdStat(fd int) string {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return errStr(err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Sprintf("ok mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
	}
	return fmt.Sprintf("ok mode=%o uid=%d gid=%d size=%d nlink=%d", st.Mode, st.Uid, st.Gid, st.Size, st.Nlink)
}

// aclOf is a system.posix_acl_access value with those permissions for
// the owner, the group and others, and if mask is not 0, an entry that
// gives user 65534 named with that mask.
func aclOf(owner, group, other, named, mask uint16) []byte {
	type entry struct {
		tag, perm uint16
		id        uint32
	}
	const none = 0xffffffff
	entries := []entry{{0x01, owner, none}, {0x04, group, none}, {0x20, other, none}}
	if mask != 0 {
		entries = []entry{{0x01, owner, none}, {0x02, named, 65534}, {0x04, group, none}, {0x10, mask, none}, {0x20, other, none}}
	}
	v := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		v = binary.LittleEndian.AppendUint16(v, e.tag)
		v = binary.LittleEndian.AppendUint16(v, e.perm)
		v = binary.LittleEndian.AppendUint32(v, e.id)
	}
	return v
}

// modeOf is " mode M" of p (not followed), or "" if it cannot be read.
// It asks for the mode alone, so that a stale one in the kernel's cache
// shows (a full stat would refresh it for the ctime a change marks stale).
func modeOf(p string) string {
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MODE, &st) != nil {
		return ""
	}
	return fmt.Sprintf(" mode %o", st.Mode&0o7777)
}

// randomOps draws operations over a small name space, so that they hit the
// lower layers' names, each other's results, and every error case often.
// Descriptors stay open in slots; the last operations close them.
func randomOps(rng *rand.Rand, n int, slots openSlots) []op {
	names := []string{"a", "b", "c", "d", "e"}
	randPath := func() string {
		parts := make([]string, 1+rng.Intn(3))
		for i := range parts {
			parts[i] = names[rng.Intn(len(names))]
		}
		return strings.Join(parts, "/")
	}
	var ops []op
	for i := 0; i < n; i++ {
		p, q := randPath(), randPath()
		data := fmt.Sprintf("data %d %d\n", i, rng.Int())
		off := int64(rng.Intn(40))
		size := int64(rng.Intn(30))
		mode := uint32([]int{0o600, 0o644, 0o755, 0o4755, 0o1777, 0o000}[rng.Intn(6)])
		slot := rng.Intn(2)
		var o op
		switch rng.Intn(27) {
		case 0:
			o = op{"create " + p, func(r string) string {
				return writeOp(filepath.Join(r, p), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, data, -1)
			}}
		case 1:
			o = op{"append " + p, func(r string) string {
				return writeOp(filepath.Join(r, p), os.O_WRONLY|os.O_APPEND, data, -1)
			}}
		case 2:
			o = op{fmt.Sprintf("pwrite %s@%d", p, off), func(r string) string {
				return writeOp(filepath.Join(r, p), os.O_WRONLY, data, off)
			}}
		case 3:
			o = op{fmt.Sprintf("truncate %s %d", p, size), func(r string) string {
				return errStr(os.Truncate(filepath.Join(r, p), size))
			}}
		case 4:
			o = op{"unlink " + p, func(r string) string { return errStr(unix.Unlink(filepath.Join(r, p))) }}
		case 5:
			o = op{"mkdir " + p, func(r string) string { return errStr(unix.Mkdir(filepath.Join(r, p), 0o755)) }}
		case 6:
			o = op{"rmdir " + p, func(r string) string { return errStr(unix.Rmdir(filepath.Join(r, p))) }}
		case 7:
			// overlayfs answers EXDEV for directories from a lower layer (see
			// TestRenameLowerDir for livefs's better answer): such renames
			// are left out, the kernel going first.
			exdev := false
			o = op{"rename " + p + " " + q, func(r string) string {
				if exdev {
					return "skipped"
				}
				err := unix.Rename(filepath.Join(r, p), filepath.Join(r, q))
				if errors.Is(err, unix.EXDEV) {
					exdev = true
					return "skipped"
				}
				return errStr(err)
			}}
		case 17:
			// Short paths, so that both names exist often enough.
			o = renameOp("exchange", names[rng.Intn(len(names))], randPath(), unix.RENAME_EXCHANGE)
		case 18:
			o = renameOp("rename-noreplace", p, q, unix.RENAME_NOREPLACE)
		case 8:
			o = op{"symlink " + p, func(r string) string { return errStr(unix.Symlink("target/"+q, filepath.Join(r, p))) }}
		case 9:
			o = op{"link " + p + " " + q, func(r string) string { return errStr(unix.Link(filepath.Join(r, p), filepath.Join(r, q))) }}
		case 10:
			o = op{fmt.Sprintf("chmod %s %o", p, mode), func(r string) string { return errStr(unix.Chmod(filepath.Join(r, p), mode)) }}
		case 11:
			o = op{"chown " + p, func(r string) string { return errStr(unix.Lchown(filepath.Join(r, p), 1000+int(off), 2000+int(size))) }}
		case 12:
			o = op{"utimes " + p, func(r string) string {
				ts := []unix.Timespec{unix.NsecToTimespec(1e18 + off*1e9), unix.NsecToTimespec(2e18 + size*1e9)}
				return errStr(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(r, p), ts, unix.AT_SYMLINK_NOFOLLOW))
			}}
		case 13:
			o = op{"setxattr " + p, func(r string) string {
				return errStr(unix.Lsetxattr(filepath.Join(r, p), "user.k"+names[int(off)%5], []byte(data), 0))
			}}
		case 14:
			o = op{"removexattr " + p, func(r string) string {
				return errStr(unix.Lremovexattr(filepath.Join(r, p), "user.k"+names[int(off)%5]))
			}}
		case 15:
			o = op{"mkfifo " + p, func(r string) string { return errStr(unix.Mkfifo(filepath.Join(r, p), 0o640)) }}
		case 16:
			o = op{"read " + p, func(r string) string {
				fd, err := unix.Open(filepath.Join(r, p), unix.O_RDONLY|unix.O_NONBLOCK, 0)
				if err != nil {
					return errStr(err)
				}
				defer unix.Close(fd)
				b := make([]byte, 4096)
				n, err := unix.Read(fd, b)
				return errStr(err) + " " + string(b[:max(n, 0)])
			}}
		case 19:
			flags := []int{unix.O_RDONLY, unix.O_RDWR, unix.O_WRONLY | unix.O_APPEND}[rng.Intn(3)]
			o = op{fmt.Sprintf("open %s flags=%#o slot=%d", p, flags, slot), func(r string) string {
				fd, err := unix.Open(filepath.Join(r, p), flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				if err != nil {
					return errStr(err)
				}
				slots.set(r, slot, fd)
				return "ok"
			}}
		case 20:
			o = op{fmt.Sprintf("fd-pwrite slot=%d@%d", slot, off), func(r string) string {
				_, err := unix.Pwrite(slots.fd(r, slot), []byte(data), off)
				return errStr(err)
			}}
		case 21:
			o = op{fmt.Sprintf("fd-read slot=%d", slot), func(r string) string {
				b := make([]byte, 4096)
				n, err := unix.Pread(slots.fd(r, slot), b, 0)
				return errStr(err) + " " + string(b[:max(n, 0)])
			}}
		case 22:
			o = op{fmt.Sprintf("fd-stat slot=%d", slot), func(r string) string { return fdStat(slots.fd(r, slot)) }}
		case 23:
			o = op{fmt.Sprintf("fd-chmod slot=%d %o", slot, mode), func(r string) string {
				return errStr(unix.Fchmod(slots.fd(r, slot), mode))
			}}
		case 24:
			o = op{fmt.Sprintf("fd-setxattr slot=%d", slot), func(r string) string {
				return errStr(unix.Fsetxattr(slots.fd(r, slot), "user.k"+names[int(off)%5], []byte(data), 0))
			}}
		case 25:
			// An access ACL sets the mode's permission bits (a named entry
			// the group bits to its mask): the mode read right after shows
			// whether the kernel's cache kept the old; one equal to the mode
			// changes nothing.
			kind := []string{"named", "minimal", "of its mode"}[off%3]
			o = op{fmt.Sprintf("setacl %s %s (%d %d)", p, kind, off, size), func(r string) string {
				f := filepath.Join(r, p)
				var acl []byte
				switch kind {
				case "named":
					acl = aclOf(6, 4, 0, uint16(off%8), uint16(size%7)+1)
				case "minimal":
					acl = aclOf(uint16(off%8), uint16(size%8), 5, 0, 0)
				default:
					var st unix.Statx_t
					if err := unix.Statx(unix.AT_FDCWD, f, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MODE, &st); err != nil {
						return errStr(err)
					}
					acl = aclOf(st.Mode>>6&7, st.Mode>>3&7, st.Mode&7, 0, 0)
				}
				return errStr(unix.Lsetxattr(f, "system.posix_acl_access", acl, 0)) + modeOf(f)
			}}
		case 26:
			o = op{"removeacl " + p, func(r string) string {
				return errStr(unix.Lremovexattr(filepath.Join(r, p), "system.posix_acl_access")) + modeOf(filepath.Join(r, p))
			}}
		}
		ops = append(ops, o)
	}
	for slot := range 2 {
		ops = append(ops, op{fmt.Sprintf("close slot=%d", slot), func(r string) string {
			slots.set(r, slot, -1)
			return "ok"
		}})
	}
	return ops
}

// renameOp is renameat2 with flags. Like plain renames, those overlayfs
// answers with EXDEV (directories from a lower layer) are left out, the
// kernel going first.
func renameOp(desc, p, q string, flags uint) op {
	exdev := false
	return op{desc + " " + p + " " + q, func(r string) string {
		if exdev {
			return "skipped"
		}
		err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(r, p), unix.AT_FDCWD, filepath.Join(r, q), flags)
		if errors.Is(err, unix.EXDEV) {
			exdev = true
			return "skipped"
		}
		return errStr(err)
	}}
}

// comparable drops what the two implementations may rightly differ in:
// inode numbers, directory sizes and link counts, times of directories,
// and times set to "now" by a change (they are a moment apart on the two
// sides, possibly across a second). Times set explicitly are kept.
func comparable(tr sqfstest.Tree) sqfstest.Tree {
	now := time.Now().Unix()
	for _, e := range tr {
		e.Ino = 0
		if e.Type == "dir" {
			e.Size, e.Nlink, e.MTime = 0, 0, 0
		}
		if e.MTime > now-3600 && e.MTime < now+3600 {
			e.MTime = 0
		}
	}
	return tr
}

// lowerStack makes two lower layers: directories with overlayfs markers
// (for the kernel), and the same layers as squashfs images with aufs
// markers.
func lowerStack(t *testing.T, rng *rand.Rand) (dirs, images []string) {
	t.Helper()
	stack := randomStack(rng, 2)
	for i, l := range stack {
		d := filepath.Join(t.TempDir(), fmt.Sprintf("lower%d", i))
		materialize(t, l, d, false)
		dirs = append(dirs, d)
		a := filepath.Join(t.TempDir(), fmt.Sprintf("aufs%d", i))
		materialize(t, l, a, true)
		img := a + ".sb"
		sqfstest.Mksquashfs(t, a, img, "-comp", "lz4")
		images = append(images, img)
	}
	return dirs, images
}

// TestWritableMatchesOverlayfs applies seeded random operations to the
// kernel's overlayfs and to livefs over the same lowers, comparing every
// result and then the trees; then remounts livefs on the same changes
// directory and compares again.
func TestWritableMatchesOverlayfs(t *testing.T) {
	sqfstest.RequireRoot(t)
	for seed := int64(1); seed <= 32; seed++ {
		for _, v := range []struct {
			format cow.Format
			images bool
		}{{cow.Aufs, false}, {cow.Overlay, false}, {cow.Aufs, true}} {
			t.Run(fmt.Sprintf("seed=%d/format=%v/images=%v", seed, v.format, v.images), func(t *testing.T) {
				rng := rand.New(rand.NewSource(seed))
				lowers, images := lowerStack(t, rng)
				format := v.format
				branches := lowers
				if v.images {
					branches = images
				}
				tmp := t.TempDir()
				kmnt := mountKernelOverlay(t, tmp, lowers[1]+":"+lowers[0])
				changes := filepath.Join(tmp, "changes")
				fmnt, unmount := mountWritable(t, changes, format, branches...)
				slots := openSlots{}
				t.Cleanup(slots.closeAll) // before the unmounts

				results := map[string]int{}
				for i, o := range randomOps(rng, 300, slots) {
					want, got := o.do(kmnt), o.do(fmnt)
					results[strings.Fields(o.desc)[0]+" "+strings.Fields(want)[0]]++
					if got != want {
						t.Fatalf("op %d %s: livefs %q, overlayfs %q", i, o.desc, got, want)
					}
				}
				t.Logf("results: %v", results)
				want := comparable(sqfstest.SnapshotDir(t, kmnt))
				got := sqfstest.SnapshotDir(t, fmnt)
				inos := map[string]uint64{}
				for p, e := range got {
					inos[p] = e.Ino
				}
				if diff := sqfstest.Diff(want, comparable(got), sqfstest.Fields{}); len(diff) > 0 {
					t.Fatalf("trees differ after the operations:\n%s", strings.Join(diff, "\n"))
				}
				unmount()
				fmnt, unmount = mountWritable(t, changes, format, branches...)
				again := sqfstest.SnapshotDir(t, fmnt)
				for p, e := range again {
					if inos[p] != e.Ino {
						t.Errorf("%s: inode %d before remount, %d after", p, inos[p], e.Ino)
					}
				}
				if diff := sqfstest.Diff(want, comparable(again), sqfstest.Fields{}); len(diff) > 0 {
					t.Fatalf("trees differ after remount:\n%s", strings.Join(diff, "\n"))
				}
				if format != cow.Overlay {
					return
				}
				// The kernel's overlayfs reads what livefs wrote as its upperdir.
				unmount()
				omnt, owork := filepath.Join(tmp, "overlay-of-livefs"), filepath.Join(tmp, "owork")
				for _, d := range []string{omnt, owork} {
					if err := os.MkdirAll(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				sqfstest.Run(t, "mount", "-t", "overlay", "overlay", "-o",
					fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s", lowers[1], lowers[0], changes, owork), omnt)
				t.Cleanup(func() { exec.Command("umount", omnt).Run() })
				if diff := sqfstest.Diff(want, comparable(sqfstest.SnapshotDir(t, omnt)), sqfstest.Fields{}); len(diff) > 0 {
					t.Fatalf("overlayfs over livefs's changes directory differs:\n%s", strings.Join(diff, "\n"))
				}
			})
		}
	}
}

// TestRenameLowerDir renames directories that come from the read-only
// branches, which overlayfs refuses with EXDEV: livefs moves them (copying
// them up whole, as aufs does), and the result survives a remount.
func TestRenameLowerDir(t *testing.T) {
	sqfstest.RequireRoot(t)
	for _, format := range []cow.Format{cow.Aufs, cow.Overlay} {
		t.Run(fmt.Sprint(format), func(t *testing.T) { testRenameLowerDir(t, format) })
	}
}

// testRenameLowerDir moves a bundle directory twice, the second time onto
// a directory that holds only a whiteout.
func testRenameLowerDir(t *testing.T, format cow.Format) {
	lower := filepath.Join(t.TempDir(), "lower")
	for p, data := range map[string]string{
		"d/x/y": "deep", "d/z": "top", "d/x/w/v": "deeper", "dst/old": "hidden after rename",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(lower, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lower, p), []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "lower.sb")
	sqfstest.Mksquashfs(t, lower, img, "-comp", "zstd")
	changes := filepath.Join(t.TempDir(), "changes")
	mnt, unmount := mountWritable(t, changes, format, img)
	before := sqfstest.SnapshotDir(t, filepath.Join(mnt, "d"))
	if err := os.Remove(filepath.Join(mnt, "dst/old")); err != nil {
		t.Fatal(err)
	}
	for _, mv := range [][2]string{{"d", "e"}, {"e", "dst"}} {
		// rename(2) itself: os.Rename refuses to replace a directory.
		if err := unix.Rename(filepath.Join(mnt, mv[0]), filepath.Join(mnt, mv[1])); err != nil {
			t.Fatalf("rename %s %s: %v", mv[0], mv[1], err)
		}
	}
	check := func(when string, want sqfstest.Tree) {
		t.Helper()
		for _, gone := range []string{"d", "e"} {
			if _, err := os.Lstat(filepath.Join(mnt, gone)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: %s still there (%v)", when, gone, err)
			}
		}
		after := sqfstest.SnapshotDir(t, filepath.Join(mnt, "dst"))
		if diff := sqfstest.Diff(comparable(want), comparable(after), sqfstest.Fields{}); len(diff) > 0 {
			t.Errorf("%s: moved tree differs:\n%s", when, strings.Join(diff, "\n"))
		}
	}
	check("after rename", before)
	// Changes under the moved tree through nodes the kernel knew before
	// the move: they must land at the new place.
	if err := os.WriteFile(filepath.Join(mnt, "dst/x/new"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "dst/x/y"), []byte("rewritten"), 0o644); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"dst/x/new": "new", "dst/x/y": "rewritten", "dst/x/w/v": "deeper"} {
		if got, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(got) != want {
			t.Errorf("%s: got %q (%v), want %q", p, got, err, want)
		}
	}
	changed := sqfstest.SnapshotDir(t, filepath.Join(mnt, "dst"))
	unmount()
	mnt, _ = mountWritable(t, changes, format, img)
	check("after remount", changed)
}

// TestChangesLocked: two livefs cannot serve one changes directory.
func TestChangesLocked(t *testing.T) {
	dir := t.TempDir()
	c, err := cow.Open(dir, "", cow.Aufs)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := cow.Open(dir, "", cow.Aufs); !errors.Is(err, cow.ErrLocked) {
		t.Errorf("second open: got %v, want ErrLocked", err)
	}
}

// mountKernelOverlay mounts the kernel's overlayfs over lowerdir (in
// overlayfs's syntax, highest first) with a fresh upper and work dir in
// tmp, as the oracle the writable union is compared with.
func mountKernelOverlay(t *testing.T, tmp, lowerdir string) string {
	t.Helper()
	kmnt := filepath.Join(tmp, "kernel")
	for _, d := range []string{kmnt, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sqfstest.Run(t, "mount", "-t", "overlay", "overlay", "-o",
		fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lowerdir, tmp, tmp), kmnt)
	t.Cleanup(func() { exec.Command("umount", kmnt).Run() })
	return kmnt
}

// TestNewEntryOverStrayWhiteout: a directory with nothing below the changes
// layer may still hold an overlay-form whiteout (left by a bundle taken
// away, say); an entry made at its name replaces it.
func TestNewEntryOverStrayWhiteout(t *testing.T) {
	sqfstest.RequireRoot(t)
	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "f"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	changes := filepath.Join(t.TempDir(), "changes")
	if err := os.MkdirAll(filepath.Join(changes, "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	names := []string{"file", "dir", "link"}
	for _, name := range names {
		if err := unix.Mknod(filepath.Join(changes, "new", name), unix.S_IFCHR, 0); err != nil {
			t.Fatal(err)
		}
	}
	mnt, unmount := mountWritable(t, changes, cow.Overlay, lower)
	dir := filepath.Join(mnt, "new")
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("before: %v entries (%v), want none", len(ents), err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for name, want := range map[string]os.FileMode{"file": 0, "dir": os.ModeDir, "link": os.ModeSymlink} {
			st, err := os.Lstat(filepath.Join(dir, name))
			if err != nil || st.Mode().Type() != want {
				t.Errorf("%s: %s: %v (%v), want type %v", when, name, st, err, want)
			}
		}
		if got, err := os.ReadFile(filepath.Join(dir, "link")); err != nil || string(got) != "new" {
			t.Errorf("%s: link reads %q (%v), want %q", when, got, err, "new")
		}
	}
	check("after making")
	unmount()
	mnt, _ = mountWritable(t, changes, cow.Overlay, lower)
	dir = filepath.Join(mnt, "new")
	check("after remount")
}

// TestNewEntryGroup: an entry made by root in a setgid directory gets the
// directory's group (a directory its setgid bit too), elsewhere root's.
func TestNewEntryGroup(t *testing.T) {
	sqfstest.RequireRoot(t)
	lower := t.TempDir()
	const group = 1234
	shared := filepath.Join(lower, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(shared, 0, group); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(shared, 0o2775); err != nil { // os.Chmod wants os.ModeSetgid
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "lower.sb")
	sqfstest.Mksquashfs(t, lower, img, "-comp", "zstd")
	for _, format := range []cow.Format{cow.Aufs, cow.Overlay} {
		t.Run(fmt.Sprint(format), func(t *testing.T) {
			mnt, _ := mountWritable(t, filepath.Join(t.TempDir(), "changes"), format, img)
			for _, d := range []string{"shared", "shared/made", "plain"} {
				if d != "shared" {
					if err := os.Mkdir(filepath.Join(mnt, d), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.WriteFile(filepath.Join(mnt, d, "f"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, tc := range []struct {
				path   string
				gid    uint32
				setgid bool
			}{
				{"shared/f", group, false},
				{"shared/made", group, true},
				{"shared/made/f", group, false},
				{"plain", 0, false},
				{"plain/f", 0, false},
			} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(mnt, tc.path), &st); err != nil {
					t.Fatal(err)
				}
				got := fmt.Sprintf("%d:%d setgid %v", st.Uid, st.Gid, st.Mode&unix.S_ISGID != 0)
				want := fmt.Sprintf("0:%d setgid %v", tc.gid, tc.setgid)
				if got != want {
					t.Errorf("%s: got %s, want %s", tc.path, got, want)
				}
			}
		})
	}
}

// TestUnlinkDropsLinkCount: removing one name of a file in the changes
// layer shows in the link count of its other names at once.
func TestUnlinkDropsLinkCount(t *testing.T) {
	sqfstest.RequireRoot(t)
	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "x"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range []cow.Format{cow.Aufs, cow.Overlay} {
		t.Run(fmt.Sprint(format), func(t *testing.T) {
			mnt, _ := mountWritable(t, filepath.Join(t.TempDir(), "changes"), format, lower)
			at := func(name string) string { return filepath.Join(mnt, name) }
			for _, l := range [][2]string{{"x", "y"}, {"y", "z"}} {
				if err := os.Link(at(l[0]), at(l[1])); err != nil {
					t.Fatal(err)
				}
			}
			for _, tc := range []struct {
				remove string
				want   uint64
			}{{"", 3}, {"y", 2}, {"x", 1}} {
				if tc.remove != "" {
					if err := os.Remove(at(tc.remove)); err != nil {
						t.Fatal(err)
					}
				}
				var st unix.Stat_t
				if err := unix.Stat(at("z"), &st); err != nil || st.Nlink != tc.want {
					t.Errorf("after removing %q: z has %d links (%v), want %d", tc.remove, st.Nlink, err, tc.want)
				}
			}
		})
	}
}

// TestRemovedBigFileFreesSpace: the space of a big file, written through
// the union (passthrough: the server sees no write), is free when its
// unlink returns.
func TestRemovedBigFileFreesSpace(t *testing.T) {
	sqfstest.RequireRoot(t)
	lower := t.TempDir()
	changes := filepath.Join(t.TempDir(), "changes")
	mnt, _ := mountWritable(t, changes, cow.Aufs, lower)
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(mnt, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	usage := func() int64 {
		t.Helper()
		out, err := exec.Command("du", "-s", "--block-size=1", changes).Output()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		fmt.Sscan(string(out), &n)
		return n
	}
	before := usage()
	if err := os.Remove(filepath.Join(mnt, "big")); err != nil {
		t.Fatal(err)
	}
	if after := usage(); before-after < int64(len(data)) {
		t.Errorf("changes directory holds %d bytes before the unlink, %d right after: want %d fewer", before, after, len(data))
	}
}

// TestTruncatingCopyUp: a change that cuts a bundle's file copies only the
// data that stays. The files' last blocks are damaged in the image, so a
// copy-up that read them would fail with EIO. An open with O_TRUNC leaves
// the file empty with a new mtime and its inode number (setuid kept for
// root, which has CAP_FSETID); a truncate keeps the head.
func TestTruncatingCopyUp(t *testing.T) {
	sqfstest.RequireRoot(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	const block = 4096
	data := strings.Repeat("0123456789abcdef", 3*block/16) // three blocks
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, mode := range map[string]os.FileMode{"wronly": 0o644, "rdwr": 0o644, "setuid": 0o755 | os.ModeSetuid, "head": 0o644} {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "img.sb")
	sqfstest.Mksquashfs(t, src, img, "-comp", "gzip", "-b", fmt.Sprint(block), "-no-fragments")
	r, err := sqfs.Open(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"wronly", "rdwr", "setuid", "head"} {
		fi, err := r.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := r.FileBlocks(fi.Sys().(*sqfs.Inode))
		if err != nil || len(blocks) != 3 {
			t.Fatalf("%s: %d blocks, %v; want 3", name, len(blocks), err)
		}
		last := blocks[2]
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 16), int64(last.Pos)+int64(last.Size)/2); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	for _, m := range mountModes {
		t.Run(m.name, func(t *testing.T) {
			if m.passthrough {
				requirePassthroughKernel(t)
			}
			mnt, _, _ := mountWritableUnion(t, filepath.Join(t.TempDir(), "changes"), cow.Aufs, union.MountOptions{NoPassthrough: !m.passthrough}, img)
			at := func(name string) string { return filepath.Join(mnt, name) }
			if _, err := os.ReadFile(at("head")); !errorsIsEIO(err) {
				t.Fatalf("reading a damaged file: %v, want EIO", err)
			}
			start := time.Now().Add(-time.Second)
			for _, tc := range []struct {
				name  string
				flags int
				mode  uint32
			}{
				{"wronly", os.O_WRONLY | os.O_TRUNC, 0o644},
				{"rdwr", os.O_RDWR | os.O_TRUNC, 0o644},
				{"setuid", os.O_WRONLY | os.O_TRUNC, 0o4755},
			} {
				var before unix.Stat_t
				if err := unix.Stat(at(tc.name), &before); err != nil {
					t.Fatal(err)
				}
				f, err := os.OpenFile(at(tc.name), tc.flags, 0)
				if err != nil {
					t.Errorf("open %s with O_TRUNC: %v", tc.name, err)
					continue
				}
				_, err = f.WriteString("new\n")
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
				}
				got, err := os.ReadFile(at(tc.name))
				var st unix.Stat_t
				if serr := unix.Stat(at(tc.name), &st); err == nil {
					err = serr
				}
				if err != nil || string(got) != "new\n" || st.Ino != before.Ino || st.Mode&0o7777 != tc.mode || time.Unix(st.Mtim.Unix()).Before(start) {
					t.Errorf("%s after open with O_TRUNC and a write: %q, ino %d (was %d), mode %o, mtime %v, %v; want %q, the same ino, mode %o, mtime now",
						tc.name, got, st.Ino, before.Ino, st.Mode&0o7777, time.Unix(st.Mtim.Unix()), err, "new\n", tc.mode)
				}
			}
			if err := os.Truncate(at("head"), 100); err != nil {
				t.Errorf("truncate head to 100 bytes: %v", err)
			}
			if got, err := os.ReadFile(at("head")); err != nil || string(got) != data[:100] {
				t.Errorf("head after truncate: %d bytes, %v; want its first 100 bytes", len(got), err)
			}
		})
	}
}
