package cow

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/sqfstest"
)

// TestOpenRemovesStaleCopyUps: copy-ups a killed server left unfinished
// in the work directory are removed at the next Open, with the inode
// numbers recorded for them; other files there stay.
func TestOpenRemovesStaleCopyUps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format Format
		work   bool
	}{{"aufs", Aufs, false}, {"overlay", Overlay, true}} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir, work := filepath.Join(base, "changes"), ""
			if tc.work {
				work = filepath.Join(base, "work")
			}
			c, err := Open(dir, work, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			workDir := work
			if workDir == "" {
				workDir = filepath.Join(dir, AufsWorkDir)
			}
			file := filepath.Join(workDir, c.TempName())
			if err := os.WriteFile(file, []byte("half a copy"), 0o600); err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Stat(file, &st); err != nil {
				t.Fatal(err)
			}
			if err := c.RememberIno(st.Ino, 12345); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(workDir, c.TempName()), 0o700); err != nil {
				t.Fatal(err)
			}
			keep := filepath.Join(workDir, "not-a-copy-up")
			if err := os.WriteFile(keep, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			c.Close() // as a kill would leave it

			c, err = Open(dir, work, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if stale, _ := filepath.Glob(filepath.Join(workDir, tempPrefix+"*")); len(stale) != 0 {
				t.Errorf("left after Open: %v", stale)
			}
			if _, err := os.Stat(keep); err != nil {
				t.Errorf("Open removed another file: %v", err)
			}
			if ino, ok := c.RememberedIno(st.Ino); ok {
				t.Errorf("inode record of the removed copy-up kept: %d", ino)
			}
		})
	}
}

