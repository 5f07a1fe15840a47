package cow

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/sqfstest"
)

// listing describes a directory of the changes layer: name and type
// (f file, d directory, w overlay whiteout device), sorted.
func listing(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		kind := "f"
		switch {
		case e.IsDir():
			kind = "d"
		case e.Type()&os.ModeCharDevice != 0:
			kind = "w"
		}
		out = append(out, e.Name()+":"+kind)
	}
	sort.Strings(out)
	return out
}

// TestNameChanges checks the end state of each name change in both
// whiteout forms (the steps' order is what the crash test exercises).
func TestNameChanges(t *testing.T) {
	sqfstest.RequireRoot(t) // overlay whiteouts are made with mknod
	for _, tc := range []struct {
		name   string
		format Format
		// after: the root listing after each step
		afterDelete, afterCreate, afterRename []string
	}{
		{"aufs", Aufs,
			[]string{".wh..wh.livefs:d", ".wh.dir:f", ".wh.file:f"},
			[]string{".wh..wh.livefs:d", ".wh.dir:f", "file:f"},
			[]string{".wh..wh.livefs:d", ".wh.dir:f", ".wh.file:f", "moved:f"}},
		{"overlay", Overlay,
			[]string{"dir:w", "file:w"},
			[]string{"dir:w", "file:f"},
			[]string{"dir:w", "file:w", "moved:f"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir, work := filepath.Join(base, "changes"), ""
			if tc.format == Overlay {
				work = filepath.Join(base, "work")
			}
			c, err := Open(dir, work, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			os.WriteFile(filepath.Join(dir, "file"), []byte("upper"), 0o644)
			os.Mkdir(filepath.Join(dir, "dir"), 0o755)
			if err := c.Whiteout("dir", "hidden"); err != nil { // a whiteout inside, as rmdir finds
				t.Fatal(err)
			}
			if err := c.ReplaceWithWhiteout("", "file", Holding{}); err != nil {
				t.Fatal(err)
			}
			if err := c.ReplaceWithWhiteout("", "dir", Holding{}); err != nil {
				t.Fatal(err)
			}
			if got := listing(t, dir); !slices.Equal(got, tc.afterDelete) {
				t.Errorf("after deletes: got %v, want %v", got, tc.afterDelete)
			}
			if !c.HasWhiteout("", "file") || !c.HasWhiteout("", "dir") || c.HasWhiteout("", "other") {
				t.Errorf("HasWhiteout wrong after deletes")
			}

			tmp := c.TempName()
			fd, err := unix.Openat(c.WorkFD(), tmp, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Write(fd, []byte("new"))
			unix.Close(fd)
			if err := c.ReplaceWhiteout(tmp, "", "file", false); err != nil {
				t.Fatal(err)
			}
			if got := listing(t, dir); !slices.Equal(got, tc.afterCreate) {
				t.Errorf("after create: got %v, want %v", got, tc.afterCreate)
			}
			if data, _ := os.ReadFile(filepath.Join(dir, "file")); string(data) != "new" {
				t.Errorf("new file holds %q", data)
			}

			if err := c.Rename("", "file", "", "moved", false, true); err != nil {
				t.Fatal(err)
			}
			if got := listing(t, dir); !slices.Equal(got, tc.afterRename) {
				t.Errorf("after rename: got %v, want %v", got, tc.afterRename)
			}
			// A directory onto a whiteout: it takes the whiteout's place.
			os.Mkdir(filepath.Join(dir, "newdir"), 0o755)
			if err := c.Rename("", "newdir", "", "dir", true, false); err != nil {
				t.Fatal(err)
			}
			if st, err := os.Lstat(filepath.Join(dir, "dir")); err != nil || !st.IsDir() {
				t.Errorf("dir after moving a directory onto its whiteout: %v %v", st, err)
			}
			if c.HasWhiteout("", "dir") {
				t.Errorf("whiteout of dir still there")
			}
			if _, err := os.Lstat(filepath.Join(dir, "newdir")); !os.IsNotExist(err) {
				t.Errorf("newdir still there: %v", err)
			}
			c.WaitSwept()
			workDir := work
			if workDir == "" {
				workDir = filepath.Join(dir, AufsWorkDir)
			}
			if left, _ := filepath.Glob(filepath.Join(workDir, tempPrefix+"*")); len(left) != 0 {
				t.Errorf("temporaries left in the work directory: %v", left)
			}
		})
	}
}

// TestRenameOverDir: a directory moved onto a directory that holds only
// whiteouts replaces it, whatever the source leaves behind.
func TestRenameOverDir(t *testing.T) {
	sqfstest.RequireRoot(t)
	for _, format := range []Format{Aufs, Overlay} {
		for _, srcLower := range []bool{false, true} {
			base := t.TempDir()
			dir, work := filepath.Join(base, "changes"), ""
			if format == Overlay {
				work = filepath.Join(base, "work")
			}
			c, err := Open(dir, work, format)
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(dir, "src"), 0o755)
			os.WriteFile(filepath.Join(dir, "src", "content"), []byte("x"), 0o644)
			os.MkdirAll(filepath.Join(dir, "dst"), 0o700)
			if err := c.Whiteout("dst", "hidden"); err != nil {
				t.Fatal(err)
			}
			if err := c.MakeOpaque("dst"); err != nil {
				t.Fatal(err)
			}
			if err := c.RenameOverDir("", "src", "", "dst", srcLower); err != nil {
				t.Fatalf("format %d, srcLower %v: %v", format, srcLower, err)
			}
			got := listing(t, filepath.Join(dir, "dst"))
			if !slices.Equal(got, []string{"content:f"}) {
				t.Errorf("format %d, srcLower %v: dst holds %v, want the source's content", format, srcLower, got)
			}
			_, serr := os.Lstat(filepath.Join(dir, "src"))
			switch {
			case srcLower && !c.HasWhiteout("", "src"):
				t.Errorf("format %d: no whiteout at the source", format)
			case !srcLower && (c.HasWhiteout("", "src") || serr == nil):
				t.Errorf("format %d: the source is still there (%v) or whited out", format, serr)
			}
			c.Close()
		}
	}
}
