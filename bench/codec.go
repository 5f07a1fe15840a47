// Package bench measures livefs's squashfs decoding: block decompression
// per core and on all cores, a full tree read through the reader, and the
// codec's reference command-line tool decompressing the same blocks.
package bench

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livefs/livefs/fs/sqfs"
)

// Result is one measured phase.
type Result struct {
	Phase   string        `json:"phase"`
	Bytes   int64         `json:"bytes"` // decompressed bytes produced
	Elapsed time.Duration `json:"elapsed_ns"`
	Note    string        `json:"note,omitempty"`
}

// MBps is the throughput in decimal megabytes per second.
func (r Result) MBps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
}

// Blocks holds the compressed data blocks of an image in memory.
type Blocks struct {
	Compressed [][]byte
	Sizes      []int // decoded sizes, filled by the first decode
	RawBytes   int64
}

// LoadBlocks reads every distinct compressed data and fragment block of
// the image, up to maxBytes of compressed data.
func LoadBlocks(r *sqfs.Reader, maxBytes int64) (*Blocks, error) {
	seen := map[uint64]bool{}
	b := &Blocks{}
	errStop := fmt.Errorf("enough")
	err := r.Walk(func(p string, ino *sqfs.Inode, err error) error {
		if err != nil {
			return err
		}
		if ino.Type != sqfs.TypeFile {
			return nil
		}
		blocks, err := r.FileBlocks(ino)
		if err != nil {
			return err
		}
		for _, sb := range blocks {
			if !sb.Compressed || seen[sb.Pos] {
				continue
			}
			seen[sb.Pos] = true
			buf := make([]byte, sb.Size)
			if err := r.ReadStored(sb, buf); err != nil {
				return err
			}
			b.Compressed = append(b.Compressed, buf)
			b.RawBytes += int64(sb.Size)
			if b.RawBytes >= maxBytes {
				return errStop
			}
		}
		return nil
	})
	if err != nil && err != errStop {
		return nil, err
	}
	if len(b.Compressed) == 0 {
		return nil, fmt.Errorf("%s: no compressed data blocks to measure", r.Name())
	}
	return b, nil
}

// Decode decompresses every block with the given number of goroutines and
// returns the time taken and the bytes produced.
func Decode(r *sqfs.Reader, b *Blocks, workers int) (Result, error) {
	bs := int(r.Superblock().BlockSize)
	var next atomic.Int64
	var total atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, bs, bs+64) // slack lets decoders take their fast paths, as the reader's pooled buffers do
			for {
				i := next.Add(1) - 1
				if i >= int64(len(b.Compressed)) {
					return
				}
				n, err := r.Decompress(dst, b.Compressed[i])
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("block %d: %w", i, err) })
					return
				}
				total.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	res := Result{Phase: fmt.Sprintf("decode, %d core(s)", workers), Bytes: total.Load(), Elapsed: time.Since(start)}
	return res, firstErr
}

// ReadTree reads every regular file of the image through a fresh Reader
// (empty caches) with the given number of concurrent readers.
func ReadTree(path string, readers int, cacheBytes int64) (Result, error) {
	r, err := sqfs.Open(path, &sqfs.Options{CacheBytes: cacheBytes})
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	start := time.Now()
	files := make(chan *sqfs.Inode, 64)
	var total atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128<<10) // the size of a FUSE read
			for ino := range files {
				fr, _ := r.OpenFile(ino)
				n, err := io.CopyBuffer(io.Discard, io.NewSectionReader(fr, 0, fr.Size()), buf)
				total.Add(n)
				if err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	werr := r.Walk(func(p string, ino *sqfs.Inode, err error) error {
		if err != nil {
			return err
		}
		if ino.Type == sqfs.TypeFile {
			files <- ino
		}
		return nil
	})
	close(files)
	wg.Wait()
	if werr != nil {
		return Result{}, werr
	}
	return Result{Phase: fmt.Sprintf("tree read, %d reader(s)", readers), Bytes: total.Load(), Elapsed: time.Since(start)}, firstErr
}

