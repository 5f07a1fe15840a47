package sqfs

import (
	"encoding/binary"
	"io"
	"runtime"
	"sync"
	"syscall"
)

const (
	dataUncompressed = 1 << 24 // size-word flag: block stored uncompressed
	dataSizeMask     = dataUncompressed - 1
)

var errNotDir error = syscall.ENOTDIR

// fragmentEntry is one entry of the fragment table.
type fragmentEntry struct {
	start uint64
	size  uint32 // size word, with the uncompressed flag
}

func (r *Reader) fragment(i uint32) (fragmentEntry, error) {
	const what = "fragment table"
	var b [16]byte
	if err := r.tableEntry(r.fragPtrs, r.sb.FragmentTable, uint64(i), b[:], what); err != nil {
		return fragmentEntry{}, err
	}
	f := fragmentEntry{start: binary.LittleEndian.Uint64(b[0:]), size: binary.LittleEndian.Uint32(b[8:])}
	size := uint64(f.size & dataSizeMask)
	if size == 0 || size > uint64(r.sb.BlockSize) || f.size&^(dataSizeMask|dataUncompressed) != 0 ||
		f.start < superblockSize || f.start+size > r.sb.InodeTable {
		return fragmentEntry{}, r.corrupt(what, "fragment %d at %d with size word %#x is out of range", i, f.start, f.size)
	}
	return f, nil
}

// dataBlock returns the decoded block stored at pos with size word w. want
// is the number of bytes the block must decode to at least. what names the
// owner for errors.
func (r *Reader) dataBlock(pos uint64, w uint32, want int, what func() string) (blockRef, error) {
	ref, err := r.dataCache.get(pos, func() ([]byte, uint64, error) {
		size := int(w & dataSizeMask)
		out := r.dataPool.get()
		fail := func(err error) ([]byte, uint64, error) {
			r.dataPool.put(out)
			return nil, 0, err
		}
		if pos+uint64(size) > r.sb.BytesUsed {
			return fail(r.corrupt(what(), "data block at %d+%d runs past the image end", pos, size))
		}
		var n int
		if w&dataUncompressed != 0 {
			if err := r.readFull(out[:size], pos); err != nil {
				return fail(r.corruptCause(what(), err, "reading data block at %d", pos))
			}
			n = size
		} else {
			src := r.dataPool.get()
			err := r.readFull(src[:size], pos)
			if err == nil {
				n, err = decodeOnACore(func() (int, error) { return r.codec.decompress(out, src[:size]) })
			}
			r.dataPool.put(src)
			if err != nil {
				return fail(r.corruptCause(what(), err, "decompressing data block at %d (%d bytes)", pos, size))
			}
		}
		if n < want {
			return fail(r.corrupt(what(), "data block at %d decodes to %d bytes, want %d", pos, n, want))
		}
		return out[:n], 0, nil
	})
	// A cached block was checked against the want of the caller that
	// decoded it; in a corrupt image another user of the block (a second
	// file's fragment tail, say) may want more.
	if err == nil && len(ref.bytes()) < want {
		n := len(ref.bytes())
		ref.release()
		return blockRef{}, r.corrupt(what(), "data block at %d decodes to %d bytes, want %d", pos, n, want)
	}
	return ref, err
}

// decodeSlots bounds the data blocks being decoded at once, across every
// reader, to the cores: more decoders than cores would only be time-sliced
// (preemption, and each switch evicting the codec's tables from the
// caches), while waiting callers park cheaply.
var decodeSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

func decodeOnACore(decode func() (int, error)) (int, error) {
	decodeSlots <- struct{}{}
	defer func() { <-decodeSlots }()
	return decode()
}

// blockOf describes where block i of a file comes from.
type blockLoc struct {
	sparse   bool
	pos      uint64
	word     uint32
	skip     int // offset of the file's bytes inside the decoded block
	length   int // number of file bytes this block holds
	fragment bool
}

func (r *Reader) locate(ino *Inode, i int) (blockLoc, error) {
	if err := r.loadBlocks(ino); err != nil {
		return blockLoc{}, err
	}
	bs := int64(r.sb.BlockSize)
	length := int(min(bs, int64(ino.Size)-int64(i)*bs))
	if i < len(ino.blockSizes) {
		w := ino.blockSizes[i]
		return blockLoc{sparse: w&dataSizeMask == 0, pos: ino.blockOffsets[i], word: w, length: length}, nil
	}
	f, err := r.fragment(ino.fragment)
	if err != nil {
		return blockLoc{}, err
	}
	return blockLoc{pos: f.start, word: f.size, skip: int(ino.fragOffset), length: length, fragment: true}, nil
}

func (r *Reader) fileWhat(ino *Inode) func() string {
	return func() string { return "file inode " + itoa(uint64(ino.Number)) }
}

