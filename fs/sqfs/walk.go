package sqfs

import (
	"errors"
	"path"
)

// SkipDir, returned by a Walk callback for a directory, skips its contents.
var SkipDir = errors.New("skip this directory")

// Walk visits every inode of the image depth-first in listing order,
// starting at the root ("."). A directory inode reached a second time (a
// cycle or a hard-linked directory, which squashfs cannot hold) is reported
// to fn as ErrCorrupt instead of being entered, so a hostile image cannot
// make Walk run forever. An error from reading an entry is passed to fn with
// a nil inode; fn decides whether to stop by returning it.
func (r *Reader) Walk(fn func(p string, ino *Inode, err error) error) error {
	seen := map[uint64]bool{}
	var visit func(p string, ino *Inode) error
	visit = func(p string, ino *Inode) error {
		if ino.Type == TypeDir {
			if seen[ino.Ref] {
				return fn(p, nil, r.corrupt("directory "+p, "directory inode %d reached twice (a cycle)", ino.Number))
			}
			seen[ino.Ref] = true
		}
		if err := fn(p, ino, nil); err != nil {
			if err == SkipDir && ino.Type == TypeDir {
				return nil
			}
			return err
		}
		if ino.Type != TypeDir {
			return nil
		}
		ents, err := r.ReadDirInode(ino)
		if err != nil {
			return fn(p, nil, err)
		}
		for _, e := range ents {
			cp := path.Join(p, e.Name)
			child, err := r.entryInode(e)
			if err != nil {
				if err := fn(cp, nil, err); err != nil {
					return err
				}
				continue
			}
			if err := visit(cp, child); err != nil {
				return err
			}
		}
		return nil
	}
	return visit(".", r.root)
}

// WalkFrom is Walk starting at the inode with path p (symlinks followed).
func (r *Reader) WalkFrom(p string, fn func(p string, ino *Inode, err error) error) error {
	start, err := r.walk("walk", p, true)
	if err != nil {
		return err
	}
	sub := *r
	sub.root = start
	return sub.Walk(func(q string, ino *Inode, err error) error { return fn(path.Join(p, q), ino, err) })
}

// StoredBlock describes one data block as stored in the image.
type StoredBlock struct {
	Pos        uint64 // absolute position
	Size       uint32 // bytes on disk
	Compressed bool
}

// FileBlocks lists the stored blocks a regular file's data comes from: its
// full blocks (sparse ones omitted) and the fragment block holding its tail.
func (r *Reader) FileBlocks(ino *Inode) ([]StoredBlock, error) {
	var out []StoredBlock
	for i, w := range ino.blockSizes {
		if w&dataSizeMask != 0 {
			out = append(out, StoredBlock{Pos: ino.blockOffsets[i], Size: w & dataSizeMask, Compressed: w&dataUncompressed == 0})
		}
	}
	if ino.HasFragment() {
		f, err := r.fragment(ino.fragment)
		if err != nil {
			return nil, err
		}
		out = append(out, StoredBlock{Pos: f.start, Size: f.size & dataSizeMask, Compressed: f.size&dataUncompressed == 0})
	}
	return out, nil
}

// Decompress decodes one compressed block with the image's compressor into
// dst, which should have room for a whole block, and returns its length.
func (r *Reader) Decompress(dst, src []byte) (int, error) { return r.codec.decompress(dst, src) }

// ReadStored reads a stored block's raw bytes.
func (r *Reader) ReadStored(b StoredBlock, dst []byte) error {
	if uint64(len(dst)) < uint64(b.Size) {
		return errors.New("buffer too small")
	}
	return r.readFull(dst[:b.Size], b.Pos)
}