// Reference runs the codec's reference command-line tool over the same
// blocks, converted to a stream format the tool reads, and times it. It
// returns ok=false when the codec has no reference tool here.
func Reference(r *sqfs.Reader, b *Blocks, decodedBytes int64, tmpDir string) (Result, bool, error) {
	comp := r.Superblock().Compressor
	var tool []string
	var write func(w io.Writer) error
	switch comp {
	case sqfs.XZ:
		// Each block is a complete .xz stream; xz reads concatenated streams.
		tool = []string{"xz", "-dc", "-T1"}
		write = func(w io.Writer) error { return concat(w, b.Compressed) }
	case sqfs.Zstd:
		tool = []string{"zstd", "-dc", "-q"}
		write = func(w io.Writer) error { return concat(w, b.Compressed) }
	case sqfs.Gzip:
		// Blocks are zlib streams: rewrap each as a gzip member.
		tool = []string{"gzip", "-dc"}
		write = func(w io.Writer) error { return zlibToGzip(r, w, b.Compressed) }
	case sqfs.LZ4:
		// Blocks are raw LZ4 blocks: the legacy frame holds them as they are.
		tool = []string{"lz4", "-dc"}
		write = func(w io.Writer) error { return lz4Legacy(w, b.Compressed) }
	default:
		return Result{}, false, nil
	}
	if _, err := exec.LookPath(tool[0]); err != nil {
		return Result{}, false, nil
	}
	p := filepath.Join(tmpDir, "blocks."+comp.String())
	f, err := os.Create(p)
	if err != nil {
		return Result{}, false, err
	}
	defer os.Remove(p)
	if err := write(f); err != nil {
		f.Close()
		return Result{}, false, err
	}
	f.Close()
	// Warm the page cache, then time the tool.
	if data, err := os.ReadFile(p); err != nil || len(data) == 0 {
		return Result{}, false, fmt.Errorf("reading %s back: %v", p, err)
	}
	cmd := exec.Command(tool[0], append(tool[1:], p)...)
	out := &countWriter{}
	cmd.Stdout = out
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return Result{}, false, fmt.Errorf("%v: %w", tool, err)
	}
	el := time.Since(start)
	if out.n != decodedBytes {
		return Result{}, false, fmt.Errorf("%v produced %d bytes, livefs decoded %d", tool, out.n, decodedBytes)
	}
	return Result{Phase: "reference: " + joinArgs(tool), Bytes: out.n, Elapsed: el}, true, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func joinArgs(a []string) string {
	s := a[0]
	for _, x := range a[1:] {
		s += " " + x
	}
	return s
}

func concat(w io.Writer, blocks [][]byte) error {
	for _, b := range blocks {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// zlibToGzip rewraps zlib streams (2-byte header, deflate, adler32) as gzip
// members (10-byte header, deflate, crc32, size). The crc needs the decoded
// bytes, so each block is decoded once here.
func zlibToGzip(r *sqfs.Reader, w io.Writer, blocks [][]byte) error {
	dst := make([]byte, r.Superblock().BlockSize)
	hdr := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}
	for i, b := range blocks {
		n, err := r.Decompress(dst, b)
		if err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
		if len(b) < 6 || b[1]&0x20 != 0 {
			return fmt.Errorf("block %d: not a plain zlib stream", i)
		}
		var trailer [8]byte
		binary.LittleEndian.PutUint32(trailer[0:], crc32.ChecksumIEEE(dst[:n]))
		binary.LittleEndian.PutUint32(trailer[4:], uint32(n))
		for _, part := range [][]byte{hdr, b[2 : len(b)-4], trailer[:]} {
			if _, err := w.Write(part); err != nil {
				return err
			}
		}
	}
	return nil
}

// lz4Legacy writes the LZ4 legacy frame: a magic number, then each block
// prefixed with its compressed size.
func lz4Legacy(w io.Writer, blocks [][]byte) error {
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], 0x184C2102)
	if _, err := w.Write(magic[:]); err != nil {
		return err
	}
	for _, b := range blocks {
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(b)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// CPUs is the number of cores the all-core phases use.
func CPUs() int { return runtime.GOMAXPROCS(0) }