// ReadAt reads file data of a regular-file inode at off. Blocks the read
// spans beyond the first are decoded in parallel.
func (r *Reader) ReadAt(ino *Inode, p []byte, off int64) (int, error) {
	if ino.Type != TypeFile {
		return 0, syscall.EISDIR
	}
	if off < 0 {
		return 0, syscall.EINVAL
	}
	size := int64(ino.Size)
	if off >= size {
		return 0, io.EOF
	}
	want := p
	if int64(len(want)) > size-off {
		want = want[:size-off]
	}
	bs := int64(r.sb.BlockSize)
	first, last := int(off/bs), int((off+int64(len(want))-1)/bs)
	if last > first {
		r.prefetch(ino, first+1, last+1)
	}
	n := 0
	for i := first; i <= last; i++ {
		m, err := r.readBlockInto(ino, i, want[n:], off+int64(n)-int64(i)*bs)
		n += m
		if err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readBlockInto copies the bytes of file block i starting at offset within
// the block into p, and returns how many it copied.
func (r *Reader) readBlockInto(ino *Inode, i int, p []byte, offset int64) (int, error) {
	loc, err := r.locate(ino, i)
	if err != nil {
		return 0, err
	}
	k := min(len(p), loc.length-int(offset))
	if loc.sparse {
		clear(p[:k])
		return k, nil
	}
	ref, err := r.dataBlock(loc.pos, loc.word, loc.skip+loc.length, r.fileWhat(ino))
	if err != nil {
		return 0, err
	}
	copy(p[:k], ref.bytes()[loc.skip+int(offset):])
	ref.release()
	return k, nil
}

// prefetch decodes blocks [from, to) of a file in the background, at most
// r.workers at a time across the reader, unless they are already cached.
func (r *Reader) prefetch(ino *Inode, from, to int) {
	if r.loadBlocks(ino) != nil {
		return
	}
	nblocks := len(ino.blockSizes)
	if ino.HasFragment() {
		nblocks++
	}
	to = min(to, nblocks)
	for i := from; i < to; i++ {
		loc, err := r.locate(ino, i)
		if err != nil || loc.sparse || r.dataCache.contains(loc.pos) {
			continue
		}
		select {
		case r.workers <- struct{}{}:
		default:
			return // every worker is busy: the reader will decode the rest itself
		}
		go func() {
			defer func() { <-r.workers }()
			if ref, err := r.dataBlock(loc.pos, loc.word, loc.skip+loc.length, r.fileWhat(ino)); err == nil {
				ref.release()
			}
		}()
	}
}

// PrefetchStart starts decoding, on a free worker, the first blocks of a
// file (its fragment block too), for a caller that knows it will read the
// file soon: an extraction going through many small files, whose shared
// fragment blocks would otherwise be decoded one at a time while the
// readers of each wait for it. It does nothing when every worker is busy.
func (r *Reader) PrefetchStart(ino *Inode) {
	if ino.Type == TypeFile {
		r.prefetch(ino, 0, max(r.readahead/2, 1))
	}
}

// FileReader reads one regular file and detects sequential access, decoding
// the blocks ahead of a sequential reader in parallel. It is safe for
// concurrent use.
type FileReader struct {
	r   *Reader
	ino *Inode

	mu      sync.Mutex
	nextOff int64 // where a sequential reader would read next
	window  int   // readahead window in blocks
}

// OpenFile returns a FileReader for a regular-file inode.
func (r *Reader) OpenFile(ino *Inode) (*FileReader, error) {
	if ino.Type != TypeFile {
		return nil, syscall.EISDIR
	}
	return &FileReader{r: r, ino: ino}, nil
}

// Inode returns the file's inode.
func (f *FileReader) Inode() *Inode { return f.ino }

// Size returns the file size.
func (f *FileReader) Size() int64 { return int64(f.ino.Size) }

// ReadAt implements io.ReaderAt.
func (f *FileReader) ReadAt(p []byte, off int64) (int, error) {
	bs := int64(f.r.sb.BlockSize)
	f.mu.Lock()
	sequential := off == f.nextOff
	if sequential {
		f.window = min(max(f.window*2, 1), f.r.readahead)
	} else {
		f.window = 0
	}
	window := f.window
	f.nextOff = off + int64(len(p))
	f.mu.Unlock()
	if window > 0 && f.r.readahead > 0 {
		next := int((off + int64(len(p)) + bs - 1) / bs)
		f.r.prefetch(f.ino, next, next+window)
	}
	return f.r.ReadAt(f.ino, p, off)
}

// SparseRun returns how many of the n bytes of a regular file starting at
// off are a hole: whole sparse blocks from a block-aligned off. Extractors
// use it to leave holes instead of writing zeros.
func (r *Reader) SparseRun(ino *Inode, off, n int64) int64 {
	bs := int64(r.sb.BlockSize)
	if off%bs != 0 || off < 0 || r.loadBlocks(ino) != nil {
		return 0
	}
	end := min(off+n, int64(ino.Size))
	run := int64(0)
	for i := off / bs; i < int64(len(ino.blockSizes)) && i*bs < end; i++ {
		if ino.blockSizes[i]&dataSizeMask != 0 {
			break
		}
		run = min((i+1)*bs, end) - off
	}
	return run
}

// Blocks hands the file's data to fn block by block, in order, straight
// from the block cache: data is valid only during the call and must not be
// changed. A hole (a sparse block) comes as data == nil with its length n.
// Blocks ahead are decoded in parallel as for a sequential reader.
func (f *FileReader) Blocks(fn func(off int64, n int, data []byte) error) error {
	r, ino := f.r, f.ino
	if err := r.loadBlocks(ino); err != nil {
		return err
	}
	nblocks := len(ino.blockSizes)
	if ino.HasFragment() {
		nblocks++
	}
	bs := int64(r.sb.BlockSize)
	for i := 0; i < nblocks; i++ {
		if r.readahead > 0 && i%max(r.readahead/2, 1) == 0 {
			r.prefetch(ino, i+1, i+1+r.readahead)
		}
		loc, err := r.locate(ino, i)
		if err != nil {
			return err
		}
		off := int64(i) * bs
		if loc.sparse {
			if err := fn(off, loc.length, nil); err != nil {
				return err
			}
			continue
		}
		ref, err := r.dataBlock(loc.pos, loc.word, loc.skip+loc.length, r.fileWhat(ino))
		if err != nil {
			return err
		}
		err = fn(off, loc.length, ref.bytes()[loc.skip:loc.skip+loc.length])
		ref.release()
		if err != nil {
			return err
		}
	}
	return nil
}