// TestWhiteoutsShareOneInode: whiteouts are hard links to one file in the
// work directory (as aufs and overlayfs make them), and the base is
// renewed when it is missing or of the wrong kind.
func TestWhiteoutsShareOneInode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("overlay whiteouts are character devices: mknod needs root")
	}
	for _, tc := range []struct {
		name   string
		format Format
		work   bool
		path   func(dir, name string) string // where the whiteout of name is
	}{
		{"aufs", Aufs, false, func(dir, name string) string { return filepath.Join(dir, aufsWhiteoutPrefix+name) }},
		{"overlay", Overlay, true, func(dir, name string) string { return filepath.Join(dir, name) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir, work := filepath.Join(base, "changes"), ""
			if tc.work {
				work = filepath.Join(base, "work")
			}
			workDir := work
			if workDir == "" {
				workDir = filepath.Join(dir, AufsWorkDir)
			}
			if err := os.MkdirAll(workDir, 0o700); err != nil {
				t.Fatal(err)
			}
			// A base of the wrong kind, as a damaged work directory has.
			if err := os.WriteFile(filepath.Join(workDir, whiteoutBase), []byte("not empty"), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Open(dir, work, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, name := range []string{"a", "b"} {
				if err := c.Whiteout("", name); err != nil {
					t.Fatal(err)
				}
				if !c.HasWhiteout("", name) {
					t.Errorf("%s: no whiteout", name)
				}
			}
			var baseSt, a, b unix.Stat_t
			for p, st := range map[string]*unix.Stat_t{filepath.Join(workDir, whiteoutBase): &baseSt, tc.path(dir, "a"): &a, tc.path(dir, "b"): &b} {
				if err := unix.Lstat(p, st); err != nil {
					t.Fatal(err)
				}
			}
			if a.Ino != baseSt.Ino || b.Ino != baseSt.Ino || baseSt.Nlink != 3 {
				t.Errorf("whiteouts a, b and base: inodes %d, %d, %d, base links %d; want one inode with 3 links", a.Ino, b.Ino, baseSt.Ino, baseSt.Nlink)
			}
			if baseSt.Mode != c.whiteoutMode() || baseSt.Size != 0 || baseSt.Rdev != 0 {
				t.Errorf("base: mode %o size %d rdev %d; want mode %o, empty, device 0", baseSt.Mode, baseSt.Size, baseSt.Rdev, c.whiteoutMode())
			}
		})
	}
}

// TestDurable: a changes layer in RAM or on tmpfs has nothing to sync.
func TestDurable(t *testing.T) {
	ram, err := OpenRAM(Aufs)
	if err != nil {
		t.Fatal(err)
	}
	defer ram.Close()
	shm, err := os.MkdirTemp("/dev/shm", "livefs-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.RemoveAll(shm)
	onTmpfs, err := Open(shm, "", Aufs)
	if err != nil {
		t.Fatal(err)
	}
	defer onTmpfs.Close()
	wd, _ := os.Getwd() // the source tree: on a disk
	disk, err := os.MkdirTemp(wd, "durable-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(disk)
	var st unix.Statfs_t
	if err := unix.Statfs(disk, &st); err != nil || st.Type == unix.TMPFS_MAGIC {
		t.Fatalf("%s is not on a disk (statfs %v): cannot check a durable layer", disk, err)
	}
	onDisk, err := Open(disk, "", Aufs)
	if err != nil {
		t.Fatal(err)
	}
	defer onDisk.Close()
	for _, tc := range []struct {
		name string
		c    *Changes
		want bool
	}{{"RAM", ram, false}, {"tmpfs", onTmpfs, false}, {"disk", onDisk, true}} {
		if got := tc.c.Durable(); got != tc.want {
			t.Errorf("%s: Durable() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRemovedInodeRecords: in the overlay format the inode number recorded
// for a file goes when its last name is deleted (a new file may get its
// number), not while another name keeps the inode; directories have one.
func TestRemovedInodeRecords(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("overlay whiteouts are character devices: mknod needs root")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "changes")
	c, err := Open(dir, filepath.Join(base, "work"), Overlay)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range []string{"only", "linked"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(dir, "linked"), filepath.Join(dir, "other-name")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"d1", "d2"} {
		if err := os.Mkdir(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ino := map[string]uint64{}
	for i, p := range []string{"only", "linked", "d1", "d2"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
			t.Fatal(err)
		}
		ino[p] = st.Ino
		if err := c.RememberIno(st.Ino, uint64(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, rm := range []struct {
		name     string
		whiteout bool
		held     Holding
	}{{"only", false, Holding{Links: 1}}, {"linked", true, Holding{Links: 2}}, {"d1", false, Holding{}}, {"d2", true, Holding{}}} {
		remove := c.Remove
		if rm.whiteout {
			remove = c.ReplaceWithWhiteout
		}
		if err := remove("", rm.name, rm.held); err != nil {
			t.Fatalf("removing %s: %v", rm.name, err)
		}
	}
	// The other name's link count drops at once, not when the sweeper
	// gets to the removed one.
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "other-name"), &st); err != nil || st.Nlink != 1 {
		t.Errorf("other-name: %d links (%v), want 1", st.Nlink, err)
	}
	c.WaitSwept()
	for _, tc := range []struct {
		name string
		want bool
	}{{"only", false}, {"linked", true}, {"d1", false}, {"d2", false}} {
		if _, got := c.RememberedIno(ino[tc.name]); got != tc.want {
			t.Errorf("%s: record kept %v, want %v", tc.name, got, tc.want)
		}
	}
	if !c.HasWhiteout("", "linked") || !c.HasWhiteout("", "d2") {
		t.Error("ReplaceWithWhiteout left no whiteout")
	}
}

// TestCloseLeavesDiscards: Close does not wait for discarded entries to be
// deleted; the next Open deletes what is left, with the inode records.
func TestCloseLeavesDiscards(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("overlay whiteouts are character devices: mknod needs root")
	}
	base := t.TempDir()
	dir, work := filepath.Join(base, "changes"), filepath.Join(base, "work")
	c, err := Open(dir, work, Overlay)
	if err != nil {
		t.Fatal(err)
	}
	var inos []uint64
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("d%03d", i)
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 20; j++ {
			if err := c.Whiteout(name, fmt.Sprintf("w%02d", j)); err != nil {
				t.Fatal(err)
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, name), &st); err != nil {
			t.Fatal(err)
		}
		inos = append(inos, st.Ino)
		if err := c.RememberIno(st.Ino, uint64(1000+i)); err != nil {
			t.Fatal(err)
		}
		if err := c.Remove("", name, Holding{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	left := 0
	ents, _ := os.ReadDir(work)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			left++
		}
	}
	t.Logf("%d of 300 discarded directories left at Close", left)
	c, err = Open(dir, work, Overlay)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ents, _ = os.ReadDir(work)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("%s still in the work directory after Open", e.Name())
		}
	}
	for i, ino := range inos {
		if _, kept := c.RememberedIno(ino); kept {
			t.Errorf("d%03d: inode record kept", i)
		}
	}
}

// mountScratch makes a file system with mkfs (args after the tool name)
// on a loop image of sizeMiB and mounts it for the test.
func mountScratch(t *testing.T, sizeMiB int64, mkfs string, args ...string) string {
	t.Helper()
	sqfstest.RequireRoot(t)
	sqfstest.RequireTool(t, mkfs)
	img := filepath.Join(t.TempDir(), "scratch.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	sqfstest.Run(t, mkfs, append(args, img)...)
	mnt := t.TempDir()
	sqfstest.Run(t, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	return mnt
}

// TestWhiteoutBaseRenewed: on ext4, whose files take at most 65,000 links,
// the whiteout base is renewed when it is full.
func TestWhiteoutBaseRenewed(t *testing.T) {
	const whiteouts = 65_010
	mnt := mountScratch(t, 128, "mkfs.ext4", "-q", "-N", "80000")
	dir := filepath.Join(mnt, "changes")
	c, err := Open(dir, "", Aufs)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < whiteouts; i++ {
		if err := c.Whiteout("d", fmt.Sprintf("%05d", i)); err != nil {
			t.Fatalf("whiteout %d: %v", i, err)
		}
	}
	inodes := map[uint64]bool{}
	for _, i := range []int{0, 1, whiteouts - 2, whiteouts - 1} {
		name := fmt.Sprintf("%05d", i)
		if !c.HasWhiteout("d", name) {
			t.Errorf("%s: no whiteout", name)
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, "d", aufsWhiteoutPrefix+name), &st); err != nil {
			t.Fatal(err)
		}
		inodes[st.Ino] = true
	}
	if len(inodes) != 2 {
		t.Errorf("first and last whiteouts on %d inodes, want 2 (the base renewed once)", len(inodes))
	}
}

// TestRemovalDeletesAtOnce: a removed file with other names, or a big one,
// is deleted before the removal returns; a small one is left to the
// sweeper.
func TestRemovalDeletesAtOnce(t *testing.T) {
	for _, format := range []Format{Aufs, Overlay} {
		base := t.TempDir()
		dir := filepath.Join(base, "changes")
		work := ""
		if format == Overlay {
			work = filepath.Join(base, "work")
		}
		c, err := Open(dir, work, format)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			held Holding
			now  bool
		}{
			{"small", Holding{Links: 1, Bytes: 4096}, false}, // deleted by the sweeper
			{"big", Holding{Links: 1, Bytes: bigFileBytes}, true},
			{"linked", Holding{Links: 2, Bytes: 4096}, true},
		} {
			if err := os.WriteFile(filepath.Join(dir, tc.name), []byte(tc.name), 0o644); err != nil {
				t.Fatal(err)
			}
			before := workTemps(t, c)
			if err := c.Remove("", tc.name, tc.held); err != nil {
				t.Fatal(err)
			}
			// Deleted at once: no temporary is left (the sweeper waits
			// sweepDelay before it deletes anything).
			if got := workTemps(t, c); tc.now && got != before {
				t.Errorf("%v %s: %d temporaries after the removal, want %d", format, tc.name, got, before)
			}
		}
		c.WaitSwept()
		if got := workTemps(t, c); got != 0 {
			t.Errorf("%v: %d temporaries left after the sweep", format, got)
		}
		c.Close()
	}
}

// workTemps counts the temporaries in c's work directory.
func workTemps(t *testing.T, c *Changes) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/self/fd/%d", c.WorkFD()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			n++
		}
	}
	return n
}
