package sqfs

import (
	"encoding/binary"
	"fmt"
)

// metaBlock returns the decoded metadata block that starts at absolute
// position pos, which must lie before end. aux of the result is the block's
// on-disk length including its 2-byte header.
func (r *Reader) metaBlock(pos, end uint64, what string) (blockRef, error) {
	if pos < superblockSize || pos+2 > end || end > r.sb.BytesUsed {
		return blockRef{}, r.corrupt(what, "metadata block at %d outside %d..%d", pos, superblockSize, end)
	}
	return r.metaCache.get(pos, func() ([]byte, uint64, error) {
		var hdr [2]byte
		if err := r.readFull(hdr[:], pos); err != nil {
			return nil, 0, r.corruptCause(what, err, "reading metadata block header at %d", pos)
		}
		h := binary.LittleEndian.Uint16(hdr[:])
		size := uint64(h & 0x7fff)
		compressed := h&0x8000 == 0
		if size == 0 || size > metaBlockSize {
			return nil, 0, r.corrupt(what, "metadata block at %d has length %d (must be 1..%d)", pos, size, metaBlockSize)
		}
		if pos+2+size > r.sb.BytesUsed {
			return nil, 0, r.corrupt(what, "metadata block at %d with length %d runs past the image end %d", pos, size, r.sb.BytesUsed)
		}
		out := r.metaPool.get()
		if !compressed {
			if err := r.readFull(out[:size], pos+2); err != nil {
				r.metaPool.put(out)
				return nil, 0, r.corruptCause(what, err, "reading metadata block at %d", pos)
			}
			return out[:size], size + 2, nil
		}
		src := r.metaPool.get()
		defer r.metaPool.put(src)
		if err := r.readFull(src[:size], pos+2); err != nil {
			r.metaPool.put(out)
			return nil, 0, r.corruptCause(what, err, "reading metadata block at %d", pos)
		}
		n, err := r.codec.decompress(out, src[:size])
		if err != nil {
			r.metaPool.put(out)
			return nil, 0, r.corruptCause(what, err, "decompressing metadata block at %d", pos)
		}
		if n == 0 {
			r.metaPool.put(out)
			return nil, 0, r.corrupt(what, "metadata block at %d decompresses to nothing", pos)
		}
		return out[:n], size + 2, nil
	})
}

// metaCursor reads a byte stream that spans consecutive metadata blocks.
type metaCursor struct {
	r      *Reader
	block  uint64 // absolute position of the current block
	offset int    // offset inside the decoded current block
	end    uint64 // blocks must start before this position
	what   string // structure name for errors
	cur    blockRef
	held   bool
}

func (r *Reader) newCursor(block uint64, offset int, end uint64, what string) *metaCursor {
	return &metaCursor{r: r, block: block, offset: offset, end: end, what: what}
}

// close releases the block the cursor holds.
func (c *metaCursor) close() {
	if c.held {
		c.cur.release()
		c.held = false
	}
}

// load makes sure the cursor holds the current block and that the offset
// lies inside it, moving to the next block when the offset is at the end.
func (c *metaCursor) load() ([]byte, error) {
	for {
		if !c.held {
			ref, err := c.r.metaBlock(c.block, c.end, c.what)
			if err != nil {
				return nil, err
			}
			c.cur, c.held = ref, true
		}
		b := c.cur.bytes()
		if c.offset < len(b) {
			return b, nil
		}
		if c.offset > len(b) {
			return nil, c.r.corrupt(c.what, "offset %d beyond the %d bytes of metadata block %d", c.offset, len(b), c.block)
		}
		// Exactly at the end: continue in the next block.
		c.block += c.cur.aux()
		c.offset = 0
		c.close()
	}
}

// read fills p from the stream.
func (c *metaCursor) read(p []byte) error {
	for len(p) > 0 {
		b, err := c.load()
		if err != nil {
			return err
		}
		n := copy(p, b[c.offset:])
		c.offset += n
		p = p[n:]
	}
	return nil
}

// skip advances the stream by n bytes.
func (c *metaCursor) skip(n int) error {
	for n > 0 {
		b, err := c.load()
		if err != nil {
			return err
		}
		k := min(n, len(b)-c.offset)
		c.offset += k
		n -= k
	}
	return nil
}

// position returns the current block (relative to base) and offset.
func (c *metaCursor) position() (block uint64, offset int) { return c.block, c.offset }

// lookupTable reads the array of metadata block pointers for a table of
// count entries of entrySize bytes at position start, checking each pointer.
func (r *Reader) lookupTable(start uint64, count uint64, entrySize uint64, what string) ([]uint64, error) {
	if count == 0 {
		return nil, nil
	}
	blocks := (count*entrySize + metaBlockSize - 1) / metaBlockSize
	if start+blocks*8 > r.sb.BytesUsed || start+blocks*8 < start {
		return nil, r.corrupt(what, "lookup table of %d blocks at %d runs past the image end %d", blocks, start, r.sb.BytesUsed)
	}
	raw := make([]byte, blocks*8)
	if err := r.readFull(raw, start); err != nil {
		return nil, r.corruptCause(what, err, "reading lookup table at %d", start)
	}
	ptrs := make([]uint64, blocks)
	for i := range ptrs {
		p := binary.LittleEndian.Uint64(raw[i*8:])
		// Table blocks precede their lookup table.
		if p < superblockSize || p >= start {
			return nil, r.corrupt(what, "lookup table entry %d points to %d, outside %d..%d", i, p, superblockSize, start)
		}
		ptrs[i] = p
	}
	return ptrs, nil
}

// tableEntry copies entry i (entrySize bytes) of a table described by ptrs
// into dst. Entries never straddle metadata blocks because entry sizes divide
// the block size.
func (r *Reader) tableEntry(ptrs []uint64, tableEnd uint64, i uint64, dst []byte, what string) error {
	entrySize := uint64(len(dst))
	blk := i * entrySize / metaBlockSize
	if blk >= uint64(len(ptrs)) {
		return r.corrupt(what, "entry %d beyond the table", i)
	}
	ref, err := r.metaBlock(ptrs[blk], tableEnd, what)
	if err != nil {
		return err
	}
	defer ref.release()
	off := i * entrySize % metaBlockSize
	b := ref.bytes()
	if off+entrySize > uint64(len(b)) {
		return r.corrupt(what, "entry %d lies beyond the %d bytes of its metadata block", i, len(b))
	}
	copy(dst, b[off:])
	return nil
}

func (c *metaCursor) errorf(format string, args ...any) error {
	return c.r.corrupt(c.what, "%s", fmt.Sprintf(format, args...))
}
