package sqfs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/livefs/livefs/fs/sqfs"
)

const wideEntries = 10_000

// wideNames returns the names of the wide directory, sorted, of lengths
// from 6 to 89 bytes.
func wideNames() []string {
	names := make([]string, wideEntries)
	for i := range names {
		names[i] = fmt.Sprintf("%05d-%s", i, strings.Repeat("abcdefghijklm", 7)[:(i*31)%84])
	}
	slices.Sort(names)
	return names
}

// wideImage packs a directory of wideEntries empty files (and a sibling
// file) and returns the image bytes.
func wideImage(t *testing.T) []byte {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	wide := filepath.Join(src, "wide")
	if err := os.MkdirAll(wide, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range wideNames() {
		if err := os.WriteFile(filepath.Join(wide, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "z"), []byte("z"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, b := buildSmall(t, src, "-no-xattrs")
	return b
}

// lookupCost looks name up in a fresh Reader's wide directory and returns
// the result and how many directory-table and inode-table metadata blocks
// the lookup alone touched.
func lookupCost(t *testing.T, img []byte, name string) (ino *sqfs.Inode, err error, dirBlocks, inodeBlocks int) {
	t.Helper()
	r, oerr := sqfs.NewReader(bytes.NewReader(img), int64(len(img)), &sqfs.Options{MetaCacheBytes: 64 << 20})
	if oerr != nil {
		t.Fatal(oerr)
	}
	wide, oerr := r.Lookup(r.Root(), "wide")
	if oerr != nil {
		t.Fatal(oerr)
	}
	before := sqfs.MetaBlocksCached(r)
	ino, err = r.Lookup(wide, name)
	sb := r.Superblock()
	for _, k := range sqfs.MetaBlocksCached(r) {
		if _, found := slices.BinarySearch(before, k); found {
			continue
		}
		switch {
		case k >= sb.DirectoryTable:
			dirBlocks++
		case k >= sb.InodeTable:
			inodeBlocks++
		}
	}
	return ino, err, dirBlocks, inodeBlocks
}

// TestLookupIndex checks that every name of a 10,000-entry directory is
// found, that names that are not there are not, and that a lookup reads a
// few metadata blocks through the directory index instead of scanning the
// listing.
func TestLookupIndex(t *testing.T) {
	img := wideImage(t)
	names := wideNames()
	r, err := sqfs.NewReader(bytes.NewReader(img), int64(len(img)), nil)
	if err != nil {
		t.Fatal(err)
	}
	wide, err := r.Lookup(r.Root(), "wide")
	if err != nil {
		t.Fatal(err)
	}
	if sqfs.DirIndexCount(wide) < 10 {
		t.Fatalf("wide has %d index entries, want a directory index", sqfs.DirIndexCount(wide))
	}
	listingBlocks := int(wide.Size / 8192)
	if listingBlocks < 20 {
		t.Fatalf("wide's listing spans %d metadata blocks; the test needs many", listingBlocks)
	}
	ents, err := r.ReadDirInode(wide)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(names) {
		t.Fatalf("listing has %d entries, want %d", len(ents), len(names))
	}
	// Every name, through the index, finds the inode its entry names.
	for i, e := range ents {
		if e.Name != names[i] {
			t.Fatalf("entry %d is %q, want %q", i, e.Name, names[i])
		}
		got, err := r.LookupEntry(wide, e.Name)
		if err != nil || got != e {
			t.Fatalf("LookupEntry(%q) = %+v, %v; want %+v", e.Name, got, err, e)
		}
	}
	// Names that are not there, before, between and after the real ones.
	missing := []string{"!", "0", "00000", "00000-a", names[0] + "!", names[4999] + "~", names[5000][:6],
		names[len(names)-1] + "a", "99999", "~", strings.Repeat("z", 255)}
	for _, name := range missing {
		if _, err := r.LookupEntry(wide, name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LookupEntry(%q): got %v, want ErrNotExist", name, err)
		}
	}

	// The cost of single lookups on a cold cache.
	probe := []string{names[0], names[1], names[len(names)/2], names[len(names)-2], names[len(names)-1]}
	for i := 0; i < len(names); i += 997 {
		probe = append(probe, names[i])
	}
	tests := append(probe, missing...)
	for _, name := range tests {
		ino, err, dirBlocks, inodeBlocks := lookupCost(t, img, name)
		isMissing := slices.Contains(missing, name)
		switch {
		case isMissing && !errors.Is(err, fs.ErrNotExist):
			t.Errorf("Lookup(%q): got %v, want ErrNotExist", name, err)
		case !isMissing && (err != nil || ino.Type != sqfs.TypeFile):
			t.Errorf("Lookup(%q): got %v, %v; want a file", name, ino, err)
		}
		// The index gives the block of the header to start from; the entry
		// may continue into the next block, and its header may start one
		// block earlier.
		if dirBlocks > 3 || inodeBlocks > 4 {
			t.Errorf("Lookup(%q) read %d directory and %d inode metadata blocks; the listing has %d, want <= 3 and <= 4",
				name, dirBlocks, inodeBlocks, listingBlocks)
		}
	}
}
