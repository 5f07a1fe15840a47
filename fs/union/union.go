package union

import (
	"errors"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/livefs/livefs/fs/cow"
)

// Options configure a Union.
type Options struct {
	// Logger receives one line per damaged file the first time a read of it
	// fails; nil discards.
	Logger *log.Logger
	// Changes, if set, makes the union writable: writes go to this layer,
	// which sits on top of every branch.
	Changes *cow.Changes
}

// upperBranchID identifies the changes layer in inode numbers; branches
// count up from 1.
const upperBranchID = 1<<(64-inoLayerBits) - 1

// branch is a layer in the stack with its identity for inode numbers.
type branch struct {
	id    uint64 // stable position-derived id, part of every inode number
	layer Layer
}

// layerRef is one layer's entry behind a union node.
type layerRef struct {
	b *branch
	e Entry
}

// Union is a stack of read-only branches. The branch list is behind one
// lock that every lookup consults, so branches can be added and removed
// while mounted.
type Union struct {
	opts Options

	mu       sync.RWMutex
	branches []*branch // top first, the changes layer (if any) included

	// The changes layer, nil for a read-only union.
	upper      *branch
	upperLayer *DirLayer
	changes    *cow.Changes
	inoXattr   string     // xattr recording a copied-up file's inode number ("": the layer keeps a map)
	copyMu     sync.Mutex // serialises copy-ups and namespace changes in the changes layer
	ownGid     int        // the server's group, which new entries in the changes layer get
	ns         namespace  // renames against requests that use paths

	loggedMu sync.Mutex
	logged   map[string]bool

	pushing chan struct{} // one cross-file readahead at a time
	pushBuf []byte        // the running readahead's buffer, kept: holding pushing guards it

	// passthrough is set by Mount when the kernel takes files of the
	// changes layer as backing files of open files.
	passthrough  atomic.Bool
	serverWrites atomic.Uint64 // WRITE requests served, for tests
	// uring is set by Mount when requests come through per-CPU io_uring
	// queues instead of /dev/fuse.
	uring atomic.Bool
	// checkPerms is set by Mount when the handlers check permissions
	// instead of the kernel (see perm.go).
	checkPerms atomic.Bool
}

// New stacks layers; the last one is on top (as `livefs mount a.sb b.sb`
// puts b over a).
func New(layers []Layer, opts Options) *Union {
	u := &Union{opts: opts, logged: map[string]bool{}, pushing: make(chan struct{}, 1)}
	for i, l := range layers {
		u.branches = append([]*branch{{id: uint64(i + 1), layer: l}}, u.branches...)
	}
	if c := opts.Changes; c != nil {
		u.changes = c
		u.upperLayer = &DirLayer{name: c.Dir, fd: c.FD(), borrowed: true}
		u.upper = &branch{id: upperBranchID, layer: u.upperLayer}
		u.branches = append([]*branch{u.upper}, u.branches...)
		u.inoXattr = c.InodeXattr()
		u.ownGid = os.Getegid()
	}
	return u
}

// persistent reports whether the changes layer's data can outlive the
// machine, so that syncing it on close and fsync is worth a request.
func (u *Union) persistent() bool { return u.changes != nil && u.changes.Durable() }

// inoOf returns the union inode number of a layer entry. A file in the
// changes layer that was copied up keeps the number it had below, which
// the copy-up recorded in an xattr.
func (u *Union) inoOf(r layerRef) uint64 {
	if r.b == u.upper && u.upper != nil {
		if u.inoXattr == "" {
			if n, ok := u.changes.RememberedIno(r.e.Attr().Ino); ok {
				return n
			}
		} else if v, err := r.b.layer.GetXattr(r.e, u.inoXattr); err == nil {
			if n, err := strconv.ParseUint(string(v), 10, 64); err == nil {
				return n
			}
		}
	}
	return ino(r.b, r.e.Attr().Ino)
}

// Close closes every layer.
func (u *Union) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for _, b := range u.branches {
		errs = append(errs, b.layer.Close())
	}
	if u.changes != nil {
		errs = append(errs, u.changes.Close())
	}
	return errors.Join(errs...)
}

const inoLayerBits = 48

// ino derives the union's inode number from the branch and the branch's
// own inode number: stable across remounts of the same branches, and equal
// for all names of one hard-linked file.
func ino(b *branch, layerIno uint64) uint64 {
	return b.id<<inoLayerBits | layerIno&(1<<inoLayerBits-1)
}

