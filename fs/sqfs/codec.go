package sqfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/livefs/livefs/fs/sqfs/internal/flate"
	"github.com/livefs/livefs/fs/sqfs/internal/lzo"
	"github.com/livefs/livefs/fs/sqfs/internal/xz"
)

// decompressor decodes one block. dst has the largest size the block may
// decode to; decompress returns how many bytes it wrote. Implementations
// are safe for concurrent use.
type decompressor interface {
	decompress(dst, src []byte) (int, error)
}

// errOutputOverrun is returned when a block decodes to more than it may.
var errOutputOverrun = errors.New("block decodes to more bytes than the block size")

// CompressorOptions holds the compressor options stored after the
// superblock, when present. Only the fields of the image's compressor are set.
type CompressorOptions struct {
	Present bool
	// gzip
	GzipLevel      uint32
	GzipWindowBits uint16
	GzipStrategies uint16
	// xz
	XZDictSize uint32
	XZFilters  uint32 // bit mask: 1 x86, 2 powerpc, 4 ia64, 8 arm, 16 armthumb, 32 sparc
	// lz4
	LZ4Version uint32
	LZ4Flags   uint32 // 1: high compression
	// zstd
	ZstdLevel uint32
	// lzo
	LZOAlgorithm uint32
	LZOLevel     uint32
}

var xzFilterNames = []string{"x86", "powerpc", "ia64", "arm", "armthumb", "sparc"}

// XZFilterNames lists the BCJ filters named in the xz options.
func (o CompressorOptions) XZFilterNames() []string {
	var out []string
	for i, n := range xzFilterNames {
		if o.XZFilters&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// parseCompressorOptions decodes the options block for compressor c.
func (r *Reader) parseCompressorOptions(c Compressor, b []byte) (CompressorOptions, error) {
	const where = "compressor options"
	le := binary.LittleEndian
	o := CompressorOptions{Present: true}
	need := map[Compressor]int{Gzip: 8, XZ: 8, LZ4: 8, Zstd: 4, LZO: 8, LZMA: 0}[c]
	if len(b) < need {
		return o, r.corrupt(where, "%d bytes, %s options need %d", len(b), c, need)
	}
	switch c {
	case Gzip:
		o.GzipLevel, o.GzipWindowBits, o.GzipStrategies = le.Uint32(b), le.Uint16(b[4:]), le.Uint16(b[6:])
		if o.GzipLevel < 1 || o.GzipLevel > 9 || o.GzipWindowBits < 8 || o.GzipWindowBits > 15 {
			return o, r.corrupt(where, "gzip level %d window %d out of range", o.GzipLevel, o.GzipWindowBits)
		}
	case XZ:
		o.XZDictSize, o.XZFilters = le.Uint32(b), le.Uint32(b[4:])
	case LZ4:
		o.LZ4Version, o.LZ4Flags = le.Uint32(b), le.Uint32(b[4:])
		if o.LZ4Version != 1 {
			return o, r.unsupported(where, "lz4 format version %d (only 1 is known)", o.LZ4Version)
		}
	case Zstd:
		o.ZstdLevel = le.Uint32(b)
	case LZO:
		o.LZOAlgorithm, o.LZOLevel = le.Uint32(b), le.Uint32(b[4:])
	}
	return o, nil
}

func (r *Reader) newDecompressor(c Compressor) (decompressor, error) {
	switch c {
	case Gzip:
		return zlibCodec{}, nil
	case XZ:
		return &xzCodec{}, nil
	case LZMA:
		return &xzCodec{legacy: true}, nil
	case LZO:
		return lzoCodec{}, nil
	case LZ4:
		return lz4Codec{}, nil
	case Zstd:
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecoderMaxMemory(2<<maxBlockLog),
			zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, err
		}
		return &zstdCodec{d: d}, nil
	}
	return nil, r.unsupported("superblock", "unknown compressor id %d", uint16(c))
}

// zlibCodec decodes gzip-compressed blocks (zlib streams) with livefs's
// whole-buffer inflate, about twice as fast as a streaming decoder.
type zlibCodec struct{}

func (zlibCodec) decompress(dst, src []byte) (int, error) { return flate.Decompress(dst, src) }

type xzCodec struct {
	legacy   bool
	decoders sync.Pool
}

func (x *xzCodec) decompress(dst, src []byte) (int, error) {
	d, _ := x.decoders.Get().(*xz.Decoder)
	if d == nil {
		d = new(xz.Decoder)
	}
	defer x.decoders.Put(d)
	if x.legacy {
		return d.DecodeLZMA(dst, src)
	}
	return d.DecodeXZ(dst, src)
}

type lzoCodec struct{}

func (lzoCodec) decompress(dst, src []byte) (int, error) { return lzo.Decompress(dst, src) }

type lz4Codec struct{}

func (lz4Codec) decompress(dst, src []byte) (int, error) {
	n, err := lz4.UncompressBlock(src, dst)
	if err != nil {
		return n, fmt.Errorf("lz4: %w", err)
	}
	return n, nil
}

type zstdCodec struct{ d *zstd.Decoder }

func (z *zstdCodec) decompress(dst, src []byte) (int, error) {
	out, err := z.d.DecodeAll(src, dst[:0])
	if err != nil {
		return 0, fmt.Errorf("zstd: %w", err)
	}
	if len(out) > len(dst) {
		return 0, errOutputOverrun
	}
	if len(out) > 0 && &out[0] != &dst[0] {
		copy(dst, out) // DecodeAll outgrew dst's capacity
	}
	return len(out), nil
}
