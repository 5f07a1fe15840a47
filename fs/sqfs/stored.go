package sqfs

import (
	"errors"
)

// WalkFrom is Walk starting at the directory or file p (symlinks followed);
// paths passed to fn start with p.
func (r *Reader) WalkFrom(p string, fn func(path string, ino *Inode, err error) error) error {
	if p == "." || p == "" {
		return r.Walk(fn)
	}
	start, err := r.walk("walk", p, true)
	if err != nil {
		return err
	}
	return r.walkTree(p, start, fn)
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
	if err := r.loadBlocks(ino); err != nil {
		return nil, err
	}
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

// ReadStored reads a stored block's raw bytes into dst.
func (r *Reader) ReadStored(b StoredBlock, dst []byte) error {
	if uint64(len(dst)) < uint64(b.Size) {
		return errors.New("buffer too small for stored block")
	}
	return r.readFull(dst[:b.Size], b.Pos)
}
