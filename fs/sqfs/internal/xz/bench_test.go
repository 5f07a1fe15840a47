package xz

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	mxz "github.com/mikelolasagasti/xz"
	uxz "github.com/ulikunitz/xz"
	ulzma "github.com/ulikunitz/xz/lzma"
)

// Benchmark corpora: the first benchTarSize bytes of a tar of
// /usr/local/go/src, cut into 1 MiB blocks, each compressed on its own
// with "xz --check=crc32 --lzma2=preset=6,dict=1MiB" (what mksquashfs
// -comp xz does with a 1 MiB block size). The compressed blocks are cached
// in $TMPDIR so repeated benchmark runs do not recompress.
const (
	benchBlockSize = 1 << 20
	benchTarSize   = 48 << 20
)

type benchCorpus struct {
	raw   [][]byte // uncompressed blocks
	xz    [][]byte // .xz stream per block
	lzma  [][]byte // .lzma (lzma alone) per block
	total int64    // uncompressed bytes
	dir   string   // cache directory holding all.xz and all.lzma
}

// corpusKind selects the benchmark data.
type corpusKind struct {
	name  string
	build func(limit int) ([]byte, error)
	xzArg []string // filter options for the .xz blocks
}

var (
	kindGoSrc = corpusKind{"gosrc", goSrcTar, []string{"--lzma2=preset=6,dict=1MiB"}}
	// ELF executables (the Go toolchain binaries) with the x86 BCJ filter,
	// as "mksquashfs -comp xz -Xbcj x86" would pick for them.
	kindELF = corpusKind{"elf", elfConcat, []string{"--x86", "--lzma2=preset=6,dict=1MiB"}}

	corpusMu sync.Mutex
	corpora  = map[string]*benchCorpus{}
)

// elfConcat concatenates the Go tool binaries up to limit bytes.
func elfConcat(limit int) ([]byte, error) {
	files, err := filepath.Glob("/usr/local/go/pkg/tool/linux_amd64/*")
	if err != nil {
		return nil, err
	}
	files = append([]string{"/usr/local/go/bin/go"}, files...)
	var out []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		out = append(out, b...)
		if len(out) >= limit {
			return out[:limit], nil
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no ELF binaries found")
	}
	return out, nil
}

// goSrcTar builds a deterministic tar of /usr/local/go/src, stopping after
// limit bytes.
func goSrcTar(limit int) ([]byte, error) {
	root := "/usr/local/go/src"
	var files []string
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range files {
		if buf.Len() >= limit {
			break
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: p[1:], Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	if len(b) > limit {
		b = b[:limit]
	}
	return b, nil
}

func compressCached(dir string, i int, raw []byte, ext string, args ...string) ([]byte, error) {
	p := filepath.Join(dir, fmt.Sprintf("%03d.%s", i, ext))
	if b, err := os.ReadFile(p); err == nil {
		return b, nil
	}
	cmd := exec.Command(xzPath, append([]string{"-c", "-q"}, args...)...)
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("xz %v: %v", args, err)
	}
	return out, os.WriteFile(p, out, 0o644)
}

func loadCorpus(b *testing.B, kind corpusKind) *benchCorpus {
	b.Helper()
	needXZ(b)
	corpusMu.Lock()
	defer corpusMu.Unlock()
	if c := corpora[kind.name]; c != nil {
		return c
	}
	c, err := buildCorpus(kind)
	if err != nil {
		b.Fatalf("building benchmark corpus %s: %v", kind.name, err)
	}
	corpora[kind.name] = c
	return c
}

func buildCorpus(kind corpusKind) (*benchCorpus, error) {
	var corpusErr error
	tarData, err := kind.build(benchTarSize)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(tarData)
	dir := filepath.Join(os.TempDir(), "livefs-xz-bench-"+kind.name+"-"+hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &benchCorpus{dir: dir}
	for off := 0; off < len(tarData); off += benchBlockSize {
		c.raw = append(c.raw, tarData[off:min(off+benchBlockSize, len(tarData))])
	}
	c.xz = make([][]byte, len(c.raw))
	c.lzma = make([][]byte, len(c.raw))
	var wg sync.WaitGroup
	var mu sync.Mutex
	sem := make(chan struct{}, 2)
	for i := range c.raw {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			x, err1 := compressCached(dir, i, c.raw[i], "xz", append([]string{"--format=xz", "--check=crc32"}, kind.xzArg...)...)
			l, err2 := compressCached(dir, i, c.raw[i], "lzma", "--format=lzma", "--lzma1=preset=6,dict=1MiB")
			mu.Lock()
			defer mu.Unlock()
			c.xz[i], c.lzma[i] = x, l
			if err1 != nil {
				corpusErr = err1
			} else if err2 != nil {
				corpusErr = err2
			}
		}(i)
	}
	wg.Wait()
	if corpusErr != nil {
		return nil, corpusErr
	}
	var allXZ, allLZMA []byte
	for i := range c.raw {
		c.total += int64(len(c.raw[i]))
		allXZ = append(allXZ, c.xz[i]...)
		allLZMA = append(allLZMA, c.lzma[i]...)
	}
	if err := os.WriteFile(filepath.Join(dir, "all.xz"), allXZ, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "all.lzma"), allLZMA, 0o644); err != nil {
		return nil, err
	}
	return c, nil
}

// BenchmarkDecodeXZ decodes every 1 MiB block of the corpus with this
// package and, as anchors, with github.com/ulikunitz/xz,
// github.com/mikelolasagasti/xz and liblzma (the xz CLI, "xz -d -T1" over
// the concatenated blocks, so it includes one process start per
// iteration).
func BenchmarkDecodeXZ(b *testing.B) {
	benchDecodeXZ(b, kindGoSrc)
}

