package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livefs/livefs/internal/sqfstest"
)

// testImage packs a small tree with mksquashfs and returns the image path.
func testImage(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{"etc/hostname": "livefs\n", "usr/bin/tool": "#!/bin/sh\necho hi\n", "README": "top\n", "etc/secret": "root only\n",
		"usr/share/words": strings.Repeat("livefs squashfs\n", 20000)}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "usr/bin/tool"), 0o4755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "etc/secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin/tool", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "test.sb")
	sqfstest.Mksquashfs(t, src, img, "-comp", "zstd", "-b", "64K", "-all-root")
	return img
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

func TestCommands(t *testing.T) {
	img := testImage(t)
	for _, tc := range []struct {
		args       []string
		wantCode   int
		wantOut    []string // substrings of stdout
		wantErr    []string // substrings of stderr
		wantOutEq  string   // exact stdout, when set
		checkEmpty bool
	}{
		{args: []string{"info", img}, wantOut: []string{"compressor:", "zstd", "block size:", "65536", "inodes:"}},
		{args: []string{"ls", img}, wantOutEq: "README\netc\nlink\nusr\n"},
		{args: []string{"ls", "-R", img, "/usr"}, wantOutEq: "bin\nbin/tool\nshare\nshare/words\n"},
		{args: []string{"ls", "-l", img, "/usr/bin"}, wantOut: []string{"-rwsr-xr-x 0/0", " tool\n"}},
		{args: []string{"ls", "-l", img, "link"}, wantOut: []string{"lrwxrwxrwx", "link -> usr/bin/tool"}},
		{args: []string{"cat", img, "/etc/hostname"}, wantOutEq: "livefs\n"},
		{args: []string{"cat", img, "link"}, wantOutEq: "#!/bin/sh\necho hi\n"},
		{args: []string{"cat", img, "/nope"}, wantCode: 1, wantErr: []string{"livefs cat:", "nope", "not exist"}},
		{args: []string{"info", "/no/such.sb"}, wantCode: 1, wantErr: []string{"livefs info:", "/no/such.sb", "no such file"}},
		{args: []string{"info"}, wantCode: 2, wantErr: []string{"want one image", "usage: livefs info"}},
		{args: []string{"frobnicate"}, wantCode: 2, wantErr: []string{`unknown command "frobnicate"`}},
		{args: []string{"help"}, wantOut: []string{"extract", "bench", "info", "ls", "cat"}},
		{args: []string{"help", "extract"}, wantOut: []string{"usage: livefs extract", "-j"}},
		{args: []string{"ls", "-h"}, wantErr: []string{"usage: livefs ls"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := runCLI(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", code, tc.wantCode, errOut)
			}
			if tc.wantOutEq != "" && out != tc.wantOutEq {
				t.Errorf("stdout: got %q, want %q", out, tc.wantOutEq)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

func TestInfoJSON(t *testing.T) {
	img := testImage(t)
	out, errOut, code := runCLI(t, "info", "--json", img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Compressor string   `json:"compressor"`
		BlockSize  int      `json:"block_size"`
		Inodes     int      `json:"inodes"`
		Flags      []string `json:"flags"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// root, etc, hostname, secret, usr, bin, tool, share, words, README, link
	if got.Compressor != "zstd" || got.BlockSize != 65536 || got.Inodes != 11 {
		t.Errorf("got %+v, want zstd, 65536, 11 inodes", got)
	}
}

func TestCorruptImageMessage(t *testing.T) {
	img := testImage(t)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.sb")
	if err := os.WriteFile(bad, data[:200], 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI(t, "ls", bad)
	if code != 1 || !strings.Contains(errOut, bad) || !strings.Contains(errOut, "superblock") {
		t.Errorf("got exit %d, stderr %q; want 1 and a message naming %s and the superblock", code, errOut, bad)
	}
}

func TestExtractCommand(t *testing.T) {
	img := testImage(t)
	dst := filepath.Join(t.TempDir(), "out")
	if _, errOut, code := runCLI(t, "extract", "-q", img, dst); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got, err := os.ReadFile(filepath.Join(dst, "etc/hostname"))
	if err != nil || string(got) != "livefs\n" {
		t.Errorf("etc/hostname: got %q, %v", got, err)
	}
	fi, err := os.Stat(filepath.Join(dst, "usr/bin/tool"))
	if err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("usr/bin/tool: mode %v, %v; want setuid", fi.Mode(), err)
	}
}

func TestBenchCommand(t *testing.T) {
	img := testImage(t)
	out, errOut, code := runCLI(t, "bench", "--json", img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Results []struct {
			Phase string `json:"phase"`
			Bytes int64  `json:"bytes"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	phases := map[string]int64{}
	for _, r := range got.Results {
		phases[r.Phase] = r.Bytes
	}
	if phases["decode, 1 core(s)"] == 0 || phases["reference: zstd -dc -q"] != phases["decode, 1 core(s)"] {
		t.Errorf("phases %v: want decode and reference with the same byte count", phases)
	}
}
