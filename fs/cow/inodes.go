package cow

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// inodeMap remembers the union inode number of files copied up into an
// overlay-format changes directory, keyed by their inode number there. An
// aufs-format directory records it in an xattr on the file instead; an
// overlayfs upperdir must hold nothing of livefs's own, so the map lives in
// the work directory, as an append-only log of "upper union" lines ("upper
// 0" forgets).
type inodeMap struct {
	mu   sync.Mutex
	m    map[uint64]uint64
	log  *os.File
	sync bool
}

const inodeLogName = "livefs.inodes"

func openInodeMap(work string, durable bool) (*inodeMap, error) {
	p := filepath.Join(work, inodeLogName)
	im := &inodeMap{m: map[uint64]uint64{}, sync: durable}
	if f, err := os.Open(p); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var upper, union uint64
			if _, err := fmt.Sscan(sc.Text(), &upper, &union); err != nil {
				continue // a torn last line after a crash
			}
			if union == 0 {
				delete(im.m, upper)
			} else {
				im.m[upper] = union
			}
		}
		f.Close()
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	im.log = f
	return im, nil
}

func (im *inodeMap) get(upper uint64) (uint64, bool) {
	im.mu.Lock()
	defer im.mu.Unlock()
	v, ok := im.m[upper]
	return v, ok
}

func (im *inodeMap) set(upper, union uint64) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if union == 0 {
		if _, ok := im.m[upper]; !ok {
			return nil
		}
		delete(im.m, upper)
	} else {
		im.m[upper] = union
	}
	if _, err := fmt.Fprintf(im.log, "%d %d\n", upper, union); err != nil {
		return err
	}
	if im.sync {
		return im.log.Sync()
	}
	return nil
}

func (im *inodeMap) close() error { return im.log.Close() }
