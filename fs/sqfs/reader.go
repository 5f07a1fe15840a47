// Package sqfs reads squashfs 4.0 images: every inode type, fragments,
// sparse and shared blocks, directory indexes, xattrs, the export table, and
// all six compressors. A Reader is an io/fs.FS and also offers an inode-level
// API for callers (such as a FUSE server) that keep inodes themselves.
//
// Every structure read from the image is validated before use; a malformed
// image yields an error wrapping ErrCorrupt that names the image and the
// structure, never a panic or an allocation the image size does not justify.
package sqfs

import (
	"encoding/binary"
	"io"
	"os"
	"runtime"
)

// Options tune a Reader. The zero value selects the defaults.
type Options struct {
	// Name identifies the image in errors; Open sets it to the file name.
	Name string
	// CacheBytes bounds the memory held by decoded data blocks. The default,
	// DefaultCacheBytes, keeps 32 blocks of 1 MiB.
	CacheBytes int64
	// MetaCacheBytes bounds decoded metadata blocks (default 8 MiB).
	MetaCacheBytes int64
	// Readahead is the largest number of blocks a sequential FileReader
	// decodes ahead of the reader (default: enough for 4 MiB, at least 2).
	// Negative disables readahead.
	Readahead int
	// Workers bounds background decoding goroutines (default GOMAXPROCS).
	Workers int
}

// DefaultCacheBytes is the default data block cache size.
const DefaultCacheBytes = 32 << 20

// Reader reads a squashfs image. It is safe for concurrent use.
type Reader struct {
	ra    io.ReaderAt
	size  int64
	name  string
	file  *os.File // set by Open, closed by Close
	sb    Superblock
	opts  CompressorOptions
	codec decompressor

	metaPool, dataPool   *bufPool
	metaCache, dataCache *blockCache
	workers              chan struct{}
	readahead            int

	ids        []uint32
	fragPtrs   []uint64
	exportPtrs []uint64
	xattrPtrs  []uint64
	xattrStart uint64
	xattrCount uint32
	dirEnd     uint64 // directory listings lie before this position
	root       *Inode
}

// Open opens the image file at path.
func Open(path string, opts *Options) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Name == "" {
		o.Name = path
	}
	r, err := NewReader(f, st.Size(), &o)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// NewReader reads an image of size bytes from ra.
