package cow

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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