// BenchmarkDecodeXZELF is BenchmarkDecodeXZ over x86 executables
// compressed with the x86 BCJ filter (ulikunitz/xz cannot decode BCJ).
func BenchmarkDecodeXZELF(b *testing.B) {
	benchDecodeXZ(b, kindELF)
}

func benchDecodeXZ(b *testing.B, kind corpusKind) {
	c := loadCorpus(b, kind)
	dst := make([]byte, benchBlockSize)

	b.Run("livefs", func(b *testing.B) {
		var d Decoder
		for i := range c.xz { // verify once
			n, err := d.DecodeXZ(dst, c.xz[i])
			if err != nil || !bytes.Equal(dst[:n], c.raw[i]) {
				b.Fatalf("block %d: n=%d err=%v", i, n, err)
			}
		}
		b.SetBytes(c.total)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		for k := 0; k < b.N; k++ {
			for i := range c.xz {
				if _, err := d.DecodeXZ(dst, c.xz[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
		cpu.report(b, c.total)
	})

	b.Run("ulikunitz", func(b *testing.B) {
		if kind.name == kindELF.name {
			b.Skip("github.com/ulikunitz/xz does not support BCJ filters")
		}
		b.SetBytes(c.total)
		b.ReportAllocs()
		cpu := startCPU()
		defer cpu.report(b, c.total)
		for k := 0; k < b.N; k++ {
			for i := range c.xz {
				r, err := uxz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(c.xz[i]))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, dst[:len(c.raw[i])]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})

	b.Run("mikelolasagasti", func(b *testing.B) {
		b.SetBytes(c.total)
		b.ReportAllocs()
		cpu := startCPU()
		defer cpu.report(b, c.total)
		var r *mxz.Reader
		for k := 0; k < b.N; k++ {
			for i := range c.xz {
				var err error
				if r == nil {
					r, err = mxz.NewReader(bytes.NewReader(c.xz[i]), 0)
				} else {
					err = r.Reset(bytes.NewReader(c.xz[i]))
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, dst[:len(c.raw[i])]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})

	b.Run("liblzma-cli", func(b *testing.B) {
		benchCLI(b, c, "all.xz", "--format=xz")
	})
}

// BenchmarkDecodeLZMA is the same for the legacy lzma format.
func BenchmarkDecodeLZMA(b *testing.B) {
	c := loadCorpus(b, kindGoSrc)
	dst := make([]byte, benchBlockSize)
	b.Run("livefs", func(b *testing.B) {
		var d Decoder
		for i := range c.lzma {
			n, err := d.DecodeLZMA(dst, c.lzma[i])
			if err != nil || !bytes.Equal(dst[:n], c.raw[i]) {
				b.Fatalf("block %d: n=%d err=%v", i, n, err)
			}
		}
		b.SetBytes(c.total)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU()
		for k := 0; k < b.N; k++ {
			for i := range c.lzma {
				if _, err := d.DecodeLZMA(dst, c.lzma[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
		cpu.report(b, c.total)
	})
	b.Run("ulikunitz", func(b *testing.B) {
		b.SetBytes(c.total)
		b.ReportAllocs()
		cpu := startCPU()
		defer cpu.report(b, c.total)
		for k := 0; k < b.N; k++ {
			for i := range c.lzma {
				r, err := ulzma.NewReader(bytes.NewReader(c.lzma[i]))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, dst[:len(c.raw[i])]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("liblzma-cli", func(b *testing.B) {
		benchCLI(b, c, "all.lzma", "--format=lzma")
	})
}

// benchCLI runs "xz -d -T1" over one of the concatenated corpus files.
// (xz accepts concatenated .xz streams; for .lzma it would stop after the
// first stream, so the .lzma variant runs once per block.)
func benchCLI(b *testing.B, c *benchCorpus, name, format string) {
	b.Helper()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	b.SetBytes(c.total)
	b.ResetTimer()
	var cpu time.Duration
	run := func(file string) {
		cmd := exec.Command(xzPath, "-d", "-T1", "-c", format, file)
		cmd.Stdout = devnull
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	for k := 0; k < b.N; k++ {
		if format == "--format=xz" {
			run(filepath.Join(c.dir, name))
			continue
		}
		for i := range c.lzma {
			run(filepath.Join(c.dir, fmt.Sprintf("%03d.lzma", i)))
		}
	}
	b.ReportMetric(float64(c.total)*float64(b.N)/cpu.Seconds()/1e6, "cpuMB/s")
}

// cpuClock measures the CPU time (user+system) of this process, which is
// a steadier measure than wall time on a shared machine. The benchmarks
// are single-goroutine and allocation-free, so it is the decoder's time.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{processCPU()} }

func (c cpuClock) report(b *testing.B, bytesPerOp int64) {
	b.Helper()
	if d := processCPU() - c.start; d > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/d.Seconds()/1e6, "cpuMB/s")
	}
}

// BenchmarkChecks measures the integrity checks over one 1 MiB block, to
// put their share of DecodeXZ's time in perspective.
func BenchmarkChecks(b *testing.B) {
	buf := textBytes(1, benchBlockSize)
	b.Run("crc32", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for k := 0; k < b.N; k++ {
			crc32.ChecksumIEEE(buf)
		}
	})
	b.Run("crc64", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for k := 0; k < b.N; k++ {
			crc64.Checksum(buf, crc64Table)
		}
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for k := 0; k < b.N; k++ {
			sha256.Sum256(buf)
		}
	})
}
