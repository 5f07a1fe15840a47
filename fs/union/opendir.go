package union

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// noOpendirFS saves the OPENDIR round trip of every directory listing. It
// answers OPENDIR with ENOSYS, after which the kernel sends no OPENDIR or
// RELEASEDIR for the mount (FUSE no_opendir) and reads directories with
// file handle 0. go-fuse's node layer keeps a directory stream per open
// handle, so this layer opens those streams itself: one per (directory,
// next offset), picked up by the READDIRPLUS that continues it and released
// when the listing ends, when the kernel forgets the directory, or when too
// many are left unfinished.
type noOpendirFS struct {
	fuse.RawFileSystem

	mu      sync.Mutex
	streams map[streamKey]uint64 // -> go-fuse file handle
	order   []streamKey          // oldest first, for the bound
}

type streamKey struct{ node, offset uint64 }

const maxOpenStreams = 1024

func newNoOpendirFS(inner fuse.RawFileSystem) *noOpendirFS {
	return &noOpendirFS{RawFileSystem: inner, streams: map[streamKey]uint64{}}
}

func (f *noOpendirFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

func (f *noOpendirFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return f.read(cancel, in, out, f.RawFileSystem.ReadDir)
}

func (f *noOpendirFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return f.read(cancel, in, out, f.RawFileSystem.ReadDirPlus)
}

func (f *noOpendirFS) read(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList,
	inner func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return inner(cancel, in, out) // opened the usual way (before no_opendir took effect)
	}
	key := streamKey{in.NodeId, in.Offset}
	f.mu.Lock()
	fh, ok := f.streams[key]
	delete(f.streams, key)
	f.mu.Unlock()
	if !ok {
		var oo fuse.OpenOut
		if st := f.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader, Flags: in.Flags}, &oo); !st.Ok() {
			return st
		}
		fh = oo.Fh
	}
	req := *in
	req.Fh = fh
	st := inner(cancel, &req, out)
	if !st.Ok() || out.Offset == in.Offset {
		f.release(in.NodeId, fh) // error or end of the listing
		return st
	}
	f.mu.Lock()
	next := streamKey{in.NodeId, out.Offset}
	if old, dup := f.streams[next]; dup {
		defer f.release(in.NodeId, old)
	}
	f.streams[next] = fh
	f.order = append(f.order, next)
	var evict []streamKey
	for len(f.streams) > maxOpenStreams && len(f.order) > 0 {
		k := f.order[0]
		f.order = f.order[1:]
		if _, live := f.streams[k]; live {
			evict = append(evict, k)
		}
	}
	if len(f.order) > 4*maxOpenStreams {
		f.compactLocked()
	}
	fhs := make([]uint64, len(evict))
	for i, k := range evict {
		fhs[i] = f.streams[k]
		delete(f.streams, k)
	}
	f.mu.Unlock()
	for i, k := range evict {
		f.release(k.node, fhs[i])
	}
	return st
}

// compactLocked drops finished streams from the eviction order.
func (f *noOpendirFS) compactLocked() {
	kept := f.order[:0]
	for _, k := range f.order {
		if _, live := f.streams[k]; live {
			kept = append(kept, k)
		}
	}
	f.order = kept
}

func (f *noOpendirFS) release(node, fh uint64) {
	f.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: fh})
}

// Forget releases the streams of a directory the kernel drops, before
// go-fuse forgets the node they belong to.
func (f *noOpendirFS) Forget(node, nlookup uint64) {
	f.mu.Lock()
	var fhs []uint64
	for k, fh := range f.streams {
		if k.node == node {
			fhs = append(fhs, fh)
			delete(f.streams, k)
		}
	}
	f.mu.Unlock()
	for _, fh := range fhs {
		f.release(node, fh)
	}
	f.RawFileSystem.Forget(node, nlookup)
}
