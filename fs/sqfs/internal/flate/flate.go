// Package flate is a whole-buffer DEFLATE (RFC 1951) and zlib (RFC 1950)
// decoder in the style of libdeflate: the complete input and a bounded
// output buffer are in memory, the bit buffer lives in a local 64-bit word
// refilled a word at a time, Huffman codes are decoded with a main table plus
// subtables whose entries carry everything needed to decode a literal, a
// length or a distance, and matches are copied a word at a time.
//
// The decoder never reads or writes outside src and dst, never allocates in
// the steady state (decoder state is pooled) and is safe for concurrent use.
// Bytes of dst beyond the returned length may be overwritten with scratch
// data.
package flate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// ErrCorrupt is wrapped by every error returned for malformed, truncated or
// oversized input.
var ErrCorrupt = errors.New("flate: corrupt input")

func corrupt(what string) error { return fmt.Errorf("%w: %s", ErrCorrupt, what) }

// Sentinel errors, preallocated so that failing calls stay allocation-free.
var (
	errTruncated    = corrupt("unexpected end of input")
	errTrailing     = corrupt("trailing data after end of stream")
	errOverflow     = corrupt("output exceeds destination buffer")
	errBlockType    = corrupt("invalid block type")
	errStoredLen    = corrupt("stored block length mismatch")
	errHeaderCounts = corrupt("too many length or distance symbols")
	errPrecode      = corrupt("invalid code lengths code")
	errLitlenCode   = corrupt("invalid literal/length code")
	errDistCode     = corrupt("invalid distance code")
	errNoEOB        = corrupt("missing end-of-block code")
	errRepeat       = corrupt("invalid code length repeat")
	errSymbol       = corrupt("invalid literal/length symbol")
	errDistSymbol   = corrupt("invalid distance symbol")
	errDistTooFar   = corrupt("distance too far back")
	errZlibHeader   = corrupt("invalid zlib header")
	errZlibDict     = corrupt("zlib preset dictionary not supported")
	errChecksum     = corrupt("adler-32 checksum mismatch")
)

var pool = sync.Pool{New: func() any { return new(decoder) }}

// Decompress decodes the zlib stream src into dst and returns the number of
// bytes written. It fails with an error wrapping ErrCorrupt if src is
// malformed, truncated, has a bad Adler-32, has trailing garbage after the
// trailer, or would decode to more than len(dst) bytes.
func Decompress(dst, src []byte) (int, error) {
	if len(src) < 2 {
		return 0, errTruncated
	}
	cmf, flg := src[0], src[1]
	if cmf&0x0f != 8 || cmf>>4 > 7 || (uint(cmf)<<8|uint(flg))%31 != 0 {
		return 0, errZlibHeader
	}
	if flg&0x20 != 0 {
		return 0, errZlibDict
	}
	d := pool.Get().(*decoder)
	n, end, err := d.inflate(dst, src[2:])
	pool.Put(d)
	if err != nil {
		return n, err
	}
	end += 2
	if len(src)-end < 4 {
		return n, errTruncated
	}
	if len(src)-end > 4 {
		return n, errTrailing
	}
	if binary.BigEndian.Uint32(src[end:]) != adler32(1, dst[:n]) {
		return n, errChecksum
	}
	return n, nil
}

// DecompressRaw does the same for a raw DEFLATE stream (no zlib wrapper).
func DecompressRaw(dst, src []byte) (int, error) {
	d := pool.Get().(*decoder)
	n, end, err := d.inflate(dst, src)
	pool.Put(d)
	if err != nil {
		return n, err
	}
	if end != len(src) {
		return n, errTrailing
	}
	return n, nil
}
