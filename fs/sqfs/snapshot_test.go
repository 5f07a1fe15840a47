package sqfs_test

import (
	"fmt"
	"io"
	"testing"

	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/internal/sqfstest"
)

// snapshotImage captures the decoder's view of an image in the form the
// kernel's view is captured, using the inode-level API.
func snapshotImage(t testing.TB, r *sqfs.Reader) sqfstest.Tree {
	t.Helper()
	tr := sqfstest.Tree{}
	seen := map[uint64]bool{}
	var walk func(path string, ino *sqfs.Inode)
	walk = func(path string, ino *sqfs.Inode) {
		e, err := inodeEntry(r, ino)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		tr[path] = e
		if ino.Type != sqfs.TypeDir {
			return
		}
		if seen[ino.Ref] {
			t.Fatalf("%s: directory inode visited twice", path)
		}
		seen[ino.Ref] = true
		ents, err := r.ReadDirInode(ino)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, de := range ents {
			child, err := r.Inode(de.InodeRef)
			if err != nil {
				t.Fatalf("%s/%s: %v", path, de.Name, err)
			}
			// A lookup through the index must find the same inode.
			viaLookup, err := r.Lookup(ino, de.Name)
			if err != nil || viaLookup.Ref != child.Ref {
				t.Fatalf("lookup %s/%s: got %v, %v; want ref %#x", path, de.Name, viaLookup, err, child.Ref)
			}
			p := de.Name
			if path != "." {
				p = path + "/" + de.Name
			}
			walk(p, child)
		}
	}
	walk(".", r.Root())
	tr.FinishLinks()
	return tr
}

func inodeEntry(r *sqfs.Reader, ino *sqfs.Inode) (*sqfstest.Entry, error) {
	e := &sqfstest.Entry{
		Type: ino.Type.String(), Perm: uint32(ino.Perm), UID: ino.UID, GID: ino.GID,
		Size: int64(ino.Size), Nlink: ino.Nlink, MTime: int64(ino.MTime), Ino: uint64(ino.Number),
	}
	switch ino.Type {
	case sqfs.TypeFile:
		fr, err := r.OpenFile(ino)
		if err != nil {
			return nil, err
		}
		e.Digest, err = sqfstest.Digest(io.NewSectionReader(fr, 0, fr.Size()))
		if err != nil {
			return nil, fmt.Errorf("reading content: %w", err)
		}
	case sqfs.TypeSymlink:
		e.Target = ino.Target
	case sqfs.TypeBlockDev, sqfs.TypeCharDev:
		e.Major, e.Minor = ino.Major(), ino.Minor()
	}
	xs, err := r.Xattrs(ino)
	if err != nil {
		return nil, err
	}
	var names []string
	vals := map[string][]byte{}
	for _, x := range xs {
		names = append(names, x.Name)
		vals[x.Name] = x.Value
	}
	e.Xattrs, err = sqfstest.FormatXattrs(names, func(n string) ([]byte, error) { return vals[n], nil })
	return e, err
}
