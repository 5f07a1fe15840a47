package flate

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var genSeeds = flag.Bool("genseeds", false, "regenerate the fuzz seed corpus in testdata/fuzz")

// seedStreams returns raw DEFLATE seeds: streams made by the standard
// library and klauspost/compress at several levels, and the hand-built edge
// cases.
func seedStreams(tb testing.TB) (raws, datas [][]byte) {
	inputs := [][]byte{nil, []byte("a"), textData(200), randomData(100, 9), make([]byte, 600), textData(3000)}
	for _, in := range inputs {
		for _, level := range []int{-2, 0, 1, 6, 9} {
			raws = append(raws, stdRaw(tb, in, level))
			datas = append(datas, in)
		}
		raws = append(raws, kpRaw(tb, in, 5))
		datas = append(datas, in)
	}
	for _, c := range edgeCases() {
		if len(c.raw) < 3000 {
			raws = append(raws, c.raw)
			datas = append(datas, c.want)
		}
	}
	return raws, datas
}

// TestGenerateFuzzSeeds writes the seed corpus when run with -genseeds:
//
//	go test -run TestGenerateFuzzSeeds -genseeds ./fs/sqfs/internal/flate/
func TestGenerateFuzzSeeds(t *testing.T) {
	if !*genSeeds {
		t.Skip("run with -genseeds to regenerate testdata/fuzz")
	}
	raws, datas := seedStreams(t)
	for _, target := range []string{"FuzzDecompress", "FuzzDecompressRaw"} {
		dir := filepath.Join("testdata", "fuzz", target)
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, raw := range raws {
			src := raw
			if target == "FuzzDecompress" {
				src = zlibWrap(raw, datas[i])
			}
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", src)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%03d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func fuzzCheck(t *testing.T, src []byte, zlib bool) {
	check(t, src, zlib, 1<<16)
	// A small bound derived from the input exercises the output limit.
	check(t, src, zlib, 2*len(src))
}

func FuzzDecompress(f *testing.F) {
	f.Add([]byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, src []byte) { fuzzCheck(t, src, true) })
}

func FuzzDecompressRaw(f *testing.F) {
	f.Add([]byte{0x03, 0x00})
	f.Fuzz(func(t *testing.T, src []byte) { fuzzCheck(t, src, false) })
}