func NewReader(ra io.ReaderAt, size int64, opts *Options) (*Reader, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	r := &Reader{ra: ra, size: size, name: o.Name}
	if r.name == "" {
		r.name = "squashfs image"
	}
	if size < superblockSize {
		return nil, r.corrupt("superblock", "image has %d bytes, fewer than a superblock", size)
	}
	var b [superblockSize]byte
	if err := r.readFull(b[:], 0); err != nil {
		return nil, r.corruptCause("superblock", err, "reading")
	}
	if m := binary.LittleEndian.Uint32(b[:]); m != magic {
		return nil, r.corrupt("superblock", "bad magic %#08x (not a squashfs image, or a big-endian squashfs 3 image)", m)
	}
	r.sb = parseSuperblock(b[:])
	if err := r.validateSuperblock(size); err != nil {
		return nil, err
	}
	codec, err := r.newDecompressor(r.sb.Compressor)
	if err != nil {
		return nil, err
	}
	r.codec = codec
	r.metaPool = newBufPool(metaBlockSize)
	r.dataPool = newBufPool(int(r.sb.BlockSize))
	metaBytes, dataBytes := o.MetaCacheBytes, o.CacheBytes
	if metaBytes <= 0 {
		metaBytes = 8 << 20
	}
	if dataBytes <= 0 {
		dataBytes = DefaultCacheBytes
	}
	r.metaCache = newBlockCache(metaBytes, r.metaPool)
	r.dataCache = newBlockCache(dataBytes, r.dataPool)
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	r.workers = make(chan struct{}, workers)
	r.readahead = o.Readahead
	if r.readahead == 0 {
		r.readahead = max(2, (4<<20)/int(r.sb.BlockSize))
	}
	if err := r.openTables(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reader) openTables() error {
	s := &r.sb
	if s.Flags&FlagCompressorOptions != 0 {
		ref, err := r.metaBlock(superblockSize, s.InodeTable, "compressor options")
		if err != nil {
			return err
		}
		r.opts, err = r.parseCompressorOptions(s.Compressor, ref.bytes())
		ref.release()
		if err != nil {
			return err
		}
	}
	// id table: at most 65535 entries, read whole.
	ptrs, err := r.lookupTable(s.IDTable, uint64(s.IDCount), 4, "id table")
	if err != nil {
		return err
	}
	r.ids = make([]uint32, s.IDCount)
	var e [4]byte
	for i := range r.ids {
		if err := r.tableEntry(ptrs, s.IDTable, uint64(i), e[:], "id table"); err != nil {
			return err
		}
		r.ids[i] = binary.LittleEndian.Uint32(e[:])
	}
	if s.FragmentTable != noTable && s.FragmentCount > 0 {
		if r.fragPtrs, err = r.lookupTable(s.FragmentTable, uint64(s.FragmentCount), 16, "fragment table"); err != nil {
			return err
		}
	}
	if s.HasExportTable() {
		if r.exportPtrs, err = r.lookupTable(s.ExportTable, uint64(s.InodeCount), 8, "export table"); err != nil {
			return err
		}
	}
	if err := r.openXattrs(); err != nil {
		return err
	}
	// Every table after the directory table starts with metadata blocks
	// that its lookup table points to: the first of them ends the listings.
	r.dirEnd = s.BytesUsed
	for _, list := range [][]uint64{ptrs, r.fragPtrs, r.exportPtrs, r.xattrPtrs} {
		for _, p := range list {
			if p > s.DirectoryTable {
				r.dirEnd = min(r.dirEnd, p)
			}
		}
	}
	if r.xattrPtrs != nil && r.xattrStart > s.DirectoryTable {
		r.dirEnd = min(r.dirEnd, r.xattrStart)
	}
	if r.dirEnd <= s.DirectoryTable {
		return r.corrupt("superblock", "no room for the directory table between %d and %d", s.DirectoryTable, r.dirEnd)
	}
	root, err := r.Inode(s.RootInode)
	if err != nil {
		return err
	}
	if root.Type != TypeDir {
		return r.corrupt("root inode", "is a %s, not a directory", root.Type)
	}
	r.root = root
	return nil
}

// Close releases the image file if the Reader opened it.
func (r *Reader) Close() error {
	if r.file != nil {
		return r.file.Close()
	}
	return nil
}

// Superblock returns the image's superblock.
func (r *Reader) Superblock() Superblock { return r.sb }

// CompressorOptions returns the compressor options stored in the image.
func (r *Reader) CompressorOptions() CompressorOptions { return r.opts }

// Name returns the image's name as used in errors.
func (r *Reader) Name() string { return r.name }

func (r *Reader) readFull(p []byte, off uint64) error {
	if off > uint64(r.size) || uint64(len(p)) > uint64(r.size)-off {
		return io.ErrUnexpectedEOF
	}
	n, err := r.ra.ReadAt(p, int64(off))
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// InodeByNumber returns the inode with the given number through the export
// table. It fails with ErrUnsupported if the image has none.
func (r *Reader) InodeByNumber(n uint32) (*Inode, error) {
	const what = "export table"
	if r.exportPtrs == nil {
		return nil, r.unsupported(what, "image has no export table")
	}
	if n == 0 || n > r.sb.InodeCount {
		return nil, r.corrupt(what, "inode number %d outside 1..%d", n, r.sb.InodeCount)
	}
	var e [8]byte
	if err := r.tableEntry(r.exportPtrs, r.sb.ExportTable, uint64(n-1), e[:], what); err != nil {
		return nil, err
	}
	ino, err := r.Inode(binary.LittleEndian.Uint64(e[:]))
	if err != nil {
		return nil, err
	}
	if ino.Number != n {
		return nil, r.corrupt(what, "entry for inode %d points to inode %d", n, ino.Number)
	}
	return ino, nil
}

// CacheStats reports block cache hits and misses.
func (r *Reader) CacheStats() (hits, misses uint64) {
	r.dataCache.mu.Lock()
	defer r.dataCache.mu.Unlock()
	return r.dataCache.hits, r.dataCache.misses
}