// rootRefs returns the layers of the root directory, top first, cut at the
// first opaque one.
func (u *Union) rootRefs() []layerRef {
	u.mu.RLock()
	defer u.mu.RUnlock()
	var refs []layerRef
	for _, b := range u.branches {
		e := b.layer.Root()
		refs = append(refs, layerRef{b, e})
		if u.opaque(b, e) {
			break
		}
	}
	return refs
}

// opaque reports whether directory e of branch b hides the directories of
// the same name below it: aufs marks that with a .wh..wh..opq file,
// overlayfs with an opaque xattr.
func (u *Union) opaque(b *branch, e Entry) bool {
	if _, err := b.layer.Lookup(e, aufsOpaqueMarker); err == nil {
		return true
	}
	// One listing answers for most directories, which have neither xattr.
	names, err := b.layer.ListXattr(e)
	if err != nil {
		return false
	}
	for _, x := range names {
		if slices.Contains(overlayOpaqueXattrs, x) {
			if v, err := b.layer.GetXattr(e, x); err == nil && string(v) == "y" {
				return true
			}
		}
	}
	return false
}

// whitedOut reports whether dir (of branch b) holds an aufs whiteout for name.
func whitedOut(b *branch, dir Entry, name string) bool {
	_, err := b.layer.Lookup(dir, aufsWhiteoutPrefix+name)
	return err == nil
}

// lookup finds name in the directory whose layers are parent. The result
// lists the layers that make up the entry, top first: one for a
// non-directory, every mergeable directory for a directory.
func (u *Union) lookup(parent []layerRef, name string) ([]layerRef, error) {
	if strings.HasPrefix(name, aufsWhiteoutPrefix) {
		return nil, syscall.ENOENT // whiteout files and markers are never shown
	}
	var out []layerRef
	for i, pr := range parent {
		e, err := pr.b.layer.Lookup(pr.e, name)
		if err != nil {
			if !isNotExist(err) {
				return nil, err
			}
			if i == len(parent)-1 || whitedOut(pr.b, pr.e, name) {
				break // nothing left below, or hidden from it
			}
			continue
		}
		a := e.Attr()
		if a.isWhiteoutDevice() {
			break
		}
		if len(out) > 0 && !a.IsDir() {
			break // a non-directory below a directory is hidden by it
		}
		out = append(out, layerRef{pr.b, e})
		// Opaque markers and whiteouts matter only to the layers below:
		// the lowest layer (all of a one-bundle mount) need not be probed.
		if i == len(parent)-1 || !a.IsDir() || u.opaque(pr.b, e) || whitedOut(pr.b, pr.e, name) {
			break
		}
	}
	if len(out) == 0 {
		return nil, syscall.ENOENT
	}
	return out, nil
}

// unionDirEntry is a merged directory entry.
type unionDirEntry struct {
	Name string
	Mode uint32 // S_IFMT bits
	Ino  uint64
}

// readDir merges the listings of a directory's layers: the highest layer
// that has a name decides its type; whiteouts hide names in lower layers.
func (u *Union) readDir(refs []layerRef) ([]unionDirEntry, error) {
	var out []unionDirEntry
	seen := map[string]bool{}
	hidden := map[string]bool{}
	for _, r := range refs {
		ents, err := r.b.layer.ReadDir(r.e)
		if err != nil {
			return nil, err
		}
		var hiddenHere []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name, aufsWhiteoutPrefix) {
				if e.Name != aufsOpaqueMarker {
					hiddenHere = append(hiddenHere, e.Name[len(aufsWhiteoutPrefix):])
				}
				continue
			}
			if seen[e.Name] || hidden[e.Name] {
				continue
			}
			if e.Mode == syscall.S_IFCHR {
				// Possibly an overlayfs whiteout: look at its device number.
				le, err := r.b.layer.Lookup(r.e, e.Name)
				if err != nil {
					return nil, err
				}
				if le.Attr().isWhiteoutDevice() {
					hiddenHere = append(hiddenHere, e.Name)
					continue
				}
			}
			seen[e.Name] = true
			out = append(out, unionDirEntry{Name: e.Name, Mode: e.Mode, Ino: ino(r.b, e.Ino)})
		}
		for _, n := range hiddenHere {
			hidden[n] = true
		}
	}
	return out, nil
}

// logOnce reports a damaged file once.
func (u *Union) logOnce(key string, err error) {
	if u.opts.Logger == nil {
		return
	}
	u.loggedMu.Lock()
	first := !u.logged[key]
	u.logged[key] = true
	u.loggedMu.Unlock()
	if first {
		u.opts.Logger.Print(fmt.Sprintf("livefs: %s: %v", key, err))
	}
}
